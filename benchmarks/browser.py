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
* after: the same pages through the node's Gateway in a canary stack with track affinity on
  (``tests/integration/test_node_browser.py``, run by pytest: 40 loads per page at weights 10
  and 50; it prints the same figures line).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
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


Pages = dict[str, dict[str, dict[str, int]]]  # page -> weight -> broken, threw, loads
AFTER_TEST = "tests/integration/test_node_browser.py"
PREFIX = "[browser] figures "


def as_pages(tallies: Tallies) -> Pages:
    return {page: {str(weight): {"broken": t.broken, "threw": t.threw, "loads": len(t.loads)}
                   for weight, t in by_weight.items()} for page, by_weight in tallies.items()}


def after() -> tuple[str, Pages, str]:
    """The "after" figures: :data:`AFTER_TEST`'s figures lines (router, pages), and its
    outcome line."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", AFTER_TEST],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=3600)
    router = ""
    pages: Pages = {}
    for line in result.stdout.splitlines():
        if line.startswith(PREFIX):
            found = json.loads(line.removeprefix(PREFIX))
            router = found["router"]
            for page, by_weight in found["pages"].items():
                pages.setdefault(page, {}).update(by_weight)
    outcome = (result.stdout.strip().splitlines() or ["no output"])[-1]
    return router, pages, outcome


def cell(counts: dict[str, int] | None) -> str:
    if counts is None:
        return "not measured"
    return f"{counts['broken']} of {counts['loads']} ({counts['threw']} threw)"


def main() -> int:
    started = time.monotonic()
    with browser.Browser() as chromium, before() as (description, urls, cookies):
        measured = browser.page_loads(chromium, urls, LOADS, cookies)
        print(browser.figures("before", description, measured), file=sys.stderr)
        version = chromium.version
        examples = {page: by_weight[max(LOADS)].examples(1) for page, by_weight in measured.items()}
    router, after_pages, outcome = after()
    phases = {"before": as_pages(measured), "after": after_pages}
    print(f"page loads broken, Chromium {version} (Debian), a fresh context per load; "
          f"{time.monotonic() - started:.0f} s")
    print(f"  before: {description}")
    print(f"  after: {router or 'no figures'} ({AFTER_TEST}: {outcome})")
    print("  broken of loads (of which the page threw: ChunkLoadError, React #423)")
    print(f"  {'page':8} {'weight':>6}  {'before':24} {'after':24}")
    for page in browser.PAGES:
        for weight in LOADS:
            cells = [cell(phases[p].get(page, {}).get(str(weight))) for p in ("before", "after")]
            print(f"  {page:8} {weight:>6}  {cells[0]:24} {cells[1]:24}")
    for page, shown in examples.items():
        for example in shown:
            print(f"  e.g. before {page}: {example}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
