"""Traffic behaviour of the Swarm stack on a real single-node Swarm.

The stack is deployed with ``docker stack deploy`` from the compose file that
:mod:`components.swarm.compose` renders from the same service specs and Traefik routing the
Pulumi component uses (the Pulumi-engine variant is ``test_swarm_engine.py``). Images are built
locally: the LunaTV twin in two versions and Debian's redis (``local_images``), Traefik from
its Go module (tests/fixtures/swarm-images). Each track runs its own version, told apart by
``/api/server-config``'s ``Version``. Requests go to 127.0.0.1.

The tests run in order against one stack: blue-green → switch → canary 20 → track affinity at
10, a step to 50 with sessions browsing → rollback to 0 → mirror at 50 % → a faulty canary
mirrored, then the mirror taken off.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from components import naming
from components.release import AFFINITY_COOKIE
from components.swarm import compose, traefik
from components.swarm import spec as sw
from tests.helpers import free_port
from tests.integration import images, prometheus_objects
from tests.integration import swarm_env as env
from tests.integration import swarm_load as load

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

STACK = "moontv-it"
CANARY_SHARE_TOLERANCE = 0.05
SPLIT_REQUESTS = 1000  # the standard: a split is measured over at least 1000 requests
OLD, NEW = env.OLD, env.NEW


class Stack:
    def __init__(self, workdir: Path, port: int) -> None:
        self.workdir, self.port = workdir, port
        self.spec: sw.SwarmSpec | None = None
        self.deploys = 0

    def service(self, key: str) -> str:
        return f"{STACK}_{key}"

    def deploy(self, raw_release: dict) -> sw.SwarmSpec:
        spec = env.spec_for(STACK, raw_release, self.port)
        values = sw.secret_contents(spec, env.OWNER_PASSWORD, env.STORAGE_PASSWORD)
        self.deploys += 1
        out = self.workdir / f"deploy-{self.deploys}"
        target = compose.write_files(spec, values, out)
        env.docker("stack", "deploy", "--prune", "-c", str(target), STACK, timeout=300)
        env.wait_converged([self.service(s.key) for s in sw.stack_services(spec)])
        env.wait_routing(spec, self.service("edge"))
        self.spec = spec
        return spec


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, local_images) -> Iterator[Stack]:
    started = env.require_engine()
    env.build_images()
    volumes = [f"{STACK}-{sw.STORAGE_DATA}", f"{STACK}-{sw.EDGE_DYNAMIC}"]
    env.remove_stack(STACK, volumes)  # leftovers of an interrupted run
    running = Stack(tmp_path_factory.mktemp("swarm"), free_port())
    try:
        yield running
    finally:
        env.remove_stack(STACK, volumes)
        env.release_engine(started)


def test_given_blue_active_then_default_host_reaches_blue_and_preview_host_green(stack):
    stack.deploy(env.blue_green("blue"))
    assert load.burst(stack.port, env.HOST, 40).tracks == {OLD: 40}
    assert load.burst(stack.port, f"preview.{env.HOST}", 20).tracks == {NEW: 20}
    # the entrypoint wrapper sourced the site settings and exported the secret files: the app
    # reads its config from the storage at REDIS_URL and knows the owner's password
    status, body = load.request(stack.port, env.HOST, load.SERVER_CONFIG)
    assert status == 200
    assert json.loads(body) == {"SiteName": "MoonTV-IT", "StorageType": "redis", "Version": OLD}
    assert load.request(stack.port, env.HOST, "/login")[0] == 200
    assert env.redis_cli(stack.service("redis"), "EXISTS", "admin:config") == "1"
    status, cookie = env.login(stack.port, env.HOST, env.OWNER, env.OWNER_PASSWORD)
    assert status == 200 and cookie
    assert env.login(stack.port, env.HOST, env.OWNER, "not-the-password")[0] == 401


def test_the_app_runs_on_a_read_only_root_with_public_filled_from_the_image(stack):
    # start.js exits unless it can write /app/public/manifest.json (with the site's name)
    status, body = load.request(stack.port, env.HOST, "/manifest.json")
    assert status == 200 and json.loads(body)["name"] == "MoonTV-IT"
    _, cookie = env.login(stack.port, env.HOST, env.OWNER, env.OWNER_PASSWORD)
    status, body = load.request(stack.port, env.HOST, "/sw.js",  # shipped in the image
                                headers={"Cookie": cookie})
    assert status == 200 and "service worker (next-pwa)" in body
    for key in ("blue", "redis", "edge", "edge-config"):
        probe = subprocess.run(["docker", "exec", env.container_of(stack.service(key)),
                                "sh", "-c", "touch /probe"],
                               capture_output=True, text=True, timeout=60, check=False)
        assert probe.returncode != 0 and "Read-only file system" in probe.stderr, key


def test_api_cron_is_not_routed(stack):
    # the app answers /api/cron with 200 to anyone; the edge must answer 404 before it
    assert load.request(stack.port, env.HOST, "/api/cron")[0] == 404
    assert load.request(stack.port, env.HOST, "/api/cron/x")[0] == 404


def test_given_a_key_in_storage_when_colours_switch_under_load_then_no_request_fails(stack):
    storage = stack.service("redis")
    assert env.redis_cli(storage, "SET", "moontv:it:key", "kept") == "OK"
    with load.Continuous(stack.port, env.HOST, concurrency=4) as traffic:
        time.sleep(2)
        stack.deploy(env.blue_green("green"))
        time.sleep(3)
    tally = traffic.stop()
    print(f"\nblue-green switch under load: {tally.total} requests, "
          f"{len(tally.failures)} failed, served by {dict(tally.tracks)}")
    assert tally.failures == []
    assert tally.tracks[OLD] > 0 and tally.tracks[NEW] > 0
    assert load.burst(stack.port, env.HOST, 40).tracks == {NEW: 40}
    assert env.redis_cli(storage, "GET", "moontv:it:key") == "kept"


def test_given_a_key_when_the_storage_service_is_updated_then_the_data_is_kept(stack):
    storage = stack.service("redis")
    assert env.redis_cli(storage, "SET", "moontv:it:update", "still-here") == "OK"
    before = env.container_of(storage)
    env.docker("service", "update", "--force", "--detach=false", storage, timeout=300)
    env.wait_converged([storage])
    assert env.container_of(storage) != before
    assert env.redis_cli(storage, "GET", "moontv:it:update") == "still-here"
    assert env.redis_cli(storage, "GET", "moontv:it:key") == "kept"


def test_given_canary_weight_20_then_the_split_is_within_5_percent(stack):
    stack.deploy(env.canary(20))
    tally = load.burst(stack.port, env.HOST, SPLIT_REQUESTS, concurrency=10)
    share = tally.share(NEW)
    print(f"\ncanary weight 20: {dict(tally.tracks)} of {tally.total}, canary share "
          f"{share:.3f}, {len(tally.failures)} failed")
    assert tally.failures == []
    assert tally.total == SPLIT_REQUESTS and set(tally.tracks) == {OLD, NEW}
    assert abs(share - 0.20) <= CANARY_SHARE_TOLERANCE


def test_given_canary_then_the_header_pins_a_track(stack):
    always = load.burst(stack.port, env.HOST, 30, headers={"x-moontv-canary": "always"})
    never = load.burst(stack.port, env.HOST, 30, headers={"x-moontv-canary": "never"})
    assert always.tracks == {NEW: 30}
    assert never.tracks == {OLD: 30}


#: Track affinity: new sessions per weight, sessions kept browsing, requests each.
NEW_SESSIONS, HELD, REQUESTS_EACH = 1000, 200, 5
#: Sessions opened at weight 10, kept across the step to 50 and the rollback.
OPENED: list[load.Session] = []


def new_sessions(stack: Stack, weight: int) -> tuple[list[load.Session], float]:
    """1000 browsers without the cookie: the canary's share of their first answers is within
    5 % of ``weight``, and each got the sticky cookie (one value per track) with the
    attributes of the route table's affinity."""
    browsers = load.new_sessions(stack.port, env.HOST, NEW_SESSIONS, AFFINITY_COOKIE)
    assert [f for b in browsers for f in b.failures] == []
    share = load.first_share(browsers, NEW)
    assert abs(share - weight / 100) <= CANARY_SHARE_TOLERANCE, share
    assert all(len(b.set_cookies) == 1 for b in browsers)
    values = load.cookie_values(browsers)  # Traefik's hash of the track's service name
    assert sorted(map(sorted, values.values())) == sorted([[NEW], [OLD]]), values
    attributes = {json.dumps(load.cookie_attributes(b.set_cookies[0]), sort_keys=True)
                  for b in browsers}
    assert [json.loads(a) for a in attributes] == [
        {"httponly": True, "path": "/", "samesite": "Lax"}]  # a session cookie, not Secure
    return browsers, share


