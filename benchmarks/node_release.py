"""Release figures on the real node and the real Swarm: runs
``tests/integration/test_node_release.py`` and ``tests/integration/test_node_mirror.py`` (which
measure them through the node's Gateway on 127.0.0.1) and ``tests/integration/test_swarm_stack.py``
(through the Swarm edge), and prints the figures they report.

Figures: canary split error at weights 10 and 50 (1000 requests each), failed requests of the
blue-green switch, switch-back and rolling change under load, of each strategy change (rolling,
canary, blue-green, each way) and of the switch to a colour at 0, weight edit to new split, a
never-ready version to `up` failing, and a faulty canary to weight 0 under `rollout auto`;
mirroring: the canary's share of 1000 GETs at 50 % (at its pods and at the gateway), POSTs that
reached it, p99 of open-loop GETs with and without mirroring (on the node and on Swarm), and
user-facing failures while a faulty canary is stopped in the mirror step; the HPA under load
(``tests/integration/test_node_autoscaling.py``): time to the first scale-up, peak replicas,
and for a switch, a strategy change, a promotion and a rolling update with the HPA scaled up,
the ready replicas of the outgoing and the incoming primary when the traffic moved, failed
requests, and p99 before and while the traffic moved.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ("tests/integration/test_node_release.py", "tests/integration/test_node_mirror.py",
         "tests/integration/test_node_autoscaling.py", "tests/integration/test_swarm_stack.py")
PREFIXES = ("[release] figures ", "[mirror] figures ", "[autoscaling] figures ",
            "[swarm] figures ")


def figures(output: str) -> dict[str, object]:
    """The figures lines the test modules print at their end (empty when none got there)."""
    found: dict[str, object] = {}
    for line in output.splitlines():
        for prefix in PREFIXES:
            if line.startswith(prefix):
                found.update(json.loads(line.removeprefix(prefix)))
    return found


def main() -> int:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", *TESTS],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=3600,
    )
    found = figures(result.stdout)
    print("release paths on the real node (through the Gateway on 127.0.0.1) and Swarm")
    for name, value in sorted(found.items()):
        print(f"  {name:52} {value}")
    for line in result.stdout.splitlines():
        if line.startswith(("[rollout]", "[release] rollout auto", "[mirror] rollout auto")):
            print(f"  {line}")
    if result.returncode != 0:
        print(f"release tests FAILED (exit {result.returncode}):")
        print("\n".join(result.stdout.splitlines()[-40:]))
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
