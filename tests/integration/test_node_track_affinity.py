"""Track affinity on the real node, through the engine and the node's Gateway (Traefik) on
127.0.0.1, with the app twin in two versions (told apart by ``/api/server-config``'s
``Version``): a browser without the cookie is split by weight and told its track in a cookie
with the attributes the route table gives; a browser with it stays on its track for all its
requests, across a weight step from 10 to 50 too; a rollback to 0 moves the canary's browsers
back to stable.

One stack in its own namespace and host; the tests run in file order and the last destroys it.
Figures are printed with an ``[affinity]`` prefix.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from components.image_settings import reported_version
from components.release import AFFINITY_COOKIE
from tests.helpers import canary
from tests.integration import node as node_host
from tests.integration import swarm_load as load
from tests.integration.engine import Project, require_engine
from tests.integration.test_node_engine import (  # noqa: F401  (node_images is a fixture)
    CONFIG,
    OWNER,
    OWNER_PASSWORD,
    node_images,
)
from tests.integration.test_node_release import Release

pytestmark = pytest.mark.integration
NAMESPACE = "moontv-affinity"
HOST = "affinity.node.local"
STABLE, CANARY = "v100.1.1", "v100.1.2"
VERSION = {tag: reported_version(tag) for tag in (STABLE, CANARY)}
TRACK = {VERSION[STABLE]: "stable", VERSION[CANARY]: "canary"}
NEW_SESSIONS = 1000
HELD = 200  # sessions that keep browsing
REQUESTS_EACH = 5
TOLERANCE = 0.05
READY_TIMEOUT = 300
FIGURES: dict[str, Any] = {}
#: Sessions opened at weight 10, kept for the next tests.
OPENED: list[load.Session] = []


def twin_canary(node: Any, tmp_path_factory: Any, namespace: str,
                host: str) -> Iterator[Release]:
    """The twin's stable and canary versions at weight 10 in a small stack of their own
    (``namespace``, ``host``) on the node, until the generator is closed; then destroyed."""
    config = {
        **CONFIG,
        "moontv:namespace": namespace,
        "moontv:image": {**CONFIG["moontv:image"], "tag": STABLE},
        "moontv:traffic": {**CONFIG["moontv:traffic"], "host": host},
        "moontv:kubernetes": {"context": node.context, "kubeconfig": node.kubeconfig},
        "moontv:release": canary(10, CANARY),
        # what these tests do not read, left out to keep the stack small and quick
        "moontv:monitoring": {"enabled": False},
        "moontv:storage": {**CONFIG["moontv:storage"], "backup": {"enabled": False}},
    }
    project = Project(tmp_path_factory.mktemp(namespace), require_engine())
    stack = project.stack("node", config, secrets={"moontv:ownerPassword": OWNER_PASSWORD})
    try:
        assert stack.up().summary.result == "succeeded"
        node_host.wait_settled(node, namespace, READY_TIMEOUT)
        yield Release(node, stack, config)
    finally:
        stack.destroy()


@pytest.fixture(scope="module")
def affinity(node, node_images, tmp_path_factory):  # noqa: F811
    try:
        yield from twin_canary(node, tmp_path_factory, NAMESPACE, HOST)
    finally:
        print("\n[affinity] figures " + json.dumps(FIGURES, sort_keys=True))


def sessions(release: Release, count: int = NEW_SESSIONS) -> list[load.Session]:
    return load.new_sessions(release.port, HOST, count, AFFINITY_COOKIE)


def browse(release: Release, browsers: list[load.Session], each: int = REQUESTS_EACH) -> None:
    load.browse(release.port, HOST, browsers, AFFINITY_COOKIE, requests_each=each)


def assert_new_sessions(browsers: list[load.Session], weight: int) -> float:
    """No failure, the canary's share of first answers within the tolerance of ``weight``, and
    each browser told the track that served it, with the specified attributes."""
    assert [f for b in browsers for f in b.failures] == []
    share = load.first_share(browsers, VERSION[CANARY])
    assert abs(share - weight / 100) <= TOLERANCE, (weight, Counter(b.first for b in browsers))
    assert all(len(b.set_cookies) == 1 for b in browsers)
    assert load.cookie_values(browsers) == {"stable": {VERSION[STABLE]},
                                            "canary": {VERSION[CANARY]}}
    attributes = {json.dumps(load.cookie_attributes(b.set_cookies[0]), sort_keys=True)
                  for b in browsers}
    assert [json.loads(a) for a in attributes] == [
        {"httponly": True, "path": "/", "samesite": "Lax"}]  # a session cookie, not Secure
    return share


def held_sample(browsers: list[load.Session]) -> list[load.Session]:
    """Up to :data:`HELD` sessions, the canary's first (there are fewer of them)."""
    on_canary = [b for b in browsers if b.first == VERSION[CANARY]]
    on_stable = [b for b in browsers if b.first == VERSION[STABLE]]
    return (on_canary + on_stable)[:HELD]


def switched(browsers: list[load.Session]) -> int:
    return sum(1 for b in browsers if b.switched)


def test_given_weight_10_when_1000_new_sessions_then_10_percent_start_on_the_canary(affinity):
    browsers = sessions(affinity)
    share = assert_new_sessions(browsers, 10)
    OPENED.extend(held_sample(browsers))
    FIGURES["weight 10: canary share of 1000 new sessions"] = round(share, 4)
    print(f"\n[affinity] weight 10: {share:.3f} of {NEW_SESSIONS} new sessions started on the "
          f"canary; cookie {browsers[0].set_cookies[0]!r}")


