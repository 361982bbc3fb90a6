"""The mirror of the route table through a real Traefik (the toolchain's, the version the node and
the Swarm edge run), configured with the dynamic configuration the Swarm edge gets, in front of
two backends on 127.0.0.1 that count what reaches them: the mirror's share of GETs, no write
copied, every answer from stable, p99 with and without mirroring, and whether Traefik counts the
copies in its per-service metrics (what the mirror step's gate reads).

Fast and local (no cluster, no Docker); the same claims on the real node and Swarm are in
test_node_mirror.py and test_swarm_stack.py.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from components import release
from components.swarm import traefik
from tests.helpers import canary
from tests.integration import local_traefik, prometheus_objects
from tests.integration import swarm_load as load

pytestmark = pytest.mark.integration
HOST = "mirror.test"
SAMPLE = 1000
TOLERANCE = 0.05
#: The p99 comparison: rounds of open-loop GETs at this rate (load.paced), alternated.
P99_RATE, P99_SECONDS = 40.0, 10.0


class Backend:
    """An HTTP server on 127.0.0.1 answering ``{"Version": version}``, counting requests."""

    def __init__(self, version: str) -> None:
        self.seen: Counter[tuple[str, str]] = Counter()
        lock = threading.Lock()
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                with lock:
                    seen[(self.command, self.path)] += 1
                body = json.dumps({"Version": version}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, method: str) -> int:
        return sum(n for (m, _), n in self.seen.items() if m == method)


def dynamic(percent: int, backends: dict[str, Backend]) -> dict:
    """The Swarm edge's configuration for a canary at 0 with a mirror at ``percent``, each track
    service pointed at its local backend."""
    raw = canary(0, mirror={"percent": percent})
    config = traefik.dynamic_config(release.plan(release.parse(raw), "v1", 1).routes(HOST))
    for track, backend in backends.items():
        config["http"]["services"][f"moontv-{track}"]["loadBalancer"]["servers"] = [
            {"url": backend.url}]
    return config


@contextlib.contextmanager
def running_traefik(tmp: Path, config: dict) -> Iterator[tuple[int, str, Path]]:
    def ready(ports: dict[str, int]) -> bool:
        return load.request(ports[traefik.ENTRYPOINT], HOST, "/")[0] == 200

    with local_traefik.running(tmp, config, [traefik.ENTRYPOINT], ready) as edge:
        yield edge.ports[traefik.ENTRYPOINT], edge.metrics, edge.dynamic_file


def service_requests(metrics: str, service: str) -> dict[str, float]:
    """``traefik_service_requests_total`` of ``service`` by method."""
    with urllib.request.urlopen(metrics, timeout=10) as response:
        return prometheus_objects.traefik_requests(response.read().decode(), service, "method")


def post(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST", path, body=b"{}", headers={"Host": HOST,
                                                        "Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def settle(backend: Backend, method: str, at_least: int) -> int:
    """The backend's count once the asynchronous copies have landed."""
    last = -1
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        now = backend.count(method)
        if now == last and now >= at_least:
            break
        last = now
        time.sleep(0.5)
    return backend.count(method)


def test_given_a_mirror_at_50_then_traefik_copies_half_the_gets_and_no_write(tmp_path):
    stable, candidate = Backend("100.1.1"), Backend("100.1.2")
    backends = {"stable": stable, "canary": candidate}
    with running_traefik(tmp_path, dynamic(50, backends)) as (port, metrics, dynamic_file):
        # the route works (a request, not a status): HEAD and GET through the mirror rule
        assert load.request(port, HOST, load.SERVER_CONFIG)[0] == 200
        before = candidate.count("GET")
        tally = load.burst(port, HOST, SAMPLE, concurrency=10)
        assert tally.failures == []
        assert dict(tally.tracks) == {"100.1.1": SAMPLE}  # every answer from stable
        reached = settle(candidate, "GET", before + int(SAMPLE * 0.45)) - before
        writes = [post(port, "/api/favorites") for _ in range(50)]
        assert set(writes) == {200}
        time.sleep(1)
        assert candidate.count("POST") == 0
        assert stable.count("POST") == 50
        counted = service_requests(metrics, "moontv-canary@file")
        rounds: dict[int, list[load.Tally]] = {50: [], 0: []}
        for percent in (50, 0, 50, 0):  # alternated: the machine's load drifts
            dynamic_file.write_text(yaml.safe_dump(dynamic(percent, backends)))
            time.sleep(3)  # the file provider's reload
            rounds[percent].append(load.paced(port, HOST, P99_RATE, P99_SECONDS))
        off = candidate.count("GET")
        assert load.burst(port, HOST, 50).failures == []
        assert settle(candidate, "GET", off) == off  # mirroring off: nothing copied any more
    share = reached / SAMPLE
    assert all(t.failures == [] for ts in rounds.values() for t in ts)
    # each condition's p99 over all its rounds' requests (open loop: what users wait at a rate)
    p99_with, p99_without = (load.pooled(rounds[p]).percentile_ms(0.99) for p in (50, 0))
    per_round = {p: [round(t.percentile_ms(0.99), 1) for t in ts] for p, ts in rounds.items()}
    print(f"\n[traefik-mirror] {reached} of {SAMPLE} GETs copied to the canary ({share:.3f}); "
          f"0 of 50 POSTs; Traefik counted for moontv-canary@file: {counted}; "
          f"p99 {p99_with:.1f} ms with mirroring, {p99_without:.1f} ms without "
          f"({p99_with / p99_without:.2f}x; GETs at {P99_RATE:.0f}/s, rounds of "
          f"{int(P99_RATE * P99_SECONDS)}: {per_round[50]} with, {per_round[0]} without)")
    assert abs(share - 0.5) <= TOLERANCE
    # Traefik counts each copy under the mirror's own service: the gate can read it
    assert counted.get("GET", 0) >= reached
