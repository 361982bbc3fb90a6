"""The node fixture's "machine before node-up" baseline on a fresh machine, and on one where an
earlier node was killed without ``node-down``.

On a machine where nftables is not installed yet, ``node-up`` installs it (with conntrack and
ipset). A baseline taken before that lists no nftables tables, so the tables a running dockerd
owns (``table ip filter``, ``table ip nat``) looked left behind by ``node-down``. These tests
play that machine: ``nft`` appears only once the node's host packages are installed.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration import node as node_host

DOCKER_TABLES = {"table ip filter", "table ip nat"}


class FreshMachine:
    """dockerd runs (its nftables tables exist); nftables is not installed until node-deps or
    node-up installs the node's host packages."""

    def __init__(self, up_rc: int = 0, earlier_node_left: bool = False) -> None:
        self.nft_installed = False
        self.node_running = False
        self.calls: list[str] = []
        self.up_rc = up_rc
        # an earlier node killed without node-down: its kubelet's kernel settings, and the
        # values before it in its saved state (restored by node-clean, or by node-up itself)
        self.sysctls = {"kernel.panic": "10" if earlier_node_left else "1"}
        self.saved = {"kernel.panic": "1"} if earlier_node_left else None

    def cluster(self, command: str,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        self.calls.append(command)
        self.env = env
        if command in ("node-deps", "node-up"):
            self.nft_installed = True
        if command in ("node-clean", "node-up") and self.saved:
            self.sysctls, self.saved = self.saved, None
        if command == "node-up":
            self.node_running = self.up_rc == 0
            if self.node_running:
                self.saved, self.sysctls = self.sysctls, {"kernel.panic": "10"}
        elif command == "node-down":
            self.node_running = False
            if self.saved:
                self.sysctls, self.saved = self.saved, None
        return subprocess.CompletedProcess(["bash", "tools/cluster.sh", command], self.up_rc
                                           if command == "node-up" else 0, "", "")

    def footprint(self) -> dict[str, object]:
        tables = set(DOCKER_TABLES) if self.nft_installed else set()
        if self.node_running:
            tables.add("table ip kube-proxy")
        return {"processes": set(), "nft tables": tables, "sysctls": dict(self.sysctls)}


@pytest.fixture
def sessions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> node_host.Sessions:
    monkeypatch.setattr(node_host, "STATE_ROOT", tmp_path)
    monkeypatch.setattr(node_host, "STATE_DIR", tmp_path / "node")
    etcd_pid(tmp_path, "4242")
    return node_host.Sessions()


def etcd_pid(root: Path, pid: str) -> None:
    """The running node's identity, as node-up leaves it."""
    (root / "node" / "pids").mkdir(parents=True, exist_ok=True)
    (root / "node" / "pids" / "etcd.pid").write_text(pid + "\n")


def test_given_nft_not_installed_when_the_node_starts_then_the_baseline_sees_dockers_tables(
    sessions,
):
    machine = FreshMachine()
    result, baseline, _ = node_host.start(sessions, run=machine.cluster,
                                          footprint=machine.footprint)
    assert result.returncode == 0
    assert machine.calls == ["node-deps", "node-clean", "node-up"]
    assert baseline["nft tables"] == DOCKER_TABLES

    machine.cluster("node-down")
    assert node_host.leftovers(baseline, machine.footprint()) == {}


def test_given_an_earlier_node_killed_without_node_down_then_the_baseline_is_before_it(
    sessions,
):
    # the earlier node's kubelet set kernel.panic=10; its saved state holds the value before it
    machine = FreshMachine(earlier_node_left=True)
    result, baseline, _ = node_host.start(sessions, run=machine.cluster,
                                          footprint=machine.footprint)
    assert result.returncode == 0
    assert baseline["sysctls"] == {"kernel.panic": "1"}

    machine.cluster("node-down")
    assert node_host.leftovers(baseline, machine.footprint()) == {}


def test_given_a_table_the_node_left_when_compared_then_it_is_reported(sessions):
    machine = FreshMachine()
    _, baseline, _ = node_host.start(sessions, run=machine.cluster, footprint=machine.footprint)
    assert node_host.leftovers(baseline, machine.footprint()) == {
        "nft tables": ["table ip kube-proxy"], "sysctls": {"kernel.panic": "1 -> 10"}}


def test_given_node_up_fails_then_the_session_is_left(sessions):
    machine = FreshMachine(up_rc=1)
    result, _, _ = node_host.start(sessions, run=machine.cluster, footprint=machine.footprint)
    assert result.returncode == 1
    assert result.args[-1] == "node-up"
    assert not list(sessions.dir.glob("*"))


def test_given_the_last_session_removed_the_lease_directory_while_waiting_then_join_works(
    sessions,
):
    # another session held the lock, stopped the node and removed the directory meanwhile
    with sessions.locked():
        if sessions.dir.exists():
            sessions.dir.rmdir()
        sessions.join()
    assert [p.name for p in sessions.dir.iterdir()] == [str(__import__("os").getpid())]


def test_given_a_second_session_then_it_gets_the_baseline_of_the_session_that_started_it(
    sessions,
):
    machine = FreshMachine()
    _, first, _ = node_host.start(sessions, run=machine.cluster, footprint=machine.footprint)

    def already_running(command, env=None):  # type: ignore[no-untyped-def]
        done = machine.cluster(command, env)
        out = "the node is already running\n" if command == "node-up" else ""
        return subprocess.CompletedProcess(done.args, 0, out, "")

    _, second, _ = node_host.start(node_host.Sessions(), run=already_running,
                                   footprint=machine.footprint)
    assert second == first and "table ip kube-proxy" not in second["nft tables"]


def test_given_the_node_restarted_by_hand_since_then_the_saved_baseline_is_not_used(
    sessions, tmp_path,
):
    machine = FreshMachine()
    node_host.start(sessions, run=machine.cluster, footprint=machine.footprint)
    etcd_pid(tmp_path, "5151")  # node-down, node-up by hand
    assert sessions.saved_baseline() == {}
