"""Capacity of one replica of the app twin (``python -m benchmarks.capacity``).

One twin container (tests/fixtures/app-twin, built by tests/integration/images.py) runs with
the Kubernetes replica's CPU and memory limits (``--cpus 1 --memory 768m``: the default
``resources.limits``) against a redis-server, both on 127.0.0.1. ApacheBench (``ab``, keep-alive)
loads one path at rising concurrency, each step bounded in time and count; each step reports
requests/s, p99 and the CPU the container used per request (its cgroup's ``cpuacct.usage``).
The result: the highest rate at p99 <= 500 ms, the memory per replica, and the request rate at
which the HPA's CPU target is reached for a given CPU request.

Figures are of the twin, which models LunaTV's routes and storage traffic but not the cost of
Next.js server rendering, measured on a shared 2-core machine: treat them as an upper bound
and re-measure with the real image before sizing a production cluster.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from http.cookiejar import CookieJar
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration import twin as app_twin  # noqa: E402  (needs the sys.path line above)

P99_BUDGET_MS = 500
CPU_LIMIT = "1"
MEMORY_LIMIT = "768m"
TWIN = "moontv.local/lunatv-twin:v100.1.2"


@dataclass(frozen=True)
class Step:
    path: str
    concurrency: int
    requests: int
    rps: float
    p99_ms: float
    failed: int
    cpu_ms_per_request: float


def cpu_ns(container: str) -> int:
    """CPU time the container used so far, in ns (cgroup v1 cpuacct, or v2 cpu.stat)."""
    out = subprocess.run(
        [
            app_twin.DOCKER,
            "exec",
            container,
            "sh",
            "-c",
            "if [ -r /sys/fs/cgroup/cpuacct/cpuacct.usage ]; then "
            "echo ns $(cat /sys/fs/cgroup/cpuacct/cpuacct.usage); else "
            "echo us $(sed -n 's/^usage_usec //p' /sys/fs/cgroup/cpu.stat); fi",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    return int(out[1]) * (1 if out[0] == "ns" else 1000)


def run_ab(
    url: str, concurrency: int, seconds: int, cookie: str | None
) -> tuple[int, float, float, int]:
    """(completed requests, requests/s, p99 ms, failed) of one bounded ab run."""
    command = [
        "ab",
        "-q",
        "-k",
        "-t",
        str(seconds),
        "-n",
        str(concurrency * 2000),
        "-c",
        str(concurrency),
        "-s",
        "10",
    ]
    if cookie:
        command += ["-C", cookie]
    out = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout

    def field(pattern: str) -> str:
        match = re.search(pattern, out, re.M)
        if match is None:
            raise RuntimeError(f"ab printed no {pattern!r}:\n{out}")
        return match.group(1)

    non_2xx = re.search(r"^Non-2xx responses:\s+(\d+)", out, re.M)
    return (
        int(field(r"^Complete requests:\s+(\d+)")),
        float(field(r"^Requests per second:\s+([\d.]+)")),
        float(field(r"^\s+99%\s+(\d+)")),
        int(field(r"^Failed requests:\s+(\d+)")) + (int(non_2xx.group(1)) if non_2xx else 0),
    )


def login_cookie(base: str) -> str:
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    body = json.dumps({"username": app_twin.OWNER, "password": app_twin.PASSWORD}).encode()
    opener.open(
        urllib.request.Request(
            f"{base}/api/login", data=body, headers={"Content-Type": "application/json"}
        ),
        timeout=10,
    )
    return "; ".join(f"{c.name}={c.value}" for c in jar)


def measure(paths: list[str], levels: list[int], seconds: int) -> dict[str, object]:
    from tests.integration.test_storage_tool import redis_server

    app_twin.images()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        port = stack.enter_context(redis_server(Path(tmp), password=None))
        twin = stack.enter_context(
            app_twin.running(TWIN, f"redis://127.0.0.1:{port}", cpus=CPU_LIMIT)
        )
        subprocess.run(
            [
                app_twin.DOCKER,
                "update",
                "--memory",
                MEMORY_LIMIT,
                "--memory-swap",
                MEMORY_LIMIT,
                twin.container,
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        time.sleep(5)
        idle_mib = twin.memory_mib()
        cookie = login_cookie(twin.url)
        steps: list[Step] = []
        for path in paths:
            for concurrency in levels:
                before = cpu_ns(twin.container)
                done, rps, p99, failed = run_ab(
                    twin.url + path,
                    concurrency,
                    seconds,
                    cookie if path.startswith("/api/") else None,
                )
                used = cpu_ns(twin.container) - before
                step = Step(
                    path, concurrency, done, rps, p99, failed, round(used / 1e6 / max(done, 1), 3)
                )
                steps.append(step)
                print(
                    f"  {path:16} c={concurrency:<3} {rps:9.1f} req/s  p99 {p99:6.0f} ms  "
                    f"failed {failed:<5} cpu {step.cpu_ms_per_request:.3f} ms/req",
                    flush=True,
                )
        loaded_mib = twin.memory_mib()
    best = {}
    for path in paths:
        ok = [s for s in steps if s.path == path and s.p99_ms <= P99_BUDGET_MS and not s.failed]
        top = max(ok, key=lambda s: s.rps) if ok else None
        best[path] = asdict(top) if top else None
    return {
        "twin": TWIN,
        "cpu_limit": CPU_LIMIT,
        "memory_limit": MEMORY_LIMIT,
        "p99_budget_ms": P99_BUDGET_MS,
        "idle_memory_mib": round(idle_mib, 1),
        "loaded_memory_mib": round(loaded_mib, 1),
        "best": best,
        "steps": [asdict(s) for s in steps],
    }


def hpa_threshold(cpu_ms_per_request: float, request_millicores: int, target_percent: int) -> float:
    """Requests/s per replica at which the HPA's CPU utilisation target is reached."""
    return request_millicores * target_percent / 100 / cpu_ms_per_request


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.capacity",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--paths",
        default="/login,/api/favorites",
        help="comma-separated paths to load (default: %(default)s)",
    )
    parser.add_argument(
        "--levels", default="1,4,16,64,256", help="concurrency levels (default: %(default)s)"
    )
    parser.add_argument(
        "--seconds",
        type=int,
        default=8,
        help="duration of each step, at most 60 (default: %(default)s)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if not 1 <= args.seconds <= 60:
        parser.error(f"--seconds: must be 1..60, got {args.seconds}")
    levels = [int(x) for x in args.levels.split(",")]
    if any(not 1 <= c <= 256 for c in levels):
        parser.error(f"--levels: each must be 1..256, got {args.levels}")
    print(
        f"capacity of one app-twin replica ({CPU_LIMIT} CPU, {MEMORY_LIMIT}), p99 budget "
        f"{P99_BUDGET_MS} ms"
    )
    result = measure(args.paths.split(","), levels, args.seconds)
    for path, top in result["best"].items():  # type: ignore[union-attr]
        if top is None:
            print(f"{path}: no step kept p99 <= {P99_BUDGET_MS} ms")
            continue
        # CPU per request is highest at low concurrency (less batching): the conservative
        # figure for when the HPA, which averages CPU over minutes of ordinary load, reacts.
        cpu = max(
            step["cpu_ms_per_request"]
            for step in result["steps"]  # type: ignore[union-attr]
            if step["path"] == path
        )
        print(
            f"{path}: {top['rps']:.0f} req/s at p99 {top['p99_ms']:.0f} ms "
            f"(concurrency {top['concurrency']}); {cpu:.3f} CPU ms/request at most"
        )
        for request, label in ((100, "default request 100m"), (250, "prod request 250m")):
            rate = hpa_threshold(cpu, request, 70)
            print(f"  HPA at 70% of {label}: scales out above ~{rate:.0f} req/s per replica")
    print(
        f"memory per replica: {result['idle_memory_mib']} MiB idle, "
        f"{result['loaded_memory_mib']} MiB after the load"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
