"""``node.parse_top``: what ``kubectl top pods|nodes --no-headers`` reports, by name."""

from __future__ import annotations

from tests.integration.node import Usage, parse_top


def test_given_pods_of_one_namespace_then_cpu_in_cores_and_memory_in_bytes():
    text = "client   0m    284Ki\nweb-a-7d9c   1m   1Mi\n"
    assert parse_top(text) == {"client": Usage(0.0, 284 * 1024),
                               "web-a-7d9c": Usage(0.001, 2**20)}


def test_given_pods_of_all_namespaces_then_keyed_by_namespace_and_name():
    text = "node-smoke   client   2m   300Ki\nother   client   15m   12Mi\n"
    assert parse_top(text) == {"node-smoke/client": Usage(0.002, 300 * 1024),
                               "other/client": Usage(0.015, 12 * 2**20)}


def test_given_nodes_then_the_percentages_are_left_out():
    text = "moontv-node   412m   20%   1544Mi   39%\n"
    assert parse_top(text) == {"moontv-node": Usage(0.412, 1544 * 2**20)}


def test_given_no_metrics_yet_then_nothing():
    assert parse_top("") == {}
    assert parse_top("error: metrics not available yet\n") == {}
    assert parse_top("No resources found in node-smoke namespace.\n") == {}
