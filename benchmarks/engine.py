"""Real-engine figures: ``pulumi preview`` wall time per stack against an empty program (the
floor), where the time goes (from the engine's own log timestamps), the cost of one more stack
in one backend, and the speed of a canary weight step with and without ``--target``.

Every stack is rendered (``kubernetes.renderDir``): no cluster is needed, and the provider does
the same work up to writing files. All runs of one figure happen in one process, one after the
other, so ratios within one run hold on a busy machine; absolute seconds do not.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from tests.integration.engine import PROGRAM_FILES, engine_env

ROOT = Path(__file__).resolve().parent.parent
PASSPHRASE = "bench"
EMPTY_PROGRAM = """name: floor
runtime:
  name: python
  options:
    toolchain: pip
    virtualenv: venv
"""


class Workspace:
    """A copy of the program (and an empty program) sharing one local file backend."""

    def __init__(self, tmp: Path, source: Path = ROOT):
        self.tmp = tmp
        self.source = source
        self.state = tmp / "state"
        self.state.mkdir()
        self.env = {
            **engine_env(),
            "PULUMI_BACKEND_URL": f"file://{self.state}",
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        }
        self.program = tmp / "program"
        self.program.mkdir()
        for name in (*PROGRAM_FILES, *(p.name for p in source.glob("Pulumi.*.yaml"))):
            src = source / name
            if src.is_dir():
                shutil.copytree(
                    src, self.program / name, ignore=shutil.ignore_patterns("__pycache__")
                )
            elif src.exists():
                shutil.copy2(src, self.program / name)
        (self.program / "venv").symlink_to(ROOT / "venv")
        self.floor = tmp / "floor"
        self.floor.mkdir()
        (self.floor / "Pulumi.yaml").write_text(EMPTY_PROGRAM)
        (self.floor / "__main__.py").write_text("import pulumi  # noqa: F401\n")
        (self.floor / "venv").symlink_to(ROOT / "venv")

    def pulumi(
        self, cwd: Path, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["pulumi", *args, "--non-interactive"],
            cwd=cwd,
            env=env or self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"pulumi {' '.join(args)} failed:\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}"
            )
        return proc

    def create(self, stack: str, source: str | None = None, **set_config: Any) -> None:
        """Stack ``stack`` from ``Pulumi.<source>.yaml`` (default: its own), rendered to a
        directory of its own; ``set_config``: moontv keys to replace (``release=…`` sets
        ``moontv:release``)."""
        doc = yaml.safe_load((self.source / f"Pulumi.{source or stack}.yaml").read_text())
        config = doc["config"]
        config["moontv:kubernetes"] = {"renderDir": str(self.tmp / "rendered" / stack)}
        for key, value in set_config.items():
            config[f"moontv:{key}"] = value
        (self.program / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": config}))
        self.pulumi(self.program, "stack", "init", stack)

    def timed(self, cwd: Path, *args: str) -> float:
        start = time.perf_counter()
        self.pulumi(cwd, *args)
        return time.perf_counter() - start


# --- where the time goes ------------------------------------------------------------------------


@dataclass
class Breakdown:
    """Phases of one logged engine run, in seconds from the engine's first log line."""

    total: float = 0.0
    plugins_known: float = 0.0  # language host up, About, GetRequiredPlugins answered
    run_start: float = 0.0
    first_register: float | None = None
    last_register: float | None = None
    run_end: float = 0.0
    registrations: int = 0
    providers: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    # name -> (launched, configured, first call, last call answered)


_LAUNCH = re.compile(
    r"newPlugin\(\): Launching plugin '([^']+) \(resource\)'|"
    r"newPlugin\(\): Launching plugin '([^'()]+)' from '[^']*pulumi-resource-"
)
_PROVIDER = re.compile(r"^Provider\[([^\]]+)\]\.(\w+)\((.*)$")


def _seconds(stamp: str) -> float:
    # RFC 3339 with nanoseconds: keep microseconds for datetime
    head, _, frac = stamp.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp()


