"""Print per-stack program time under mocks and resource counts; with the real engine,
``pulumi preview`` wall time per stack against an empty program (the engine floor) and where
it goes, the cost of one more stack, the canary weight step; and the image rebuild figures
(docs/performance.md explains each)."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.program import run_stack  # noqa: E402  (needs the sys.path line above)

#: Stacks of the engine figures (those that exist); all are rendered, none needs a cluster.
ENGINE_STACKS = ("dev", "staging", "testing", "prod", "pr")


#: Program variants under mocks: (label, stack file, config overrides).
VARIANTS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("dev", "dev", {}),
    (
        "dev+canary",
        "dev",
        {"moontv:release": {"strategy": "canary", "canary": {"version": "v100.1.2", "weight": 10}}},
    ),
    ("staging", "staging", {}),
    ("testing", "testing", {}),
    ("prod", "prod", {}),
    ("pr", "pr", {}),
)


def mocked(runs: int) -> None:
    print(f"program execution under mocks (median of {runs} runs; target <= 1.5 s per stack)")
    print(
        f"  {'stack':11} {'median s':>9} {'min s':>7} {'tracks':>7} {'resources':>10} "
        f"{'kubernetes':>11} {'ms/resource':>12}"
    )
    for label, stack, overrides in VARIANTS:
        if not (ROOT / f"Pulumi.{stack}.yaml").exists():
            continue
        times, result = [], None
        for _ in range(runs):
            start = time.perf_counter()
            with contextlib.redirect_stderr(io.StringIO()):
                result = run_stack(stack, overrides)
            times.append(time.perf_counter() - start)
        assert result is not None
        median, count = statistics.median(times), len(result.resources)
        print(
            f"  {label:11} {median:9.3f} {min(times):7.3f} {len(result.outputs['versions']):7d} "
            f"{count:10d} {len(result.kubernetes()):11d} {1000 * median / count:12.2f}"
        )


def engine(runs: int) -> None:
    from benchmarks import engine as real
    from tests.integration.engine import engine_env

    path = engine_env()["PATH"]
    if shutil.which("pulumi", path=path) is None:
        print("\nreal engine: skipped (pulumi not built; run `make toolchain`)")
        return
    os.environ["PATH"] = path
    with tempfile.TemporaryDirectory() as tmp:
        ws = real.Workspace(Path(tmp))
        stacks = [s for s in ENGINE_STACKS if (ROOT / f"Pulumi.{s}.yaml").exists()]
        real.floor_and_stacks(ws, stacks, runs)
        real.scale(ws)
        real.canary_step(ws, max(runs, 5))  # a small difference: more runs


NODE_STEPS = ("node", "coredns", "kube-router", "traefik", "metrics-server")


def node_figures() -> None:
    """The real node: what its binaries add to a cold toolchain build, its start to Ready, and
    the node stack's `up` from empty to every workload Ready (then destroyed, node stopped)."""
    from tests.integration import node as node_host

    times = node_host.bin_dir().parent / "build-times.tsv"
    print("real node: cold build of its binaries (toolchain build-times.tsv, last success)")
    rows: dict[str, list[str]] = {}
    if times.exists():
        for line in times.read_text().splitlines():
            cols = line.split("\t")
            if cols[0] in NODE_STEPS and cols[2].isdigit():
                rows[cols[0]] = cols
    wall = cpu = 0
    for step in NODE_STEPS:
        cols = rows.get(step)
        if cols is None:
            print(f"  {step:12} not built (or built before build times were recorded)")
            continue
        step_cpu = cols[4] if len(cols) > 4 and cols[4] else "?"
        print(f"  {step:12} {cols[1]:9} {int(cols[2]):6d} s wall  {step_cpu:>6} CPU-s")
        wall += int(cols[2])
        cpu += int(step_cpu) if step_cpu.isdigit() else 0
    print(f"  {'total':12} {'':9} {wall:6d} s wall  {cpu:6d} CPU-s")
    if node_host.missing_binaries() or not node_host.privileged():
        print("real node start: skipped (binaries missing, or neither root nor passwordless sudo)")
        return
    sessions = node_host.Sessions()  # shared with test sessions: the last one out stops it
    with sessions.locked():
        sessions.join()
        start = time.perf_counter()
        result = node_host.cluster("node-up")
        seconds = time.perf_counter() - start
    try:
        if result.returncode != 0:
            print(f"real node start: FAILED\n{result.stdout}{result.stderr}")
            return
        if "the node is already running" in result.stdout:
            print("real node: already running (another session started it): start not measured")
        else:
            print(f"real node: node-up to node Ready (and the Gateway programmed) {seconds:.1f} s")
        _node_stack_up(node_host.Node.parse(result.stdout))
    finally:
        with sessions.locked():
            sessions.leave()
            if not sessions.others():
                node_host.cluster("node-down")


def _node_stack_up(node) -> None:  # type: ignore[no-untyped-def]
    import importlib

    from tests.integration.engine import Project, engine_env, stack_config

    if shutil.which("pulumi", path=engine_env()["PATH"]) is None:
        print("node stack up: skipped (pulumi not built)")
        return
    try:
        images = importlib.import_module("tests.integration.images")
        node.import_images(*images.build_all().values())
    except Exception as err:  # noqa: BLE001 (a figure is skipped, with the reason)
        print(f"node stack up: skipped (test images: {err})")
        return
    env = engine_env()
    os.environ["PATH"] = env["PATH"]
    with tempfile.TemporaryDirectory() as tmp:
        project = Project(Path(tmp), env)
        config = stack_config("node")
        # its own namespace and host: test sessions may deploy the node stack meanwhile
        config = {
            **config,
            "moontv:namespace": "moontv-bench",
            "moontv:traffic": {**config["moontv:traffic"], "host": "moontv.bench.local"},
            "moontv:kubernetes": {"context": node.context, "kubeconfig": node.kubeconfig},
        }
        stack = project.stack("node", config, secrets={"moontv:ownerPassword": "bench-owner-1"})
        try:
            start = time.perf_counter()
            stack.up()
            node.kubectl(
                "wait",
                "-n",
                config["moontv:namespace"],
                "--for=condition=Available",
                "deployment",
                "--all",
                "--timeout=300s",
                timeout=330,
            )
            print(
                f"node stack: `up` from empty to every workload Ready "
                f"{time.perf_counter() - start:.1f} s"
            )
        finally:
            stack.destroy()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="repetitions per figure (default 5)")
    parser.add_argument("--mocks-only", action="store_true", help="skip the real-engine figures")
    parser.add_argument(
        "--node",
        action="store_true",
        help="only the real node's figures: cold build time of its binaries, "
        "start to Ready, node stack up to Ready (needs root or sudo)",
    )
    args = parser.parse_args()
    if args.node:
        node_figures()
        return
    mocked(args.runs)
    if not args.mocks_only:
        engine(max(1, args.runs // 2 + 1))
        from benchmarks.image import image_figures

        image_figures()


if __name__ == "__main__":
    main()