def test_given_sessions_with_the_cookie_when_they_browse_then_none_switches_track(affinity):
    assert len(OPENED) == HELD
    browse(affinity, OPENED)
    assert [f for b in OPENED for f in b.failures] == []
    assert all(len(b.served) == 1 + REQUESTS_EACH for b in OPENED)
    assert switched(OPENED) == 0
    # the cookie already names the track: the answers set no other one
    assert all(len(b.set_cookies) == 1 for b in OPENED)
    on_canary = sum(1 for b in OPENED if b.first == VERSION[CANARY])
    FIGURES["weight 10: sessions that switched track"] = f"0 of {HELD} x {1 + REQUESTS_EACH}"
    print(f"\n[affinity] weight 10: {HELD} sessions ({on_canary} on the canary) x "
          f"{1 + REQUESTS_EACH} requests: {switched(OPENED)} switched track")


def test_given_a_login_when_the_split_answers_then_the_app_cookie_and_the_track_cookie_both_come(
        affinity):
    """The route adds its cookie (``add``, not ``set``): the app's own ``auth`` cookie stays."""
    status, headers, body = node_host.gateway_request(
        f"http://127.0.0.1:{affinity.port}", HOST, "POST", "/api/login",
        {"username": OWNER, "password": OWNER_PASSWORD})
    assert status == 200, body
    assert node_host.cookie(headers).startswith("auth=")
    assert node_host.cookie(headers, AFFINITY_COOKIE) in (f"{AFFINITY_COOKIE}=stable",
                                                          f"{AFFINITY_COOKIE}=canary")


def test_given_sessions_browsing_when_the_weight_steps_from_10_to_50_then_none_switches(
        affinity):
    assert len(OPENED) == HELD  # opened at weight 10 by the test before
    with load.Browsing(affinity.port, HOST, OPENED, AFFINITY_COOKIE) as browsing:
        affinity.set_release(canary(50, CANARY))
        affinity.up()

        def stepped() -> bool:  # new sessions split 50/50 (Traefik's round robin is exact)
            probe = sessions(affinity, 20)
            return sum(1 for b in probe if b.first == VERSION[CANARY]) >= 8

        assert node_host.wait_until(stepped, 60, interval=1)
        rounds = browsing.stop()
    browse(affinity, OPENED, 1)  # and once more, well after the step
    assert [f for b in OPENED for f in b.failures] == []
    assert rounds >= 1
    assert switched(OPENED) == 0
    total = sum(len(b.served) for b in OPENED)
    FIGURES["weight step 10 -> 50: sessions opened before it that switched track"] = \
        f"0 of {HELD} ({total} requests)"
    print(f"\n[affinity] step 10 -> 50 with {HELD} sessions browsing across it ({rounds} "
          f"rounds; {total} requests in all): {switched(OPENED)} switched track")


def test_given_weight_50_when_1000_new_sessions_then_half_start_on_the_canary(affinity):
    browsers = sessions(affinity)
    share = assert_new_sessions(browsers, 50)
    held = held_sample(browsers)
    browse(affinity, held)
    assert switched(held) == 0 and [f for b in held for f in b.failures] == []
    FIGURES["weight 50: canary share of 1000 new sessions"] = round(share, 4)
    FIGURES["weight 50: sessions that switched track"] = f"0 of {HELD} x {1 + REQUESTS_EACH}"
    print(f"\n[affinity] weight 50: {share:.3f} of {NEW_SESSIONS} new sessions started on the "
          f"canary; {HELD} of them x {1 + REQUESTS_EACH} requests: {switched(held)} switched")


def test_given_a_rollback_to_0_then_the_canary_sessions_go_back_to_stable_with_a_new_cookie(
        affinity):
    """The cookie holds while its track is in the split: after a rollback the canary's browsers
    are answered by stable, which gives them its cookie."""
    affinity.set_release(canary(0, CANARY))
    affinity.up()
    on_canary = [b for b in OPENED if b.served[-1] == VERSION[CANARY]]
    assert on_canary

    def rolled_back() -> bool:
        probe = [load.Session(cookie=f"{AFFINITY_COOKIE}=canary") for _ in range(5)]
        browse(affinity, probe, 1)
        return all(b.served == [VERSION[STABLE]] for b in probe)

    assert node_host.wait_until(rolled_back, 60, interval=1)
    browse(affinity, on_canary, 2)
    assert [f for b in on_canary for f in b.failures] == []
    assert all(b.served[-2:] == [VERSION[STABLE]] * 2 for b in on_canary)
    assert all(b.cookie == f"{AFFINITY_COOKIE}=stable" for b in on_canary)
    print(f"\n[affinity] rollback to 0: {len(on_canary)} canary sessions now on stable, "
          "cookie replaced")


def test_given_the_affinity_stack_when_destroyed_then_its_namespace_is_empty(affinity):
    affinity.stack.destroy()

    def gone() -> bool:
        return not affinity.node.kubectl("get", "all,pvc", "-n", NAMESPACE, "-o", "name",
                                         "--ignore-not-found", check=False).split()

    assert node_host.wait_until(gone, 120, interval=2)