def breakdown(log: str) -> Breakdown:
    """Parse ``pulumi … --logtostderr -v=9`` output (JSON lines with a ``time`` and ``msg``)."""
    events: list[tuple[float, str]] = []
    for line in log.splitlines():
        if line.startswith("{"):
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if "time" in item and "msg" in item:
                events.append((_seconds(item["time"]), str(item["msg"])))
    if not events:
        raise RuntimeError("no engine log lines (is --logtostderr -v=9 honoured?)")
    t0 = events[0][0]
    b = Breakdown(total=events[-1][0] - t0)
    launches: list[tuple[float, str]] = []
    pointers: dict[str, list[float]] = {}  # pointer -> [launched, configured, first, last]
    names: dict[str, str] = {}
    for at, msg in events:
        t = at - t0
        if "GetRequiredPlugins(" in msg and " success" in msg:
            b.plugins_known = t
        elif msg.startswith("langhost[python].Run(") and msg.endswith("executing"):
            b.run_start = t
        elif msg.startswith("langhost[python].Run(") and ("success" in msg or "failed" in msg):
            b.run_end = t
        elif msg.startswith("ResourceMonitor.RegisterResource received"):
            b.registrations += 1
            b.first_register = t if b.first_register is None else b.first_register
            b.last_register = t
        elif match := _LAUNCH.search(msg):
            launches.append((t, match.group(1) or match.group(2)))
        elif match := _PROVIDER.match(msg):
            ptr, call, rest = match.groups()
            if ptr not in pointers:
                launched, name = launches.pop(0) if launches else (t, "?")
                pointers[ptr] = [launched, t, -1.0, t]
                names[ptr] = name
            slot = pointers[ptr]
            if call == "Configure" and "success" in rest:
                slot[1] = t
            elif (
                call
                not in (
                    "GetPluginInfo",
                    "CheckConfig",
                    "Configure",
                    "GetSchema",
                    "Handshake",
                    "Attach",
                )
                and slot[2] < 0
            ):
                slot[2] = t
            slot[3] = t
    for ptr, (launched, configured, first, last) in pointers.items():
        b.providers[names[ptr]] = (launched, configured, first if first >= 0 else configured, last)
    return b


def print_breakdown(label: str, b: Breakdown) -> None:
    reg = (
        f"{b.first_register:5.2f}-{b.last_register:5.2f}"
        if b.first_register is not None and b.last_register is not None
        else "    -      "
    )
    print(
        f"  {label:10} {b.total:6.2f} {b.plugins_known:8.2f} {b.run_start:6.2f} "
        f"{reg:>11} {b.registrations:5d} {b.run_end:7.2f}"
    )
    for name, (launched, configured, first, last) in sorted(
        b.providers.items(), key=lambda kv: kv[1][0]
    ):
        print(
            f"  {'':10} provider {name:14} launched {launched:5.2f}  configured "
            f"{configured:5.2f} (start {configured - launched:4.2f} s)  work "
            f"{first:5.2f}-{last:5.2f}"
        )