def held(browsers: list[load.Session]) -> list[load.Session]:
    """Up to ``HELD`` of ``browsers``, the canary's first."""
    return sorted(browsers, key=lambda b: b.first != NEW)[:HELD]


def switched(browsers: list[load.Session]) -> int:
    return sum(1 for b in browsers if b.switched)


def test_given_weight_10_then_new_sessions_split_and_a_session_keeps_its_track(stack):
    stack.deploy(env.canary(10))
    browsers, share = new_sessions(stack, 10)
    OPENED.extend(held(browsers))
    load.browse(stack.port, env.HOST, OPENED, AFFINITY_COOKIE, requests_each=REQUESTS_EACH)
    assert [f for b in OPENED for f in b.failures] == []
    assert switched(OPENED) == 0
    assert all(len(b.set_cookies) == 1 for b in OPENED)  # the cookie holds: no new one
    print(f"\n[swarm] affinity at weight 10: {share:.3f} of {NEW_SESSIONS} new sessions started "
          f"on the canary (cookie {browsers[0].set_cookies[0]!r}); {HELD} sessions "
          f"({sum(b.first == NEW for b in OPENED)} on the canary) x {1 + REQUESTS_EACH} "
          f"requests: {switched(OPENED)} switched track")


def test_given_sessions_browsing_when_the_weight_steps_from_10_to_50_then_none_switches(stack):
    assert len(OPENED) == HELD  # opened at weight 10 by the test before
    with load.Browsing(stack.port, env.HOST, OPENED, AFFINITY_COOKIE) as browsing:
        stack.deploy(env.canary(50))  # returns once the edge routes by the new configuration
        rounds = browsing.stop()
    load.browse(stack.port, env.HOST, OPENED, AFFINITY_COOKIE)  # once more, after the step
    assert [f for b in OPENED for f in b.failures] == []
    assert rounds >= 1 and switched(OPENED) == 0
    browsers, share = new_sessions(stack, 50)
    later = held(browsers)
    load.browse(stack.port, env.HOST, later, AFFINITY_COOKIE, requests_each=REQUESTS_EACH)
    assert switched(later) == 0 and [f for b in later for f in b.failures] == []
    print(f"\n[swarm] affinity step 10 -> 50 with {HELD} sessions browsing across it ({rounds} "
          f"rounds, {sum(len(b.served) for b in OPENED)} requests): {switched(OPENED)} "
          f"switched track; at 50: {share:.3f} of {NEW_SESSIONS} new sessions on the canary, "
          f"{HELD} of them x {1 + REQUESTS_EACH} requests: {switched(later)} switched")


