"""Page loads in a real browser (Debian's Chromium driven by Playwright: tests/integration/
browser.py) through the node's Gateway on 127.0.0.1, with the app twin's two versions in a
canary stack and track affinity on (the default): what a user gets, not what one endpoint
counts.

Behind a per-request split without affinity, a third of the page loads break at weight 50
(``test_app_twin.py``'s "before" figures): each version's HTML names chunks the other lacks.
Here a page's first answer tells the browser its track, and every later request of that
browser (its chunks, its lazily loaded code) goes to the same track. So 0 page loads may break
at weight 10 and 50, and tabs opened before a weight step keep working on their track after it.

One stack in its own namespace and host; the tests run in file order and the last destroys it.
Figures are printed with a ``[browser]`` prefix (``make bench-browser`` reads the same line).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from components.image_settings import reported_version
from tests.helpers import canary
from tests.integration import browser
from tests.integration.test_node_engine import (  # noqa: F401  (node_images is a fixture)
    OWNER,
    OWNER_PASSWORD,
    node_images,
)
from tests.integration.test_node_release import Release
from tests.integration.test_node_track_affinity import CANARY, STABLE, twin_canary

pytestmark = [pytest.mark.integration, pytest.mark.ci_group("node-release")]
NAMESPACE = "moontv-browser"
HOST = "browser.node.local"
VERSIONS = {reported_version(STABLE), reported_version(CANARY)}
#: Page loads per page (/login as a new user, / logged in) at each weight.
LOADS = 40
#: Tabs opened before the weight step (browsers that already have their track).
TABS = 12


@pytest.fixture(scope="module")
def stack(node, node_images, tmp_path_factory) -> Iterator[Release]:  # noqa: F811
    yield from twin_canary(node, tmp_path_factory, NAMESPACE, HOST)


def base_url(release: Release) -> str:
    return f"http://{HOST}:{release.port}"


def tallies(release: Release, chromium: browser.Browser, weight: int) -> dict[str, Any]:
    url = base_url(release)
    cookies = browser.login_cookies(url, OWNER, OWNER_PASSWORD)
    # the login's answer also sets the track cookie: a logged-in user is a new session too
    cookies = [c for c in cookies if c["name"] == "auth"]
    measured = browser.page_loads(chromium, {weight: url}, {weight: LOADS}, cookies)
    print("\n" + browser.figures("after", "the node's Gateway, track affinity", measured))
    return measured


def assert_unbroken(measured: dict[str, Any], weight: int) -> None:
    for page, by_weight in measured.items():
        tally = by_weight[weight]
        print(f"[browser] after, node, weight {weight}, {page}: {tally.broken} of "
              f"{len(tally.loads)} broken; versions {dict(tally.versions)}")
        assert tally.broken == 0, (page, tally.examples())
    seen = {v for by_weight in measured.values() for v in by_weight[weight].versions}
    assert seen == VERSIONS, seen  # both tracks served pages


def test_given_weight_10_then_no_page_load_breaks_in_a_browser(stack, chromium):
    assert_unbroken(tallies(stack, chromium, 10), 10)


def test_given_tabs_open_at_weight_10_when_stepped_to_50_then_each_stays_on_its_version(
    stack, chromium
):
    """Tabs opened at weight 10 (their track cookie set), the weight stepped to 50, then each
    tab navigates and loads its lazy code: none breaks and none changes version."""
    url = base_url(stack)
    cookies = [c for c in browser.login_cookies(url, OWNER, OWNER_PASSWORD) if c["name"] == "auth"]
    contexts = [chromium.context(cookies) for _ in range(TABS)]
    try:
        opened = [chromium.open(f"{url}/", context) for context in contexts]
        before = [load.version for _, load in opened]
        assert all(not load.broken for _, load in opened), [o.summary() for _, o in opened]
        stack.set_release(canary(50, CANARY))
        stack.up()
        after = []
        for tab, _ in opened:
            navigated = tab.goto(f"{url}/")
            clicked = tab.click(browser.MORE)
            assert not navigated.broken and not clicked.broken, (navigated.summary(),
                                                                 clicked.summary())
            after.append(navigated.version)
    finally:
        for context in contexts:
            context.close()
    moved = sum(1 for b, a in zip(before, after, strict=True) if b != a)
    print(f"\n[browser] weight step 10 -> 50 with {TABS} tabs open: versions before "
          f"{sorted(before)}, {moved} switched version")
    assert moved == 0, (before, after)


def test_given_weight_50_then_no_page_load_breaks_in_a_browser(stack, chromium):
    assert_unbroken(tallies(stack, chromium, 50), 50)
