"""Page loads in a real browser behind a weighted split (``make bench-browser``): how many of
100 loads of ``/login`` (a new user) and ``/`` (logged in) break at canary weights 10 and 50
(and 0 of 30 at weight 0), in Debian's Chromium driven by Playwright, a fresh browser context per
load (``tests/integration/browser.py``: broken = a request failed or answered >= 400, or the page
threw).

Each phase is a router address per weight, measured by the same function
(``browser.page_loads``):

* before: the app twin's two versions (APP_V1 stable, APP_V2 canary) behind the toolchain's
  Traefik on 127.0.0.1 with a per-request weighted split, no affinity: what LunaTV's users got
  (issue table: /login 10 and / 19 of 100 at weight 10, 32 and 39 at 50);
* after: the same pages through a router with track affinity (the node's Gateway, the Swarm
  edge), once the program sets it; until then the column says so.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration import browser  # noqa: E402  (needs the sys.path line above)
from tests.integration import twin as app_twin  # noqa: E402

#: Loads of each page per canary weight.
LOADS = {0: 30, 10: 100, 50: 100}
Tallies = dict[str, dict[int, browser.Tally]]


@contextlib.contextmanager
def before() -> Iterator[tuple[str, dict[int, str], list[dict[str, object]]]]:
    """Routers of the "before" phase: ``(description, {weight: base URL}, login cookies)``."""
    from tests.integration import images

    images.build_all()
    entries = {f"w{weight}": weight for weight in LOADS}
    with browser.twin_split(images.APP_V1, images.APP_V2, entries) as split:
        urls = {weight: split.url(f"w{weight}") for weight in LOADS}
        cookies = browser.login_cookies(urls[0], app_twin.OWNER, app_twin.PASSWORD)
        yield "per-request weighted split, no affinity (Traefik on 127.0.0.1)", urls, cookies


#: phase → its routers; "after" (track affinity through the node's Gateway and the Swarm edge)
#: joins here when the program sets affinity.
PHASES: dict[str, Callable[[], contextlib.AbstractContextManager[
    tuple[str, dict[int, str], list[dict[str, object]]]]]] = {"before": before}


def cell(tally: browser.Tally | None) -> str:
    if tally is None:
        return "not measured yet"
    return f"{tally.broken} of {len(tally.loads)} ({tally.threw} threw)"


def main() -> int:
    measured: dict[str, Tallies] = {}
    routers: dict[str, str] = {}
    started = time.monotonic()
    with browser.Browser() as chromium:
        for phase, routed in PHASES.items():
            with routed() as (description, urls, cookies):
                routers[phase] = description
                measured[phase] = browser.page_loads(chromium, urls, LOADS, cookies)
                print(browser.figures(phase, description, measured[phase]), file=sys.stderr)
        version = chromium.version
    print(f"page loads broken, Chromium {version} (Debian), a fresh context per load; "
          f"{time.monotonic() - started:.0f} s")
    for phase in ("before", "after"):
        print(f"  {phase}: {routers.get(phase, 'track affinity: not built yet')}")
    print("  broken of loads (of which the page threw: ChunkLoadError, React #423)")
    print(f"  {'page':8} {'weight':>6}  {'before':24} {'after':24}")
    for page in browser.PAGES:
        for weight in LOADS:
            cells = [cell(measured.get(p, {}).get(page, {}).get(weight))
                     for p in ("before", "after")]
            print(f"  {page:8} {weight:>6}  {cells[0]:24} {cells[1]:24}")
    for phase, tallies in measured.items():
        for page, by_weight in tallies.items():
            for example in by_weight[max(LOADS)].examples(1):
                print(f"  e.g. {phase} {page}: {example}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
