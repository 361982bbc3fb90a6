"""The release tests' load generator (tests/integration/swarm_load.py) against a local server
on 127.0.0.1: paced clients keep to the rate, unpaced ones send as fast as answers come, and a
failed request says when it started."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.integration import swarm_load as load


class _Answer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        if self.path == "/broken":
            self.send_response(503)
            body = b"no available server"
        else:
            self.send_response(200)
            body = json.dumps({"Version": "100.1.1"}).encode()
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def run_for(seconds: float, **kwargs: object) -> load.Tally:
    with load.Continuous(**kwargs) as traffic:  # type: ignore[arg-type]
        time.sleep(seconds)
        return traffic.stop()


def test_given_a_rate_then_the_clients_together_keep_to_it(port):
    tally = run_for(2.0, port=port, host="moontv.local", concurrency=4, rate=50.0)
    assert tally.failures == []
    assert 85 <= tally.total <= 110, tally.total  # 50/s for 2 s, the first at once


def test_given_no_rate_then_the_clients_send_as_fast_as_answers_come(port):
    paced = run_for(1.0, port=port, host="moontv.local", concurrency=2, rate=20.0)
    unpaced = run_for(1.0, port=port, host="moontv.local", concurrency=2)
    assert unpaced.total > 5 * paced.total, (unpaced.total, paced.total)


def test_given_a_failing_answer_then_the_failure_says_when_it_started(port):
    tally = load.burst(port, "moontv.local", 3, concurrency=1, path="/broken")
    assert len(tally.failures) == 3
    assert all(re.fullmatch(r"HTTP 503: 'no available server' \(started "
                            r"\d\d:\d\d:\d\d\.\d, \d+\.\d s\)", f) for f in tally.failures), \
        tally.failures


def test_pooled_rounds_give_percentiles_over_all_their_requests():
    quick = load.Tally(durations=[0.010] * 99, failures=["a"])
    slow = load.Tally(durations=[0.010] * 89 + [0.500] * 10)
    quick.tracks["v1"], slow.tracks["v2"] = 99, 99
    pooled = load.pooled([quick, slow])
    assert len(pooled.durations) == 198 and pooled.failures == ["a"]
    assert pooled.tracks == {"v1": 99, "v2": 99}
    # 10 slow of 198 is over 1 %: the pooled p99 is slow, though one round's p99 is quick
    assert quick.percentile_ms(0.99) == 10.0 and pooled.percentile_ms(0.99) == 500.0
    assert pooled.percentile_ms(0.5) == 10.0
    assert quick.durations == [0.010] * 99  # the rounds are left as they were


def test_a_tally_gives_the_p99_of_the_requests_started_in_a_window():
    tally = load.Tally(durations=[0.010, 0.020, 0.500, 0.030], starts=[1.0, 2.0, 3.0, 4.0])
    assert tally.percentile_ms(0.99) == 500
    assert tally.percentile_ms(0.99, since=3.5) == 30
    assert tally.percentile_ms(0.99, until=2.5) == 20
    assert load.Tally(durations=[0.010]).percentile_ms(0.99) == 10
    with pytest.raises(ValueError):
        load.Tally(durations=[0.010]).percentile_ms(0.99, since=1.0)
