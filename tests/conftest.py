"""Shared pytest set-up: the repository root on sys.path, and the engine requirement switch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

REQUIRE_ENGINE = os.environ.get("MOONTV_REQUIRE_ENGINE") == "1"


def skip_or_fail(reason: str) -> None:
    """Skip with ``reason``; under MOONTV_REQUIRE_ENGINE=1 (CI) a missing dependency fails."""
    if REQUIRE_ENGINE:
        pytest.fail(f"MOONTV_REQUIRE_ENGINE=1 but {reason}")
    pytest.skip(reason)


def unavailable_step(step: str) -> str | None:
    """Why ``tools/toolchain.sh`` found ``step`` impossible to build offline, or None.

    Such a step (a plugin whose Go module is not published) is a known gap, not a missing
    build: tests needing it skip with that reason even under MOONTV_REQUIRE_ENGINE=1.
    """
    result = subprocess.run(["bash", str(ROOT / "tools/toolchain.sh"), "--bin-dir"],
                            capture_output=True, text=True, check=False, timeout=120)
    marker = Path(result.stdout.strip()).parent / "stamps" / f"{step}.unavailable"
    return marker.read_text().strip() if result.returncode == 0 and marker.exists() else None


def require_tools(tools: tuple[str, ...] | list[str]) -> None:
    """Install the Debian test packages when a tool is missing; skip (CI: fail) if still missing."""
    if any(shutil.which(t) is None for t in tools):
        subprocess.run(["bash", str(ROOT / "tools" / "test-deps.sh")], check=False)
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        skip_or_fail(f"tools missing ({', '.join(missing)}); run tools/test-deps.sh")


# ---------------------------------------------------------------------------------------------
# CI groups (tools/ci_groups.py runs one pytest process per group, at the same time; the rule is
# in tests/README.md)

#: Every group, in the order their results are printed.
GROUPS = ("base", "node", "node-release", "swarm")


def ci_group(item: pytest.Item) -> str:
    """The group of a test: its ``ci_group`` marker; else ``node`` when it uses the ``node``
    fixture (directly or through another fixture) or is an integration test in a file
    ``test_node_*``; ``swarm`` for an integration test in a file ``test_swarm_*``; else
    ``base`` (unit tests, render, policy, kwok and Docker-only tests)."""
    marker = item.get_closest_marker("ci_group")
    if marker is not None:
        return str(marker.args[0])
    integration = "integration" in item.path.parts
    name = item.path.name
    uses_node = "node" in getattr(item, "fixturenames", ())
    if uses_node or (integration and name.startswith("test_node_")):
        return "node"
    if integration and name.startswith("test_swarm_"):
        return "swarm"
    return "base"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("moontv")
    group.addoption("--ci-group", choices=GROUPS, default=None,
                    help="run only the tests of this CI group (tests/README.md); never a test "
                    "marked bench")
    group.addoption("--ci-report", default=None, metavar="PATH",
                    help="write the session's outcome counts as JSON to PATH")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"ci_group(name): put the test in this CI group ({', '.join(GROUPS)}) "
        "instead of the one its fixtures and file name give")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = config.getoption("--ci-group")
    if wanted is None:
        return
    for item in items:
        group = ci_group(item)
        if group not in GROUPS:
            raise pytest.UsageError(f"{item.nodeid}: ci_group {group!r} is not one of {GROUPS}")
    def chosen(item: pytest.Item) -> bool:
        return ci_group(item) == wanted and item.get_closest_marker("bench") is None

    selected = [item for item in items if chosen(item)]
    deselected = [item for item in items if not chosen(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    path = session.config.getoption("--ci-report")
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if path is None or reporter is None:
        return
    counts = {key: len(reports) for key, reports in reporter.stats.items()
              if key and key not in ("warnings", "deselected")}
    Path(path).write_text(json.dumps({"exitstatus": int(exitstatus), "counts": counts}))
