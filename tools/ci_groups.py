#!/usr/bin/env python3
"""Run the test suite's groups at the same time and keep the time each took.

  tools/ci_groups.py run [--scope all|integration] [--no-lint] [--phase NAME=SECONDS]...
  tools/ci_groups.py report      the last run's breakdown (make bench-ci)

``run`` starts one pytest process per group (``base``, ``node``, ``swarm``: the rule that puts a
test in a group is ``ci_group`` in tests/conftest.py, explained in tests/README.md) and, with
``--scope all``, ``tools/lint.sh`` beside them. Each writes its output (with its 15 slowest
tests) to a log; when one ends its log is printed whole, so outputs never interleave. At the
end: the wall time, outcome and counts per group, and one closing line ``N passed, N failed,
N skipped`` (errors count as failed). Exit status 0 only when lint and every group passed; a
group that collects no test fails. ``--phase`` adds a set-up phase measured by the caller
(tools/test.sh) to the breakdown.

The breakdown is kept in $MOONTV_CI_DIR (default ${XDG_CACHE_HOME:-~/.cache}/moontv-ci):
``last/`` holds each group's log and ``summary.json``; ``history.jsonl`` gets one line per run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import GROUPS  # noqa: E402

PYTHON = ROOT / "venv" / "bin" / "python"


def store() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "moontv-ci"
    return Path(os.environ.get("MOONTV_CI_DIR") or default)


@dataclass
class Job:
    name: str
    command: list[str]
    log: Path
    report: Path | None = None  # pytest's --ci-report
    started: float = 0.0
    seconds: float = 0.0
    returncode: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.started = time.monotonic()
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(self.command, cwd=ROOT, stdout=out,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def poll(self) -> bool:
        assert self.process is not None
        if self.returncode is None and self.process.poll() is not None:
            self.returncode = self.process.returncode
            self.seconds = time.monotonic() - self.started
            if self.report is not None and self.report.exists():
                self.counts = json.loads(self.report.read_text())["counts"]
        return self.returncode is not None

    @property
    def outcome(self) -> str:
        if self.returncode == 0:
            return "passed"
        if self.report is not None and self.returncode == 5:
            return "FAILED (no tests collected)"
        return f"FAILED (exit {self.returncode})"


def jobs(scope: str, lint: bool, directory: Path) -> list[Job]:
    paths = ["tests"] if scope == "all" else ["tests/integration"]
    found = []
    if lint:
        found.append(Job("lint", ["bash", "tools/lint.sh"], directory / "lint.log"))
    for group in GROUPS:
        report = directory / f"{group}.json"
        command = [str(PYTHON), "-m", "pytest", "-ra", "--durations=15", "--ci-group", group,
                   "--ci-report",
                   str(report), "-o", f"cache_dir=.pytest_cache/{group}", *paths]
        found.append(Job(group, command, directory / f"{group}.log", report))
    return found


def closing_line(totals: dict[str, int]) -> str:
    failed = totals.get("failed", 0) + totals.get("error", 0)
    return f"{totals.get('passed', 0)} passed, {failed} failed, {totals.get('skipped', 0)} skipped"


def table(summary: dict) -> str:
    """The breakdown of one run, as ``make bench-ci`` and the end of ``make test`` print it."""
    lines = [f"run {summary['started']} ({summary['scope']}), wall {summary['wall_seconds']:.0f} s"]
    for name, seconds in summary.get("phases", {}).items():
        lines.append(f"  {name:<10} {seconds:8.1f} s  (set-up, before the groups)")
    for job in summary["jobs"]:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(job["counts"].items()))
        lines.append(f"  {job['name']:<10} {job['seconds']:8.1f} s  {job['outcome']}"
                     + (f"  [{counts}]" if counts else ""))
    load = summary.get("load")
    if load:
        lines.append(f"  load average at the end: {load}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    base = store()
    directory = base / "last"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    todo = jobs(args.scope, not args.no_lint, directory)
    started = time.monotonic()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    for job in todo:
        print(f"==> {job.name}: started (log {job.log})", flush=True)
        job.start()
    pending = list(todo)
    while pending:
        for job in [j for j in pending if j.poll()]:
            pending.remove(job)
            print(f"\n==> {job.name}: {job.outcome} in {job.seconds:.1f} s; its output:",
                  flush=True)
            sys.stdout.write(job.log.read_text(errors="replace"))
            sys.stdout.flush()
        if pending:
            time.sleep(0.5)
    totals: dict[str, int] = {}
    for job in todo:
        for key, value in job.counts.items():
            totals[key] = totals.get(key, 0) + value
    summary = {
        "started": stamp, "scope": args.scope, "wall_seconds": time.monotonic() - started,
        "phases": dict(args.phase), "load": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "jobs": [{"name": job.name, "seconds": round(job.seconds, 1),
                  "returncode": job.returncode, "counts": job.counts, "outcome": job.outcome}
                 for job in todo],
        "totals": totals,
    }
    (directory / "summary.json").write_text(json.dumps(summary, indent=1))
    with (base / "history.jsonl").open("a") as history:
        history.write(json.dumps(summary) + "\n")
    print("\n==> time per group (tools/ci_groups.py report prints it again)")
    print(table(summary))
    failed = [job.name for job in todo if job.returncode != 0]
    if failed:
        print(f"failed: {', '.join(failed)}")
    if totals.get("error"):
        print(f"({totals['error']} error(s) counted as failed)")
    print(closing_line(totals))
    return 1 if failed else 0


def report(_: argparse.Namespace) -> int:
    summary = store() / "last" / "summary.json"
    if not summary.exists():
        print(f"no run recorded in {summary.parent} yet: run `make test`", file=sys.stderr)
        return 1
    data = json.loads(summary.read_text())
    print(table(data))
    print(closing_line(data["totals"]))
    return 0


def phase(text: str) -> tuple[str, float]:
    name, _, seconds = text.partition("=")
    try:
        value = float(seconds)
    except ValueError:
        value = -1.0
    if not name or value < 0:
        raise argparse.ArgumentTypeError(f"expected NAME=SECONDS, got {text!r}")
    return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tools/ci_groups.py", description=__doc__.split("\n\n")[0].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    sub = parser.add_subparsers(dest="command", required=True)
    go = sub.add_parser("run", help="run lint and the groups at the same time")
    go.add_argument("--scope", choices=("all", "integration"), default="all",
                    help="all: tests/ and lint; integration: tests/integration only, no lint")
    go.add_argument("--no-lint", action="store_true", help="leave lint out")
    go.add_argument("--phase", type=phase, action="append", default=[], metavar="NAME=SECONDS",
                    help="a set-up phase the caller timed, shown in the breakdown")
    go.set_defaults(func=run)
    sub.add_parser("report", help="print the last run's breakdown").set_defaults(func=report)
    args = parser.parse_args(argv)
    if args.command == "run" and args.scope == "integration":
        args.no_lint = True
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
