"""The end-of-life and known-fix gate (components/image_lifecycle.py).

Given the shipped defaults, when checked on a fixed day and on today, then none is past its
line's end of life or below a listed fix; given an old pin, then the gate names what is wrong;
``rollout check pre`` and the program warn (never fail) about a stack that runs one.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from components import image_defaults, image_lifecycle, settings
from components.image_lifecycle import assess, parse
from rollout import check_pre
from rollout.check import FAIL, PASS, WARN, report

ROOT = Path(__file__).resolve().parents[2]
#: The day the table was last reviewed: the defaults must pass on it, whatever today is.
REVIEWED = date(2026, 12, 6)


def shipped_defaults() -> dict[str, str]:
    """Every default image the project ships: image_defaults plus the Dockerfile's base."""
    text = (ROOT / "docker" / "Dockerfile").read_text()
    (base,) = re.findall(r"^ARG BASE_IMAGE=(\S+)$", text, re.M)
    return {**image_defaults.ALL, "Dockerfile BASE_IMAGE": base}


@pytest.mark.parametrize("today", [REVIEWED, datetime.now(UTC).date()], ids=["reviewed", "today"])
def test_given_the_shipped_defaults_then_none_is_past_eol_or_below_a_fix(today: date) -> None:
    problems = {what: assess(ref, today) for what, ref in shipped_defaults().items()}
    assert {what: p for what, p in problems.items() if p} == {}


def test_given_the_defaults_then_each_line_is_in_the_table() -> None:
    for what, ref in shipped_defaults().items():
        repository, version = parse(ref)
        assert version is not None, what
        assert image_lifecycle.line_of(repository, version) is not None, (what, ref)


@pytest.mark.parametrize(("ref", "today", "expected"), [
    ("redis:7.4.2-alpine", REVIEWED, ["below 7.4.6", "below 7.4.10"]),
    ("docker.io/library/redis:7.4.9", REVIEWED, ["below 7.4.10"]),
    ("redis:7.4.10-alpine@sha256:" + "a" * 64, REVIEWED, []),
    ("node:20-alpine", REVIEWED, ["reached end of life on 2026-04-30"]),
    ("node:20-alpine", date(2026, 4, 30), []),  # the last supported day
    ("node:24-alpine", REVIEWED, ["floating tag"]),
    ("node:24.18.0-alpine", REVIEWED, ["below 24.18.1"]),
    ("apache/kvrocks:2.11.1", REVIEWED, ["below 2.16.0", "below 2.17.0"]),
    ("quay.io/prometheus/prometheus:v2.53.4", REVIEWED, ["reached end of life on 2025-07-31"]),
    ("quay.io/prometheus/prometheus:v3.13.2", date(2027, 8, 1), ["reached end of life"]),
    ("cr.fluentbit.io/fluent/fluent-bit:3.2.2", REVIEWED, ["reached end of life on 2025-06-29"]),
    ("cr.fluentbit.io/fluent/fluent-bit:5.0.9", REVIEWED, ["reached end of life on 2026-11-30"]),
    ("traefik:v3.7.13", REVIEWED, ["below 3.7.17"]),
    ("otel/opentelemetry-collector-contrib:0.115.1", REVIEWED, ["not in the lifecycle table"]),
    ("redis:latest", REVIEWED, ["no version in the tag"]),
    ("ghcr.io/moontechlab/lunatv:v100.1.2", REVIEWED, []),  # not a tracked repository
    ("moontv.local/redis:debian", REVIEWED, []),
])
def test_given_an_image_then_the_gate_names_what_is_wrong(
    ref: str, today: date, expected: list[str]
) -> None:
    problems = assess(ref, today)
    assert len(problems) == len(expected), problems
    for problem, words in zip(problems, expected, strict=True):
        assert words in problem and ref in problem


