"""tools/fresh-check.sh, by its --dry-run (the real run takes a cold toolchain build): what it
cleans up with the project's own commands, the fresh environment, the order of the README's two
commands, and its refusal to stop a node that another test session holds."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import ROOT

SCRIPT = ROOT / "tools/fresh-check.sh"


def dry_run(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MOONTV_CLUSTER_DIR": str(tmp_path / "cluster"), **extra}
    return subprocess.run(["bash", str(SCRIPT), "--dry-run", "--dir", str(tmp_path / "fresh"),
                           *args], capture_output=True, text=True, env=env, timeout=120,
                          check=False)


def test_help_names_every_phase_and_option():
    out = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True,
                         check=True, timeout=30).stdout
    for word in ("leftovers", "clone", "make up", "make test", "--dry-run", "--dir", "--ref",
                 "--force", "--remove"):
        assert word in out


def test_dry_run_plans_cleanup_a_fresh_environment_and_the_two_commands(tmp_path):
    result = dry_run(tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    fresh = tmp_path / "fresh"
    assert not fresh.exists()  # nothing was made
    env = dict(word.split("=", 1) for word in
               next(line for line in out.splitlines() if line.startswith("fresh environment:"))
               .split(": ", 1)[1].split() if "=" in word)
    home = fresh / "home"
    assert env["HOME"] == str(home)
    for key in ("XDG_CACHE_HOME", "MOONTV_TOOLCHAIN_CACHE", "MOONTV_IMAGES_CACHE",
                "MOONTV_CLUSTER_DIR", "MOONTV_CI_DIR", "GOMODCACHE", "GOCACHE", "PIP_CACHE_DIR"):
        assert env[key].startswith(str(home) + "/"), (key, env[key])
    # no toolchain, virtualenv or shim of this machine's HOME: only system dirs, Go and Python
    leaks = (".cache", "venv", "shims", str(Path.home() / "go"), ".cargo")
    assert not [d for d in env["PATH"].split(":") if any(p in d for p in leaks)], env["PATH"]
    steps = [line for line in out.splitlines() if line.startswith("+ ")]
    order = [next(i for i, s in enumerate(steps) if needle in s) for needle in (
        "cluster.sh node-down", "cluster.sh kwok-down", "cluster.sh swarm-down", "git clone",
        ") make up", "make test")]
    assert order == sorted(order), steps
    assert "DRY RUN" in out.splitlines()[-1]
    for phase in ("leftovers", "clone", "make up", "make test", "total"):
        assert any(line.split()[:len(phase.split())] == phase.split() for line in out.splitlines()
                   if line.startswith("  ")), phase


def test_the_machine_settings_a_new_machine_has_are_kept_and_nothing_else(tmp_path):
    """How the machine trusts and reaches the registries is the machine's, not a cache: without
    NODE_EXTRA_CA_CERTS, npm failed on the registry's certificate chain in a fresh HOME."""
    out = dry_run(tmp_path, NODE_EXTRA_CA_CERTS="/etc/ca.pem", PIP_INDEX_URL="https://pypi.test/",
                  https_proxy="http://127.0.0.1:3128", MOONTV_SOMETHING="x").stdout
    line = next(line for line in out.splitlines() if line.startswith("fresh environment:"))
    words = line.split(": ", 1)[1].split()
    assert {"NODE_EXTRA_CA_CERTS=/etc/ca.pem", "PIP_INDEX_URL=https://pypi.test/",
            "https_proxy=http://127.0.0.1:3128"} <= set(words)
    assert not [w for w in words if w.startswith("MOONTV_SOMETHING")]
    if (Path.home() / ".npmrc").is_file():
        assert f"+ cp {Path.home() / '.npmrc'} {tmp_path / 'fresh' / 'home' / '.npmrc'}" in out


def test_given_a_live_node_session_then_it_stops_nothing_unless_forced(tmp_path):
    leases = tmp_path / "cluster" / "node-sessions"
    leases.mkdir(parents=True)
    (leases / str(os.getpid())).touch()  # this test's process: alive
    refused = dry_run(tmp_path)
    assert refused.returncode == 1
    assert f"PIDs {os.getpid()}" in refused.stderr
    assert "node-down" not in refused.stdout
    forced = dry_run(tmp_path, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "cluster.sh node-down" in forced.stdout


def test_a_bad_ref_or_a_used_directory_is_refused(tmp_path):
    bad = dry_run(tmp_path, "--ref", "no-such-ref")
    assert bad.returncode == 2 and "--ref 'no-such-ref' is not a commit" in bad.stderr
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "x").touch()
    used = dry_run(tmp_path)
    assert used.returncode == 2 and "is not empty" in used.stderr