def test_when_rolled_back_to_weight_0_under_load_then_all_traffic_is_stable(stack):
    apps = [stack.service("stable"), stack.service("canary")]
    before = env.running_containers(apps)
    with load.Continuous(stack.port, env.HOST, concurrency=4) as traffic:
        time.sleep(2)
        stack.deploy(env.canary(0))
        time.sleep(3)
    tally = traffic.stop()
    assert env.running_containers(apps) == before, "a routing change restarted app tasks"
    after = load.burst(stack.port, env.HOST, 200, concurrency=10)
    print(f"\nrollback to weight 0 under load: {tally.total} requests, "
          f"{len(tally.failures)} failed; afterwards {dict(after.tracks)}")
    assert tally.failures == []
    assert after.tracks == {OLD: 200}
    assert env.redis_cli(stack.service("redis"), "GET", "moontv:it:key") == "kept"
    # the canary left the split: its sessions' cookie no longer holds, stable answers them
    on_canary = [b for b in OPENED if b.served and b.served[-1] == NEW]
    assert on_canary
    load.browse(stack.port, env.HOST, on_canary, AFFINITY_COOKIE, requests_each=2)
    assert [f for b in on_canary for f in b.failures] == []
    assert all(b.served[-2:] == [OLD, OLD] and len(b.set_cookies) == 2 for b in on_canary)
    print(f"after the rollback: {len(on_canary)} canary sessions answered by stable, "
          "their cookie replaced")


