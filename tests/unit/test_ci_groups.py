"""tools/ci_groups.py and the CI grouping rule of tests/conftest.py: which group a test falls
in, and a run of several groups at once (tiny stand-in groups) with its breakdown and its one
closing line."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import GROUPS, ROOT, ci_group


def load_tool():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("ci_groups", ROOT / "tools/ci_groups.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["ci_groups"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def item(path: str, fixtures: tuple[str, ...] = (), marker: str | None = None) -> SimpleNamespace:
    mark = SimpleNamespace(args=(marker,)) if marker else None
    return SimpleNamespace(path=ROOT / path, fixturenames=fixtures,
                           get_closest_marker=lambda name: mark if name == "ci_group" else None)


@pytest.mark.parametrize(("path", "fixtures", "marker", "group"), [
    ("tests/integration/test_node_autoscaling.py", (), None, "node"),
    ("tests/integration/test_pipeline.py", ("tmp_path", "node"), None, "node"),
    ("tests/integration/test_pipeline.py", ("tmp_path",), None, "base"),
    ("tests/integration/test_swarm_stack.py", ("local_images",), None, "swarm"),
    ("tests/integration/test_browser_pages.py", ("local_images",), None, "base"),
    ("tests/unit/test_node_script.py", ("tmp_path",), None, "base"),
    ("tests/unit/test_swarm_spec.py", (), None, "base"),
    ("tests/integration/test_renovate_config.py", (), "swarm", "swarm"),
    ("tests/integration/test_node_release.py", ("node",), "node-release", "node-release"),
])
def test_the_group_follows_fixtures_file_names_and_the_marker(path, fixtures, marker, group):
    assert ci_group(item(path, fixtures, marker)) == group  # type: ignore[arg-type]


def test_every_collected_test_is_in_exactly_one_group():
    counts = {}
    for group in GROUPS:
        out = subprocess.run(
            [sys.executable, "-m", "pytest", "--collect-only", "-q", "--ci-group", group,
             "tests/integration"], cwd=ROOT, capture_output=True, text=True, check=False,
            timeout=300).stdout
        counts[group] = {line for line in out.splitlines() if "::" in line}
    union = set().union(*counts.values())
    assert sum(len(ids) for ids in counts.values()) == len(union)
    assert all(counts.values()), {g: len(ids) for g, ids in counts.items()}
    # the file-name rule holds, but for the modules marked into other groups to even out the
    # wall time (tests/README.md); tests elsewhere join node through the node fixture
    marked = {"/test_node_release": "node-release", "/test_node_browser": "node-release",
              "/test_node_autoscaling": "swarm"}
    assert all(i in counts["node"] for i in union
               if "/test_node_" in i and not any(m in i for m in marked))
    for module, group in marked.items():
        assert {i for i in union if module in i} <= counts[group], module
    assert all(i in counts["swarm"] for i in union if "/test_swarm_" in i)


def stand_in(tool, directory: Path, outcomes: dict[str, tuple[int, dict[str, int]]]):  # type: ignore[no-untyped-def]
    """Groups that print a line, write their counts and exit with the given status."""
    jobs = []
    for name, (code, counts) in outcomes.items():
        report = directory / f"{name}.json"
        script = (f"import json, sys; print('{name} output'); "
                  f"json.dump({{'exitstatus': {code}, 'counts': {counts!r}}}, "
                  f"open({str(report)!r}, 'w')); sys.exit({code})")
        jobs.append(tool.Job(name, [sys.executable, "-c", script], directory / f"{name}.log",
                             report))
    return jobs


def run(tool, monkeypatch, tmp_path, capsys, outcomes):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MOONTV_CI_DIR", str(tmp_path / "ci"))
    monkeypatch.setattr(tool, "jobs", lambda scope, lint, directory: stand_in(
        tool, directory, outcomes))
    code = tool.main(["run", "--phase", "toolchain=12.5"])
    return code, capsys.readouterr().out


def test_given_groups_that_pass_then_one_closing_line_sums_them_and_the_breakdown_is_kept(
    monkeypatch, tmp_path, capsys
):
    tool = load_tool()
    code, out = run(tool, monkeypatch, tmp_path, capsys, {
        "base": (0, {"passed": 5, "skipped": 1}), "node": (0, {"passed": 3})})
    assert code == 0
    assert "base output" in out and "node output" in out
    lines = out.strip().splitlines()
    assert lines[-1] == "8 passed, 0 failed, 1 skipped"
    assert sum(line.endswith(" skipped") and " passed, " in line for line in lines) == 1
    assert any(line.split()[:1] == ["toolchain"] and "12.5 s" in line for line in lines)
    summary = json.loads((tmp_path / "ci/last/summary.json").read_text())
    assert [j["name"] for j in summary["jobs"]] == ["base", "node"]
    assert len((tmp_path / "ci/history.jsonl").read_text().splitlines()) == 1

    assert tool.main(["report"]) == 0
    again = capsys.readouterr().out.strip().splitlines()
    assert again[-1] == "8 passed, 0 failed, 1 skipped"
    assert any(line.split()[:1] == ["node"] and "passed" in line for line in again)


def test_given_a_failing_group_and_an_empty_one_then_the_run_fails_and_names_them(
    monkeypatch, tmp_path, capsys
):
    tool = load_tool()
    code, out = run(tool, monkeypatch, tmp_path, capsys, {
        "base": (1, {"passed": 2, "failed": 1, "error": 1}), "swarm": (5, {}),
        "node": (0, {"passed": 1})})
    assert code == 1
    assert "failed: base, swarm" in out
    assert "FAILED (no tests collected)" in out
    assert out.strip().splitlines()[-1] == "3 passed, 2 failed, 0 skipped"


def test_report_without_a_run_says_so(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MOONTV_CI_DIR", str(tmp_path))
    assert load_tool().main(["report"]) == 1
    assert "no run recorded" in capsys.readouterr().err


def test_a_real_pytest_reports_its_counts_and_an_empty_group_exits_5(tmp_path):
    def session(group: str) -> tuple[int, dict]:
        report = tmp_path / f"{group}.json"
        code = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--ci-group", group,
             "--ci-report", str(report), "tests/unit/test_quantity.py"], cwd=ROOT,
            capture_output=True, text=True, check=False, timeout=300).returncode
        return code, json.loads(report.read_text())

    code, report = session("base")
    assert code == 0 and report["exitstatus"] == 0
    assert report["counts"]["passed"] > 0 and set(report["counts"]) == {"passed"}
    assert session("swarm") == (5, {"exitstatus": 5, "counts": {}})
