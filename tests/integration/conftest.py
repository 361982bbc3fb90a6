"""Session fixtures for the local clusters; each is started once and stopped at the end."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, require_tools, skip_or_fail
from tests.integration import images
from tests.integration import node as node_host
from tests.integration.engine import toolchain_bin


@dataclass(frozen=True)
class Kwok:
    kubeconfig: str
    context: str

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None) -> str:
        return subprocess.run(
            ["kubectl", "--kubeconfig", self.kubeconfig, "--context", self.context, *args],
            input=stdin, capture_output=True, text=True, check=check, timeout=120,
        ).stdout


def _cluster(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(ROOT / "tools/cluster.sh"), command], capture_output=True,
                          text=True, timeout=900, check=False)


@pytest.fixture(scope="session")
def kwok():
    """A kwok Kubernetes cluster on 127.0.0.1 (Gateway API and Prometheus Operator CRDs)."""
    bin_dir = toolchain_bin()
    needed = ("kwok", "kwokctl", "kube-apiserver", "etcd")
    if bin_dir is None or not all((Path(bin_dir) / b).exists() for b in needed):
        skip_or_fail("the kwok cluster binaries are not built (run `make toolchain`)")
    started = _cluster("kwok-up")
    if started.returncode != 0:
        pytest.fail(f"kwok-up failed:\n{started.stdout}\n{started.stderr}")
    info = dict(line.split(": ", 1) for line in started.stdout.splitlines() if ": " in line)
    yield Kwok(kubeconfig=info["kubeconfig"], context=info["context"])
    _cluster("kwok-down")


@pytest.fixture(scope="session")
def node():
    """A real single-node Kubernetes cluster (tools/cluster.sh node-up): pods run, Services
    route, CoreDNS resolves, kube-router enforces NetworkPolicies, Traefik serves one Gateway on
    127.0.0.1, metrics-server serves ``kubectl top``. Shared with other test sessions on this
    machine: the last one out stops it (or the teardown test, which runs last, when no other
    session uses the node)."""
    if not node_host.privileged():
        skip_or_fail("the real node needs root or passwordless sudo (bridge, iptables, mounts)")
    missing = node_host.missing_binaries()
    if missing:
        skip_or_fail(f"the real node's binaries are not built: {', '.join(missing)} "
                     "(run `make toolchain`)")
    sessions = node_host.Sessions()
    result, baseline, seconds = node_host.start(sessions)
    if result.returncode != 0:
        pytest.fail(f"tools/cluster.sh {result.args[-1]} failed:\n{result.stdout}\n{result.stderr}")
    owned = "the node is already running" not in result.stdout
    yield node_host.Node.parse(result.stdout, start_seconds=seconds, baseline=baseline,
                               owned=owned)
    with sessions.locked():
        sessions.leave()
        if not sessions.others():  # the last session out stops the node
            sessions.stop_node()
            sessions.dir.rmdir()


def _is_teardown(item: pytest.Item) -> bool:
    return "test_node_teardown" in item.nodeid


def pytest_collection_modifyitems(items):
    """The node teardown test stops the session's node: run it after every other test."""
    items.sort(key=_is_teardown)


def _node_hold(item: pytest.Item | None) -> bool | None:
    """How a test holds the node: None (not at all), False (shared) or True (alone)."""
    if item is None or "node" not in getattr(item, "fixturenames", ()) or _is_teardown(item):
        return None
    return item.get_closest_marker("node_exclusive") is not None


#: the hold of the running node test; kept across consecutive ``node_exclusive`` tests
_HELD: list[contextlib.ExitStack] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    """Node tests of several sessions (CI's node groups) run side by side on the one node: each
    holds the node shared for its set-up, call and tear-down, and a ``node_exclusive`` test
    holds it alone, kept until the session's last exclusive test in a row (so that another
    session's test cannot come between them). The teardown test holds nothing: it waits for the
    other sessions to end."""
    exclusive = _node_hold(item)
    if exclusive is None:
        yield
        return
    if not _HELD:
        asked = time.monotonic()
        held = contextlib.ExitStack()
        held.enter_context(node_host.Sessions().using(exclusive=exclusive))
        NODE_WAITS[item.nodeid] = time.monotonic() - asked
        _HELD.append(held)
    try:
        yield
    finally:
        if not (exclusive and _node_hold(nextitem)):
            _HELD.pop().close()


#: per node test, the seconds it waited for the node (another session's exclusive test, or the
#: other sessions' tests while it asked to hold it alone)
NODE_WAITS: dict[str, float] = {}


def pytest_terminal_summary(terminalreporter):
    """How long this session's node tests waited for the other sessions (CI's node groups)."""
    waits = {k: v for k, v in NODE_WAITS.items() if v >= 1}
    if not waits:
        return
    longest = sorted(waits.items(), key=lambda kv: -kv[1])[:3]
    terminalreporter.write_line(
        f"node shared with other sessions: {len(waits)} tests waited {sum(waits.values()):.0f} s"
        " in all; longest: " + ", ".join(f"{k.split('::')[-1][:60]} {v:.0f} s"
                                          for k, v in longest))


@pytest.fixture(scope="session")
def local_images() -> dict[str, Path]:
    """The locally built test images (tests/integration/images.py): ``{ref: tarball}``.

    Built once (cached by content in ~/.cache/moontv-images) and present in the local Docker
    engine; import a tarball into a containerd with ``images.import_into_containerd``.
    """
    try:
        images.ensure_engine()
    except images.ImageBuildError as exc:
        skip_or_fail(f"no Docker engine to build the test images: {exc}")
    try:
        return images.build_all()
    except images.ImageBuildError as exc:
        pytest.fail(f"building the test images failed: {exc}")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (tests/integration/browser.py): one process, a
    ``browser.Browser``."""
    from tests.integration import browser

    require_tools(["chromium"])
    try:
        driven = browser.Browser()
    except browser.BrowserUnavailable as exc:
        skip_or_fail(str(exc))
    try:
        yield driven
    finally:
        driven.close()