def canary_requests(stack: Stack) -> list[str]:
    """The ``[request]`` lines of the canary's tasks (the twin logs each answered request),
    read from their containers on this one-node Swarm: ``docker service logs`` on engine 20.10
    can hang past its timeout under load."""
    tasks = env.docker("ps", "-aq", "--filter",
                       f"label=com.docker.swarm.service.name={stack.service('canary')}").split()
    out = "\n".join(env.docker("logs", task, timeout=60) for task in tasks)
    return [line for line in out.splitlines() if line.startswith("[request] ")]


def post_favourite(port: int, cookie: str, key: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = {"key": key, "favorite": {"title": key, "source_name": "it", "year": "2026",
                                     "cover": "", "total_episodes": 1}}
    try:
        conn.request("POST", "/api/favorites", body=json.dumps(body),
                     headers={"Host": env.HOST, "Content-Type": "application/json",
                              "Cookie": cookie})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_given_a_mirror_at_50_then_half_the_gets_reach_the_canary_and_no_post(stack):
    release = env.canary(0)
    release["canary"]["mirror"] = {"percent": 50}
    stack.deploy(release)
    before = canary_requests(stack)
    tally = load.burst(stack.port, env.HOST, SPLIT_REQUESTS, concurrency=10)
    assert tally.failures == []
    assert tally.tracks == {OLD: SPLIT_REQUESTS}  # every answer from stable
    _, cookie = env.login(stack.port, env.HOST, env.OWNER, env.OWNER_PASSWORD)
    keys = [f"it+mirror-{i}" for i in range(40)]
    assert {post_favourite(stack.port, cookie, key) for key in keys} == {200}
    time.sleep(3)  # the copies are sent after stable answered
    after = canary_requests(stack)

    def gets(lines: list[str]) -> int:
        return sum(1 for line in lines if line.split(" ")[1:3] == ["GET", load.SERVER_CONFIG])

    def writes(lines: list[str]) -> list[str]:
        return [line for line in lines if line.split(" ")[1] not in ("GET", "HEAD")]

    # counted, not sliced: the tasks' logs interleave differently from one call to the next
    reached, wrote = gets(after) - gets(before), writes(after)[len(writes(before)):]
    share = reached / SPLIT_REQUESTS
    print(f"\nmirror 50% on Swarm: {reached} of {SPLIT_REQUESTS} GETs reached the canary "
          f"({share:.3f}); {len(wrote)} of {len(keys)} POST /api/favorites")
    assert len(writes(after)) == len(writes(before)), wrote[:5]
    assert abs(share - 0.50) <= CANARY_SHARE_TOLERANCE
    stored = env.redis_cli(stack.service("redis"), "HKEYS", f"u:{env.OWNER}:fav").split()
    assert sorted(k for k in stored if k.startswith("it+mirror-")) == sorted(keys)


def edge_requests(stack: Stack, service: str) -> dict[str, float]:
    """The edge's ``traefik_service_requests_total`` of ``service`` by code, read from its
    internal metrics entry point inside its task (the port is never published)."""
    text = env.docker("exec", env.container_of(stack.service("edge")), "wget", "-qO-",
                      f"http://127.0.0.1:{traefik.PING_PORT}/metrics", timeout=30)
    return prometheus_objects.traefik_requests(text, service, "code")


def test_given_a_faulty_canary_mirrored_then_no_user_sees_it_and_the_edge_counts_its_errors(
        stack):
    """The mirror step's evidence on Swarm: the faulty twin answers every copy with 500, the
    edge's per-service metrics count those answers for the canary (what ``rollout auto
    --mirror`` gates on), and the users under load get every answer from stable. Then the
    mirror is taken off under the same load (the operator's step after the gate stopped it)."""
    faulty = env.canary(0)
    faulty["canary"].update(version=images.APP_FAULTY.rsplit(":", 1)[1], mirror={"percent": 50})
    stack.deploy(faulty)
    canary_service = f"{naming.track_name('canary')}@file"
    before = edge_requests(stack, canary_service)
    with load.Continuous(stack.port, env.HOST, concurrency=2, rate=load.USERS_RATE) as users:
        time.sleep(15)
        mirrored = users.stop()
    time.sleep(3)  # the last copies land after stable answered
    after = edge_requests(stack, canary_service)
    counted = {code: after[code] - before.get(code, 0.0) for code in after}
    copies = sum(counted.values())
    print(f"\nfaulty canary mirrored at 50% on Swarm: {mirrored.total} user GETs, "
          f"{len(mirrored.failures)} failed, versions {mirrored.tracks}; the edge counted "
          f"{copies:.0f} copies at the canary by code {counted}")
    assert mirrored.failures == [], mirrored.failures[:5]
    assert set(mirrored.tracks) == {OLD}  # no user got the faulty version's answer
    assert abs(copies / mirrored.total - 0.50) <= 0.05, (copies, mirrored.total)
    assert counted.get("500") == copies  # every copy failed, and was counted as such

    with load.Continuous(stack.port, env.HOST, concurrency=2, rate=load.USERS_RATE) as users:
        stack.deploy(env.canary(0))  # returns once the edge routes by the new configuration
        off = sum(edge_requests(stack, canary_service).values())
        time.sleep(10)
        taken_off = users.stop()
    time.sleep(3)
    since = sum(edge_requests(stack, canary_service).values()) - off
    print(f"mirror taken off under load: {taken_off.total} GETs, {len(taken_off.failures)} "
          f"failed, versions {taken_off.tracks}; copies at the canary since: {since:.0f}")
    assert taken_off.failures == [], taken_off.failures[:5]
    assert set(taken_off.tracks) == {OLD}
    assert since == 0


#: The p99 comparison (as test_node_mirror.py's): open-loop GETs at this rate, one warm-up round
#: with the mirror on that is not counted, then rounds alternated without and with it.
P99_RATE, P99_SECONDS, P99_ROUNDS = 40.0, 15.0, 5


@pytest.mark.bench  # make bench-release
def test_p99_with_and_without_mirroring_on_swarm(stack):
    """A figure, not a timed assertion: users' p99 through the edge with half the GETs copied to
    the canary, against none, each condition pooled over its rounds."""
    plain = env.canary(0)
    mirrored = env.canary(0)
    mirrored["canary"]["mirror"] = {"percent": 50}
    stack.deploy(mirrored)
    warm_up = load.paced(stack.port, env.HOST, P99_RATE, P99_SECONDS)
    rounds: dict[int, list[load.Tally]] = {50: [], 0: []}
    for percent in [0, 50] * P99_ROUNDS:
        stack.deploy(mirrored if percent else plain)
        rounds[percent].append(load.paced(stack.port, env.HOST, P99_RATE, P99_SECONDS))
    stack.deploy(plain)
    pooled = {percent: load.pooled(tallies) for percent, tallies in rounds.items()}
    assert all(p.failures == [] for p in pooled.values()), {k: p.failures[:3]
                                                            for k, p in pooled.items()}
    p99_with, p99_without = (pooled[p].percentile_ms(0.99) for p in (50, 0))
    per_round = {p: [round(t.percentile_ms(0.99), 1) for t in ts] for p, ts in rounds.items()}
    median = {p: pooled[p].percentile_ms(0.5) for p in pooled}
    print(f"\n[swarm] p99 of {P99_ROUNDS * int(P99_RATE * P99_SECONDS)} GETs each at "
          f"{P99_RATE:.0f}/s through the edge: {p99_with:.1f} ms with mirroring 50%, "
          f"{p99_without:.1f} ms without ({p99_with / p99_without:.2f}x; per round "
          f"{per_round[50]} with, {per_round[0]} without; warm-up round "
          f"{warm_up.percentile_ms(0.99):.1f} ms; p50 {median[50]:.1f} ms with, "
          f"{median[0]:.1f} ms without)")
    print("[swarm] figures " + json.dumps({
        "Swarm: p99 with mirroring 50% (ms)": round(p99_with, 1),
        "Swarm: p99 without mirroring (ms)": round(p99_without, 1),
        "Swarm: p99 with / without mirroring": round(p99_with / p99_without, 3)}))
