"""Print per-stack program time under mocks and resource counts, and, with the real engine,
``pulumi preview`` wall time per stack against an empty program (the engine floor)."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.program import run_stack  # noqa: E402  (needs the sys.path line above)

STACKS = ("dev", "staging", "prod")


def mocked(runs: int) -> None:
    print(f"program execution under mocks (median of {runs} runs; target <= 1.5 s per stack)")
    print(f"  {'stack':8} {'median s':>9} {'min s':>7} {'resources':>10} {'kubernetes':>11}")
    for stack in STACKS:
        times, result = [], None
        for _ in range(runs):
            start = time.perf_counter()
            with contextlib.redirect_stderr(io.StringIO()):
                result = run_stack(stack)
            times.append(time.perf_counter() - start)
        assert result is not None
        print(f"  {stack:8} {statistics.median(times):9.3f} {min(times):7.3f} "
              f"{len(result.resources):10d} {len(result.kubernetes()):11d}")


EMPTY_PROGRAM = """name: floor
runtime:
  name: python
  options:
    toolchain: pip
    virtualenv: {venv}
"""


def _preview(cwd: Path, stack: str, env: dict[str, str]) -> float:
    subprocess.run(["pulumi", "stack", "select", "--create", stack, "--non-interactive"],
                   cwd=cwd, env=env, check=True, capture_output=True)
    start = time.perf_counter()
    subprocess.run(["pulumi", "preview", "--stack", stack, "--non-interactive"], cwd=cwd,
                   env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def engine(runs: int) -> None:
    if shutil.which("pulumi") is None:
        print("\nreal engine: skipped (pulumi not on PATH; run `make toolchain` and "
              "`source tools/env.sh`)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        state.mkdir()
        env = {**os.environ, "PULUMI_BACKEND_URL": f"file://{state}",
               "PULUMI_CONFIG_PASSPHRASE": "bench", "PULUMI_SKIP_UPDATE_CHECK": "true"}
        floor_dir = Path(tmp) / "floor"
        floor_dir.mkdir()
        (floor_dir / "Pulumi.yaml").write_text(EMPTY_PROGRAM.format(venv=ROOT / "venv"))
        (floor_dir / "__main__.py").write_text("import pulumi\n")
        floor = statistics.median(_preview(floor_dir, "floor", env) for _ in range(runs))
        print(f"\nreal engine `pulumi preview` (median of {runs}; goal: prod <= 1.5x floor)")
        print(f"  {'empty program (floor)':24} {floor:7.2f} s")
        for stack in STACKS:
            # staging/prod point at clusters that may not exist: preview them rendered instead
            work = Path(tmp) / f"w-{stack}"
            shutil.copytree(ROOT, work, ignore=shutil.ignore_patterns(
                "venv", ".git", ".pulumi-state", "rendered", "__pycache__"))
            (work / "venv").symlink_to(ROOT / "venv")
            _render_only(work / f"Pulumi.{stack}.yaml", Path(tmp) / f"r-{stack}")
            median = statistics.median(_preview(work, stack, env) for _ in range(runs))
            print(f"  {stack:24} {median:7.2f} s   {median / floor:5.2f}x floor")


def _render_only(stack_file: Path, render_dir: Path) -> None:
    import yaml

    doc = yaml.safe_load(stack_file.read_text())
    doc["config"]["moontv:kubernetes"] = {"renderDir": str(render_dir)}
    doc.pop("encryptionsalt", None)  # the stack is created anew with the bench passphrase
    stack_file.write_text(yaml.safe_dump(doc))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="repetitions per figure (default 5)")
    parser.add_argument("--mocks-only", action="store_true", help="skip the real-engine figures")
    args = parser.parse_args()
    mocked(args.runs)
    if not args.mocks_only:
        engine(max(1, args.runs // 2 + 1))


if __name__ == "__main__":
    main()