def test_given_the_known_gaps_then_each_is_still_what_the_table_says() -> None:
    """The node's Traefik (built from the Go module proxy) is below the edge's fix; when the
    proxy serves a newer module and tools/traefik.sh moves, this test asks to drop the gap."""
    (gap,) = image_lifecycle.KNOWN_GAPS
    pinned = re.search(r'VERSION="\$\{TRAEFIK_VERSION:-(v[\d.]+)\}"',
                       (ROOT / "tools" / "traefik.sh").read_text())
    assert pinned is not None and pinned.group(1) == gap.pinned
    problems = assess(f"traefik:{gap.pinned}", REVIEWED)
    assert any(f"below {gap.wanted.lstrip('v')}" in p for p in problems), problems
    assert assess(f"traefik:{gap.wanted}", REVIEWED) == []


def stack(**storage: str) -> settings.MoonTVSettings:
    raw = {"environment": "dev", "image": {"tag": "v100.1.2"},
           "kubernetes": {"renderDir": "rendered/dev"}, "storage": storage}
    return settings.validate(raw)


def test_given_a_stack_on_an_old_storage_image_then_the_warnings_name_it() -> None:
    old = stack(kind="redis", redisImage="redis:7.4.2-alpine")
    warnings = image_lifecycle.warnings(old, REVIEWED)
    assert len(warnings) == 2 and all(w.startswith("storage (redis): redis:7.4.2-alpine")
                                      for w in warnings)
    assert image_lifecycle.warnings(stack(), REVIEWED) == []


def test_given_a_swarm_stack_then_its_edge_and_own_prometheus_are_checked() -> None:
    raw = {"environment": "dev", "platform": "swarm", "image": {"tag": "v100.1.2"},
           "swarm": {"edgeImage": "traefik:v3.7.13", "storageImage": "apache/kvrocks:2.11.1"},
           "monitoring": {"enabled": True,
                          "images": {"prometheus": "quay.io/prometheus/prometheus:v2.53.4"}}}
    model = settings.validate(raw)
    found = image_lifecycle.lifecycle_images(model)
    assert found["edge"] == "traefik:v3.7.13"
    assert found["storage (kvrocks)"] == "apache/kvrocks:2.11.1"
    whats = {w.split(":")[0] for w in image_lifecycle.warnings(model, REVIEWED)}
    assert whats == {"edge", "storage (kvrocks)", "prometheus"}


class _Target:
    def __init__(self, model: settings.MoonTVSettings, now: datetime) -> None:
        self._model, self._now = model, now

    def settings(self) -> settings.MoonTVSettings:
        return self._model

    def now(self) -> datetime:
        return self._now


def test_given_check_pre_on_an_old_image_then_it_warns_and_the_gate_still_passes() -> None:
    when = datetime(2026, 12, 6, tzinfo=UTC)
    result = check_pre.check_image_lifecycle(
        _Target(stack(kind="redis", redisImage="redis:7.4.2-alpine"), when))  # type: ignore[arg-type]
    assert result.status == WARN and "below 7.4.10" in result.reason
    lines: list[str] = []
    assert report("pre", "dev", [result], as_json=False, out=lines.append) == 0
    assert lines[-1].endswith("0 passed, 0 failed, 0 skipped, 1 warned")
    good = check_pre.check_image_lifecycle(_Target(stack(), when))  # type: ignore[arg-type]
    assert good.status == PASS and FAIL not in good.status
    assert check_pre.check_image_lifecycle in check_pre.CHECKS


def test_given_a_users_stack_file_on_an_old_image_then_preview_warns_and_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.program import run_stack, stack_config

    warned: list[str] = []
    monkeypatch.setattr("pulumi.log.warn", lambda msg, *a, **k: warned.append(msg))
    storage = {**stack_config("dev")["moontv:storage"], "kvrocksImage": "apache/kvrocks:2.11.1"}
    run = run_stack("dev", overrides={"moontv:storage": storage}, preview=True)
    lifecycle = [w for w in warned if w.startswith("image lifecycle:")]
    assert len(lifecycle) == 2 and all("apache/kvrocks:2.11.1" in w for w in lifecycle), warned
    assert run.resources  # a warning, not an error: the program still declares the stack
    warned.clear()
    run_stack("dev", preview=True)
    assert [w for w in warned if w.startswith("image lifecycle:")] == []
