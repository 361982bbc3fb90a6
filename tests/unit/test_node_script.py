"""tools/node.sh: a component that fails to start is named, with the tail of its log."""

from __future__ import annotations

import subprocess

from tests.conftest import ROOT

SCRIPT = ROOT / "tools" / "node.sh"


def run(tmp_path, body: str) -> subprocess.CompletedProcess[str]:
    """Source tools/node.sh (functions only, nothing started) and run ``body``."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path),
           "MOONTV_CLUSTER_DIR": str(tmp_path / "state"), "MOONTV_CLUSTER_TIMEOUT": "3",
           # never tear down: the machine's real node may be running
           "MOONTV_NODE_KEEP_ON_FAILURE": "1"}
    script = f'set -euo pipefail\nsource "{SCRIPT}"\nmkdir -p "$PIDS" "$LOGS"\n' \
             f"DEADLINE=$(($(date +%s) + TIMEOUT))\n{body}\n"
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env,
                          timeout=60, check=False)


def test_given_a_component_that_exits_when_waiting_for_it_then_it_is_named_with_its_log(tmp_path):
    result = run(tmp_path, """
start kube-scheduler bash -c 'echo "line $RANDOM"; echo "E0101 no such flag --bogus"; exit 3'
wait_ready kube-scheduler "healthy" false
""")
    assert result.returncode == 1
    assert "node-up: kube-scheduler: exited before healthy (not running)" in result.stderr
    assert "E0101 no such flag --bogus" in result.stderr


def test_given_a_component_that_never_gets_ready_when_the_deadline_passes_then_it_is_named(
        tmp_path):
    result = run(tmp_path, """
start coredns bash -c 'echo "listening nowhere"; sleep 30'
wait_ready coredns "ready" false
""")
    pid = (tmp_path / "state" / "node" / "pids" / "coredns.pid").read_text().strip()
    subprocess.run(["kill", pid], check=False)
    assert result.returncode == 1
    assert "node-up: coredns: not ready within 3s of the start (still running)" in result.stderr
    assert "listening nowhere" in result.stderr


def test_given_a_bad_gateway_port_when_run_then_the_setting_and_what_is_accepted_are_named():
    result = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True, text=True,
                            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/nonexistent",
                                 "MOONTV_NODE_GATEWAY_PORT": "http"},
                            check=False, timeout=30)
    assert result.returncode == 1
    assert "MOONTV_NODE_GATEWAY_PORT must be a port number (1-65535), got 'http'" in result.stderr
