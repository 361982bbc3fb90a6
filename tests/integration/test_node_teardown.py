"""node-down leaves nothing of the real node behind on the machine."""

from __future__ import annotations

import pytest

from tests.conftest import skip_or_fail
from tests.integration import node as node_host

pytestmark = pytest.mark.integration


def test_given_a_running_node_when_node_down_then_the_machine_is_as_before_node_up(node):
    if not node.owned:
        skip_or_fail("the node was started by another test session: no baseline to compare")
    sessions = node_host.Sessions()
    # Given: the node is running (pods, bridge, chains, mounts exist)
    during = node_host.host_footprint()
    assert node_host.BRIDGE in during["links"]
    assert during["processes"], "no node process found while the node runs"
    assert any("KUBE-" in chain for chain in during["chains"])

    # When
    with sessions.locked():
        others = sessions.others()
        if not others:
            result = node_host.cluster("node-down")
    if others:
        skip_or_fail(f"other test sessions (PIDs {others}) use the node: not stopping it")
    assert result.returncode == 0, result.stdout + result.stderr

    # Then: nothing the node made is left
    assert node_host.leftovers(node.baseline, node_host.host_footprint()) == {}