def _logged_preview(ws: Workspace, cwd: Path, stack: str) -> Breakdown:
    proc = subprocess.run(
        ["pulumi", "preview", "--stack", stack, "--non-interactive", "--logtostderr", "-v=9"],
        cwd=cwd,
        env=ws.env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pulumi preview {stack} failed:\n{proc.stdout[-1500:]}")
    return breakdown(proc.stderr)


def floor_and_stacks(ws: Workspace, stacks: Sequence[str], runs: int) -> None:
    ws.pulumi(ws.floor, "stack", "init", "floor")
    for stack in stacks:
        ws.create(stack)
        ws.pulumi(ws.program, "preview", "--stack", stack)  # warm the byte-code caches
    ws.pulumi(ws.floor, "preview", "--stack", "floor")
    # interleaved rounds: a burst of load on the machine hits every stack alike
    times: dict[str, list[float]] = {name: [] for name in ("floor", *stacks)}
    for _ in range(runs):
        times["floor"].append(ws.timed(ws.floor, "preview", "--stack", "floor"))
        for stack in stacks:
            times[stack].append(ws.timed(ws.program, "preview", "--stack", stack))
    floor = statistics.median(times["floor"])
    print(
        f"\nreal engine `pulumi preview` (median of {runs} interleaved runs; "
        f"goal: prod <= 1.5x floor)"
    )
    print(f"  {'empty program (floor)':24} {floor:6.2f} s")
    for stack in stacks:
        median = statistics.median(times[stack])
        print(
            f"  {stack:24} {median:6.2f} s   {median / floor:5.2f}x floor   "
            f"(+{median - floor:4.2f} s)"
        )
    print(
        "\nwhere the time goes (one `preview --logtostderr -v=9` each; seconds from the "
        "engine's first log line;\n  logging itself adds a little)"
    )
    print(
        f"  {'stack':10} {'total':>6} {'plugins':>8} {'run':>6} {'registering':>11} "
        f"{'#res':>5} {'run end':>7}"
    )
    print_breakdown("floor", _logged_preview(ws, ws.floor, "floor"))
    for stack in stacks:
        print_breakdown(stack, _logged_preview(ws, ws.program, stack))
    print(
        "  plugins: language host started, About and GetRequiredPlugins answered; run: the "
        "program starts;\n  registering: first and last resource registration; run end: the "
        "program has exited"
    )


# --- cost of one more stack ---------------------------------------------------------------------


def scale(ws: Workspace, counts: Sequence[int] = (1, 5, 20)) -> None:
    print(
        f"\nreview stacks in one backend (from Pulumi.pr.yaml, rendered): `preview` then "
        f"`up` of each, for {', '.join(map(str, counts))} stacks"
    )
    print(f"  {'stacks':>6} {'preview s':>10} {'up s':>8} {'per stack: preview':>19} {'up':>6}")
    made = 0
    totals: dict[int, tuple[float, float]] = {}
    for count in counts:
        previews, ups = [], []
        for n in range(made + 1, count + 1):
            stack = f"pr-{n}"
            ws.create(
                stack,
                "pr",
                namespace=f"moontv-pr-{n}",
                traffic={
                    "host": f"pr-{n}.preview.moontv.example.com",
                    "provider": "gateway",
                    "gateway": {"name": "public", "namespace": "gateway-system"},
                },
            )
            previews.append(ws.timed(ws.program, "preview", "--stack", stack))
            ups.append(ws.timed(ws.program, "up", "--yes", "--skip-preview", "--stack", stack))
        made = count
        before = totals.get(max((c for c in totals), default=0), (0.0, 0.0))
        totals[count] = (before[0] + sum(previews), before[1] + sum(ups))
        print(
            f"  {count:6d} {totals[count][0]:10.2f} {totals[count][1]:8.2f} "
            f"{statistics.median(previews):19.2f} {statistics.median(ups):6.2f}"
            f"   (median of the {len(previews)} stack(s) added)"
        )
    first, last = counts[0], counts[-1]
    extra = [(totals[last][i] - totals[first][i]) / (last - first) for i in (0, 1)]
    print(
        f"  one more stack costs {extra[0]:.2f} s of preview and {extra[1]:.2f} s of up "
        f"(slope from {first} to {last} stacks)"
    )
    again = ws.timed(ws.program, "preview", "--stack", "pr-1")
    print(f"  preview of the first stack with {last} stacks in the backend: {again:.2f} s")


# --- canary weight step -------------------------------------------------------------------------


def canary_step(ws: Workspace, runs: int) -> None:
    """A weight-only ``up`` of a rendered canary stack (staging's topology), whole and with the
    rollout CLI's route targets, alternating; then a whole preview must find nothing left."""
    from rollout.stack import ROUTE_TARGETS

    stack = "canary"
    release = {"strategy": "canary", "canary": {"version": "v100.1.2", "weight": 0}}
    ws.create(stack, "staging", release=release)
    ws.pulumi(ws.program, "up", "--yes", "--skip-preview", "--stack", stack)
    full: list[float] = []
    targeted: list[float] = []
    targets = [arg for glob in ROUTE_TARGETS for arg in ("--target", glob)]
    weight = 0
    for _ in range(runs):
        for bucket, extra in ((full, []), (targeted, targets)):
            weight = weight % 90 + 10
            path = "moontv:release.canary.weight"
            ws.pulumi(ws.program, "config", "set", "--path", "--stack", stack, path, str(weight))
            up = ("up", "--yes", "--skip-preview", "--stack", stack, *extra)
            bucket.append(ws.timed(ws.program, *up))
    whole, routes = statistics.median(full), statistics.median(targeted)
    print(
        f"\ncanary weight step: `up` after moontv:release.canary.weight changes (median of {runs})"
    )
    print(f"  whole stack                           {whole:6.2f} s")
    print(f"  --target the routes (rollout CLI)     {routes:6.2f} s   ({routes / whole:.2f}x)")
    out = ws.pulumi(ws.program, "preview", "--stack", stack, "--json").stdout
    pending = [s for s in json.loads(out).get("steps", []) if s.get("op") != "same"]
    outputs = ws.pulumi(ws.program, "stack", "output", "weights", "--stack", stack).stdout.strip()
    print(
        f"  after a targeted step: a whole preview finds {len(pending)} pending change(s); "
        f"output weights {outputs}"
    )
