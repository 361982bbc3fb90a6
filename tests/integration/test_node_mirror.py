"""Traffic mirroring on the real node, through the engine and the node's Gateway (Traefik with a
mirroring TraefikService) on 127.0.0.1, with the app twin: the canary gets its share of GET
requests as copies (counted at the canary, from its own request log, and at the gateway), never
a write, and no client ever gets its answer; a faulty canary is stopped in ``rollout auto``'s
mirror step, before any user reaches it.

One stack in its own namespace and host; the tests run in file order and the last destroys it.
Figures are printed with a ``[mirror]`` prefix and collected by ``benchmarks/node_release.py``.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from components.image_settings import reported_version
from components.release import AFFINITY_COOKIE
from tests.conftest import skip_or_fail
from tests.helpers import canary
from tests.integration import node as node_host
from tests.integration import prometheus_objects
from tests.integration import swarm_load as load
from tests.integration.engine import Project, require_engine
from tests.integration.test_node_engine import (  # noqa: F401  (node_images is a fixture)
    CONFIG,
    OWNER,
    OWNER_PASSWORD,
    node_images,
)
from tests.integration.test_node_release import Release, rollout_auto, stack_release

pytestmark = pytest.mark.integration
NAMESPACE = "moontv-mirror"
HOST = "mirror.node.local"
STABLE, CANARY, FAULTY = "v100.1.1", "v100.1.2", "v100.1.3-faulty"
VERSION = {tag: reported_version(tag) for tag in (STABLE, CANARY, FAULTY)}
PATH = load.SERVER_CONFIG
PERCENT = 50
SAMPLE = 1000
TOLERANCE = 0.05
WRITES = 40
READY_TIMEOUT = 300
FIGURES: dict[str, Any] = {}
#: The gateway's name of the mirror's target (legacy CRD naming, tools/node.sh).
MIRROR_SERVICE = f"{NAMESPACE}-moontv-canary-80@kubernetescrd"


def mirrored(weight: int = 0, version: str = CANARY, percent: int = PERCENT) -> dict[str, Any]:
    return canary(weight, version, mirror={"percent": percent})


def stack_config(node, release: dict[str, Any], tag: str = STABLE) -> dict[str, Any]:
    return {
        **CONFIG,
        "moontv:namespace": NAMESPACE,
        "moontv:image": {**CONFIG["moontv:image"], "tag": tag},
        "moontv:traffic": {**CONFIG["moontv:traffic"], "host": HOST},
        "moontv:kubernetes": {"context": node.context, "kubeconfig": node.kubeconfig},
        "moontv:release": release,
        # what these tests do not read, left out to keep the stack small and quick
        "moontv:monitoring": {"enabled": False},
        "moontv:storage": {**CONFIG["moontv:storage"], "backup": {"enabled": False}},
    }


def wait_ready(node) -> None:
    """Every rollout complete and no old pod left (:func:`node.unsettled`)."""
    node_host.wait_settled(node, NAMESPACE, READY_TIMEOUT)


@pytest.fixture(scope="module")
def mirror(node, node_images, tmp_path_factory):  # noqa: F811
    crd = node.kubectl("get", "crd", "traefikservices.traefik.io", "--ignore-not-found",
                       check=False)
    if not crd.strip():
        skip_or_fail("the node's Traefik runs without its kubernetesCRD provider (a node started "
                     "by an older node-up and shared now): run node-up when no one else uses it")
    project = Project(tmp_path_factory.mktemp("node-mirror"), require_engine())
    config = stack_config(node, mirrored())
    stack = project.stack("node", config, secrets={"moontv:ownerPassword": OWNER_PASSWORD})
    try:
        assert stack.up().summary.result == "succeeded"
        wait_ready(node)
        yield Release(node, stack, config)
    finally:
        print("\n[mirror] figures " + json.dumps(FIGURES, sort_keys=True))
        stack.destroy()


def call(release: Release, method: str, path: str, body: Any = None,
         cookie: str | None = None, headers: dict[str, str] | None = None,
         ) -> tuple[int, dict[str, str], bytes]:
    if headers:  # a header override: through http.client, like the load generator
        status, text = load.request(release.port, HOST, path, headers=headers)
        return status, {}, text.encode()
    return node_host.gateway_request(f"http://127.0.0.1:{release.port}", HOST, method, path,
                                     body, cookie)


def version_of(body: bytes) -> str | None:
    return load.server_version(body.decode(errors="replace"))


def canary_log(node) -> list[str]:
    """The ``[request]`` lines of every canary pod (the twin logs each answered request)."""
    pods = json.loads(node.kubectl("get", "pods", "-n", NAMESPACE, "-l",
                                   "moontv.io/track=canary", "-o", "json"))["items"]
    lines: list[str] = []
    for pod in pods:
        out = node.kubectl("logs", "-n", NAMESPACE, pod["metadata"]["name"], "-c", "moontv",
                           check=False)
        lines += [line for line in out.splitlines() if line.startswith("[request] ")]
    return lines


def counted(lines: list[str], method: str, path: str) -> int:
    return sum(1 for line in lines if line.split(" ")[1:3] == [method, path])


def gateway_count(node, service: str, method: str) -> float:
    """``traefik_service_requests_total`` of ``service`` for ``method``, all codes."""
    with urllib.request.urlopen(node.gateway_metrics, timeout=10) as response:
        text = response.read().decode()
    return prometheus_objects.traefik_requests(text, service, "method").get(method, 0.0)


def settled(node, before: int, expected_at_least: int) -> list[str]:
    """The canary log once the asynchronous copies have landed (it stops growing)."""
    last: list[str] = []

    def steady() -> bool:
        nonlocal last
        now = canary_log(node)
        done = len(now) == len(last) and len(now) - before >= expected_at_least
        last = now
        return done

    node_host.wait_until(steady, 30, interval=1.5)
    return last


def test_given_a_mirror_then_each_route_answers_a_real_request(mirror):
    """Route status proves nothing (a RequestMirror rule on Traefik says Accepted and answers
    500): every rule gets a request."""
    route = json.loads(mirror.node.kubectl("get", "httproute", "-n", NAMESPACE, "moontv",
                                           "-o", "json"))
    refs = [ref for rule in route["spec"]["rules"] for ref in rule["backendRefs"]]
    assert [r["name"] for r in refs if r.get("kind") == "TraefikService"] == ["moontv-mirror"]
    for method in ("GET", "HEAD"):  # the mirror rule
        status, headers, body = call(mirror, method, PATH)
        assert status == 200, (method, body[:200])
        # it answers for the weighted rule, so it tells a browser its track as that rule does
        assert node_host.cookie(headers, AFFINITY_COOKIE) == f"{AFFINITY_COOKIE}=stable"
        if method == "GET":
            assert version_of(body) == VERSION[STABLE]
    status, _, _ = call(mirror, "POST", "/api/login", {"username": OWNER,
                                                       "password": OWNER_PASSWORD})
    assert status == 200, status  # the weighted rule (writes)
    for value, version in (("always", CANARY), ("never", STABLE)):  # the override rules
        status, _, body = call(mirror, "GET", PATH, headers={"x-moontv-canary": value})
        assert (status, version_of(body)) == (200, VERSION[version])
    status, _, _ = call(mirror, "GET", "/api/cron")  # the blocked rule
    assert status == 404


def test_given_percent_50_when_1000_gets_then_half_reach_the_canary_and_clients_see_stable(
        mirror):
    before = canary_log(mirror.node)
    at_gateway = gateway_count(mirror.node, MIRROR_SERVICE, "GET")
    tally = mirror_burst(mirror)
    assert tally.failures == [], tally.failures[:5]
    assert dict(tally.tracks) == {VERSION[STABLE]: SAMPLE}  # 0 answers from the canary
    after = settled(mirror.node, len(before), int(SAMPLE * (PERCENT / 100 - TOLERANCE)))
    reached = counted(after, "GET", PATH) - counted(before, "GET", PATH)
    share = reached / SAMPLE
    gateway = gateway_count(mirror.node, MIRROR_SERVICE, "GET") - at_gateway
    FIGURES["mirror 50%: share of 1000 GETs at the canary"] = round(share, 4)
    FIGURES["mirror 50%: copies counted by the gateway / at the canary"] = \
        f"{gateway:.0f}/{reached}"
    print(f"\n[mirror] percent {PERCENT}: {reached} of {SAMPLE} GETs reached the canary "
          f"({share:.3f}); the gateway counted {gateway:.0f} for {MIRROR_SERVICE}")
    assert abs(share - PERCENT / 100) <= TOLERANCE, (reached, SAMPLE)


def mirror_burst(release: Release, total: int = SAMPLE) -> load.Tally:
    return load.burst(release.port, HOST, total, concurrency=10, path=PATH,
                      label=load.server_version)


def test_given_a_mirror_when_favourites_are_posted_then_none_reaches_the_canary(mirror):
    before = canary_log(mirror.node)
    status, headers, body = call(mirror, "POST", "/api/login",
                                 {"username": OWNER, "password": OWNER_PASSWORD})
    assert status == 200, body
    cookie = node_host.cookie(headers)
    keys = [f"mirror+{i}" for i in range(WRITES)]
    for key in keys:
        favourite = {"title": key, "source_name": "mirror", "year": "2026", "cover": "",
                     "total_episodes": 1}
        status, _, body = call(mirror, "POST", "/api/favorites",
                               {"key": key, "favorite": favourite}, cookie=cookie)
        assert status == 200, body
    status, _, body = call(mirror, "GET", "/api/favorites", cookie=cookie)
    assert status == 200
    stored = json.loads(body)
    time.sleep(3)  # a copy would be on its way by now
    after = canary_log(mirror.node)

    def writes(lines: list[str]) -> list[str]:
        return [line for line in lines if line.split(" ")[1] not in ("GET", "HEAD")]

    assert len(writes(after)) == len(writes(before)), writes(after)[-5:]
    assert sorted(k for k in stored if k.startswith("mirror+")) == sorted(keys)
    password = "$(sed -n 's/^requirepass //p' /etc/redis/redis.conf)"
    fields = mirror.node.exec(
        NAMESPACE, "moontv-redis-0", "sh", "-c",
        f'redis-cli -a "{password}" --no-auth-warning HKEYS u:{OWNER}:fav',
        container="redis", check=True).stdout.split()
    ours = [f for f in fields if f.startswith("mirror+")]
    assert sorted(ours) == sorted(keys)  # in the storage itself: each favourite, once
    FIGURES["mirror: POST /api/favorites at the canary"] = f"0 of {WRITES}"
    print(f"\n[mirror] {WRITES} POST /api/favorites: 0 reached the canary; "
          f"{len(keys)} stored once each")


#: The p99 comparison: rounds of open-loop GETs at this rate, alternated with and without,
#: after one warm-up round that is not counted.
P99_RATE, P99_SECONDS, P99_ROUNDS = 40.0, 15.0, 5


@pytest.mark.bench  # make bench-release
def test_p99_with_and_without_mirroring(mirror):
    """A figure (make bench-release), not a timed assertion: p99 of open-loop GETs at a rate
    a user population sends (the machine's two cores are not saturated by the load itself),
    rounds with and without mirroring alternated because the machine's load drifts; the p99
    of each condition is over all its rounds' requests.

    The first round, with the mirror on, warms both tracks up and is reported apart: a
    Next.js server's first requests load and compile its route code (the canary's while it
    answers its first copies; the likely cause of the slow first rounds of earlier runs), which
    the steady state compared here does not include."""
    warm_up = load.paced(mirror.port, HOST, P99_RATE, P99_SECONDS, path=PATH)
    assert warm_up.failures == [], warm_up.failures[:3]
    FIGURES["p99 of the warm-up round, mirroring 50% (ms)"] = round(warm_up.percentile_ms(0.99), 1)
    rounds: dict[int, list[load.Tally]] = {PERCENT: [], 0: []}
    for percent in [0, PERCENT] * P99_ROUNDS:
        if mirror.config["moontv:release"] != mirrored(percent=percent):
            mirror.set_release(mirrored(percent=percent))
            mirror.up()
        time.sleep(3)  # the Gateway's reload
        rounds[percent].append(load.paced(mirror.port, HOST, P99_RATE, P99_SECONDS, path=PATH))
    if mirror.config["moontv:release"] != mirrored():
        mirror.set_release(mirrored())
        mirror.up()
    pooled = {percent: load.pooled(tallies) for percent, tallies in rounds.items()}
    assert all(p.failures == [] for p in pooled.values()), {k: p.failures[:3]
                                                            for k, p in pooled.items()}
    p99_with, p99_without = pooled[PERCENT].percentile_ms(0.99), pooled[0].percentile_ms(0.99)
    per_round = {p: [round(t.percentile_ms(0.99), 1) for t in ts] for p, ts in rounds.items()}
    FIGURES["p99 with mirroring 50% (ms)"] = round(p99_with, 1)
    FIGURES["p99 without mirroring (ms)"] = round(p99_without, 1)
    FIGURES["p99 with / without mirroring"] = round(p99_with / p99_without, 3)
    print(f"\n[mirror] p99 of {len(pooled[0].durations)} GETs each at {P99_RATE:.0f}/s: "
          f"{p99_with:.1f} ms with mirroring, {p99_without:.1f} ms without "
          f"({p99_with / p99_without:.2f}x; per round {per_round[PERCENT]} with, "
          f"{per_round[0]} without; warm-up round {warm_up.percentile_ms(0.99):.1f} ms)")


def mirror_gate() -> list[str]:
    """The gate on the gateway's per-service metrics: the mirror's target service as well as
    the weighted rule's backend (both match the track's name)."""
    service = f'service=~".*{NAMESPACE}-moontv-$track-.*"'
    requests = f"sum(rate(traefik_service_requests_total{{{service}}}[20s]))"
    errors = f'sum(rate(traefik_service_requests_total{{{service},code=~"5.."}}[20s]))'
    latency = ("histogram_quantile(0.99, sum by (le) "
               f"(rate(traefik_service_request_duration_seconds_bucket{{{service}}}[20s])))")
    return ["--success-query", f"1 - ({errors} or vector(0)) / {requests}",
            "--latency-query", latency, "--min-success", "0.99", "--max-p99-ms", "2000"]


@contextlib.contextmanager
def public_load(release: Release, tmp: Path) -> Iterator[tuple[str, load.Continuous]]:
    """Prometheus scraping the gateway, and users' GETs on the public host (no header)."""
    metrics = urllib.parse.urlsplit(release.node.gateway_metrics)
    gateway = {"job_name": "gateway", "metrics_path": metrics.path,
               "static_configs": [{"targets": [metrics.netloc]}]}
    config = prometheus_objects.configuration(release.node, NAMESPACE, tmp, extra_jobs=[gateway])
    with prometheus_objects.running(config) as prometheus, load.Continuous(
            release.port, HOST, concurrency=2, path=PATH, label=load.server_version,
            rate=load.USERS_RATE) as users:
        def scraped() -> bool:
            up = prometheus_objects.targets_up(prometheus)
            return any(k.startswith("gateway/") and h == "up" for k, h in up.items())

        assert node_host.wait_until(scraped, 60), prometheus_objects.targets_up(prometheus)
        yield prometheus, users


