"""node-down leaves nothing of the real node behind on the machine."""

from __future__ import annotations

import time

import pytest

from tests.conftest import skip_or_fail
from tests.integration import node as node_host

pytestmark = pytest.mark.integration


#: How long the teardown waits for the other sessions on the node (CI's other node group).
OTHERS_TIMEOUT = 3600


def test_given_a_running_node_when_node_down_then_the_machine_is_as_before_node_up(node):
    if not node.baseline:
        skip_or_fail("the node was started outside the test sessions: no baseline to compare")
    sessions = node_host.Sessions()
    # Given: the node is running (pods, bridge, chains, mounts exist)
    during = node_host.host_footprint()
    assert node_host.BRIDGE in during["links"]
    assert during["processes"], "no node process found while the node runs"
    assert any("KUBE-" in chain for chain in during["chains"])

    # When: the other sessions on the node have ended
    deadline = time.monotonic() + OTHERS_TIMEOUT
    while True:
        with sessions.locked():
            others = sessions.others()
            if not others:
                result = sessions.stop_node()
                break
        if time.monotonic() > deadline:
            skip_or_fail(f"other test sessions (PIDs {others}) still use the node after "
                         f"{OTHERS_TIMEOUT} s: not stopping it")
        time.sleep(5)
    assert result.returncode == 0, result.stdout + result.stderr

    # Then: nothing the node made is left
    assert node_host.leftovers(node.baseline, node_host.host_footprint()) == {}