def test_given_a_faulty_canary_when_rollout_auto_mirrors_then_it_stops_before_any_user(
        mirror, tmp_path):
    mirror.set_release(mirrored(version=FAULTY), image={**CONFIG["moontv:image"],
                                                        "tag": STABLE})
    mirror.up()
    wait_ready(mirror.node)
    with public_load(mirror, tmp_path) as (prometheus, users):
        started = time.monotonic()
        code, transcript = rollout_auto(mirror, prometheus, "--mirror", "20s", "--steps",
                                        "10,100", "--interval", "5s", *mirror_gate())
        seconds = time.monotonic() - started
        tally = users.stop()
    print(f"\n[mirror] rollout auto, faulty canary {FAULTY}:\n{transcript}")
    assert code == 1, transcript
    release = stack_release(mirror)["moontv:release"]
    decision = release["lastDecision"]
    assert decision["action"] == "rollback"
    assert decision["reason"].startswith("mirror step (20s, 50% of GET, HEAD): canary unhealthy "
                                         "on mirrored requests"), decision
    assert "success rate too low" in decision["reason"]
    assert release["canary"]["weight"] == 0
    assert not re.search(r"canary weight [1-9]", transcript), transcript
    assert tally.failures == [], tally.failures[:5]
    assert set(tally.tracks) == {VERSION[STABLE]}  # no user got the faulty version
    FIGURES["faulty canary in the mirror step: user-facing failed/total"] = \
        f"{len(tally.failures)}/{tally.total}"
    FIGURES["faulty canary: rollout auto start to decision (s)"] = round(seconds, 1)


def test_given_the_mirror_stack_when_destroyed_then_its_namespace_is_empty(mirror):
    mirror.stack.destroy()

    def gone() -> bool:
        return not mirror.node.kubectl("get", "all,pvc,traefikservices", "-n", NAMESPACE,
                                       "-o", "name", "--ignore-not-found", check=False).split()

    assert node_host.wait_until(gone, 120, interval=2)
