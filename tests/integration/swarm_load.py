"""Bounded HTTP load generator for the traffic tests on Swarm and on the real node (127.0.0.1
only).

Requests go through the edge (Swarm's Traefik, the node's Gateway) with a Host header; a
``label`` function names what served each response from its body (by default
:func:`server_version` on the app's ``/api/server-config``: the ``Version`` a user sees, one per
track). Every request has a timeout, the total is bounded, and workers are plain threads.
"""

from __future__ import annotations

import http.client
import http.cookies
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Self

TIMEOUT = 5.0
SERVER_CONFIG = "/api/server-config"
#: Requests per second of users' load beside a release step that is judged on it (``rollout
#: auto``'s gates, a mirror's copies): enough to be counted, leaving the two cores to the step.
USERS_RATE = 30.0
Label = Callable[[str], str | None]


@dataclass
class Tally:
    tracks: Counter = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    #: seconds each request took, answered or not
    durations: list[float] = field(default_factory=list, repr=False)
    #: when each of them started (``time.monotonic()``), in the same order
    starts: list[float] = field(default_factory=list, repr=False)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def total(self) -> int:
        return sum(self.tracks.values()) + len(self.failures)

    def share(self, track: str) -> float:
        ok = sum(self.tracks.values())
        return self.tracks[track] / ok if ok else 0.0

    def percentile_ms(self, q: float, since: float = -math.inf, until: float = math.inf) -> float:
        """The ``q`` quantile (0.99: p99) of the request durations, nearest rank, in ms; of the
        requests started between ``since`` and ``until`` (``time.monotonic()``) when given."""
        timed = len(self.starts) == len(self.durations)
        if not timed and (since, until) != (-math.inf, math.inf):
            raise ValueError("a window needs each request's start (a tally made by _one)")
        ordered = sorted(d for d, s in zip(self.durations, self.starts, strict=True)
                         if since <= s <= until) if timed else sorted(self.durations)
        if not ordered:
            return math.nan
        return 1000 * ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def pooled(tallies: Iterable[Tally]) -> Tally:
    """One tally of every request of ``tallies`` (e.g. a condition's rounds): its percentiles
    are over all the requests, not an average of the rounds' percentiles."""
    out = Tally()
    for tally in tallies:
        out.tracks.update(tally.tracks)
        out.failures += tally.failures
        out.durations += tally.durations
        out.starts += tally.starts
    return out


def exchange(
    port: int, host: str, path: str = "/", headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPMessage, str]:
    """One GET through the edge on a fresh connection; returns (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("GET", path, headers={"Host": host, "Connection": "close", **(headers or {})})
        response = conn.getresponse()
        return response.status, response.msg, response.read().decode(errors="replace")
    finally:
        conn.close()


def request(
    port: int, host: str, path: str = "/", headers: dict[str, str] | None = None
) -> tuple[int, str]:
    """One GET through the edge on a fresh connection; returns (status, body)."""
    status, _, body = exchange(port, host, path, headers)
    return status, body


def server_version(body: str) -> str | None:
    """The ``Version`` of an ``/api/server-config`` answer (None when it is not one)."""
    try:
        version = json.loads(body).get("Version")
    except (ValueError, AttributeError):
        return None
    return str(version) if version else None


def _clock(monotonic: float) -> str:
    """A ``time.monotonic()`` instant as wall-clock time (UTC, to 0.1 s)."""
    wall = time.time() - (time.monotonic() - monotonic)
    return time.strftime("%H:%M:%S", time.gmtime(wall)) + f".{int(wall * 10) % 10}"


def _one(
    port: int,
    host: str,
    headers: dict[str, str] | None,
    tally: Tally,
    path: str = SERVER_CONFIG,
    label: Label = server_version,
    due: float | None = None,
) -> None:
    """One request, counted in ``tally``; its duration runs from ``due`` (when it was meant
    to start) when given, so time spent waiting for a free worker counts too."""
    started = time.monotonic() if due is None else due
    try:
        status, body = request(port, host, path, headers=headers)
        track = label(body)
        outcome = track if status == 200 and track else f"HTTP {status}: {body[:80]!r}"
    except (OSError, http.client.HTTPException) as exc:
        outcome = f"{type(exc).__name__}: {exc}"
        track = None
    answered = bool(track) and outcome == track
    if not answered:  # when, to match with the gateway's and node's logs
        outcome += f" (started {_clock(started)}, {time.monotonic() - started:.1f} s)"
    with tally.lock:
        tally.durations.append(time.monotonic() - started)
        tally.starts.append(started)
        if answered:
            tally.tracks[outcome] += 1
        else:
            tally.failures.append(outcome)


def burst(
    port: int,
    host: str,
    total: int,
    concurrency: int = 10,
    headers: dict[str, str] | None = None,
    path: str = SERVER_CONFIG,
    label: Label = server_version,
) -> Tally:
    """``total`` requests with ``concurrency`` workers."""
    tally = Tally()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for _ in range(total):
            pool.submit(_one, port, host, headers, tally, path, label)
    return tally


def paced(
    port: int,
    host: str,
    rate: float,
    seconds: float,
    path: str = SERVER_CONFIG,
    label: Label = server_version,
    workers: int = 32,
) -> Tally:
    """Open-loop load: one request every ``1/rate`` s for ``seconds``, whether or not earlier
    ones have answered, as independent users send them. Latencies then show what a user waits
    at that rate, rather than the queue a closed loop of busy workers builds on a small
    machine; each is measured from the request's due time."""
    tally = Tally()
    total = int(rate * seconds)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        start = time.monotonic()
        for i in range(total):
            due = start + i / rate
            time.sleep(max(0.0, due - time.monotonic()))
            pool.submit(_one, port, host, None, tally, path, label, due)
    return tally


class Continuous:
    """Load that runs until :meth:`stop` (or ``max_requests``), e.g. across a deploy.

    ``concurrency`` clients each send one request after the other; with ``rate`` (requests per
    second, all clients together) each client keeps to its share of it, so the load leaves the
    machine's cores to what it measures (a gap in service longer than ``1/rate`` s is still
    seen); without it each sends as fast as answers come."""

    def __init__(
        self,
        port: int,
        host: str,
        concurrency: int = 4,
        max_requests: int = 200_000,
        path: str = SERVER_CONFIG,
        label: Label = server_version,
        headers: dict[str, str] | None = None,
        rate: float | None = None,
    ) -> None:
        self.tally = Tally()
        self._port, self._host = port, host
        self._path, self._label, self._headers = path, label, headers
        self._stop = threading.Event()
        self._budget = threading.Semaphore(max_requests)
        self._interval = concurrency / rate if rate else 0.0
        self._threads = [
            threading.Thread(target=self._run, args=(i / rate if rate else 0.0,), daemon=True)
            for i in range(concurrency)
        ]

    def _run(self, offset: float) -> None:
        due = time.monotonic() + offset  # clients spread over one interval
        while not self._stop.wait(max(0.0, due - time.monotonic())) and \
                self._budget.acquire(blocking=False):
            _one(self._port, self._host, self._headers, self.tally, self._path, self._label)
            # the next one is due an interval later; a client that fell behind does not burst
            due = max(due + self._interval, time.monotonic() - self._interval)

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> Tally:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2 * TIMEOUT)
        return self.tally

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- browser sessions (track affinity) ----------------------------------------------------------


def set_cookie(headers: http.client.HTTPMessage, name: str) -> str | None:
    """The ``Set-Cookie`` header of an answer that sets cookie ``name`` (None: none does; two
    are an error)."""
    found = [value for value in headers.get_all("Set-Cookie") or []
             if value.split("=", 1)[0].strip() == name]
    assert len(found) <= 1, found
    return found[0] if found else None


def cookie_attributes(header: str) -> dict[str, str | bool]:
    """The attributes of one ``Set-Cookie`` header that are set, in lower case (``path``,
    ``samesite``, ``httponly``, ``secure``, ``max-age``, ``expires``, ``domain``)."""
    jar: http.cookies.SimpleCookie = http.cookies.SimpleCookie()
    jar.load(header)
    (morsel,) = jar.values()
    return {key: value for key, value in morsel.items() if value}


@dataclass
class Session:
    """One browser session: the affinity cookie it holds (``name=value``, "" before the first
    answer) and what answered each of its requests, in order."""

    cookie: str = ""
    served: list[str] = field(default_factory=list)
    #: every ``Set-Cookie`` of the affinity cookie it was sent
    set_cookies: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def first(self) -> str | None:
        return self.served[0] if self.served else None

    @property
    def switched(self) -> bool:
        """Whether two of its requests were answered by different versions."""
        return len(set(self.served)) > 1


def browse(port: int, host: str, browsers: list[Session], cookie: str, requests_each: int = 1,
           concurrency: int = 10, path: str = SERVER_CONFIG,
           label: Label = server_version) -> None:
    """Each of ``browsers`` sends ``requests_each`` requests one after the other with the cookie
    it holds, and keeps the one an answer sets, as a browser does; the browsers run side by
    side on ``concurrency`` workers."""

    def one(browser: Session) -> None:
        for _ in range(requests_each):
            headers = {"Cookie": browser.cookie} if browser.cookie else {}
            try:
                status, answer, body = exchange(port, host, path, headers)
            except (OSError, http.client.HTTPException) as exc:
                browser.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            served = label(body)
            if status != 200 or not served:
                browser.failures.append(f"HTTP {status}: {body[:80]!r}")
                continue
            browser.served.append(served)
            header = set_cookie(answer, cookie)
            if header is not None:
                browser.set_cookies.append(header)
                browser.cookie = header.split(";", 1)[0].strip()

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for browser in browsers:
            pool.submit(one, browser)


def new_sessions(port: int, host: str, count: int, cookie: str,
                 concurrency: int = 10) -> list[Session]:
    """``count`` browsers without a cookie, each after its first answer."""
    browsers = [Session() for _ in range(count)]
    browse(port, host, browsers, cookie, concurrency=concurrency)
    return browsers


def first_share(browsers: list[Session], served: str) -> float:
    """The share of ``browsers`` whose first answer came from ``served``."""
    firsts = [b.first for b in browsers if b.first]
    return firsts.count(served) / len(firsts) if firsts else 0.0


def cookie_values(browsers: list[Session]) -> dict[str, set[str]]:
    """The affinity cookie value each browser's first answer set -> the versions of those first
    answers (one each when the cookie names what served)."""
    out: dict[str, set[str]] = {}
    for browser in browsers:
        if browser.set_cookies and browser.first:
            value = browser.set_cookies[0].split(";", 1)[0].split("=", 1)[1]
            out.setdefault(value, set()).add(browser.first)
    return out


class Browsing:
    """``browsers`` keep browsing (one request each per round, with their cookies) until
    :meth:`stop`, e.g. across a weight step."""

    def __init__(self, port: int, host: str, browsers: list[Session], cookie: str,
                 concurrency: int = 4) -> None:
        assert browsers, "no browser to keep browsing"
        self.rounds = 0
        self._stop = threading.Event()

        def run() -> None:
            while not self._stop.is_set():
                browse(port, host, browsers, cookie, concurrency=concurrency)
                self.rounds += 1

        self._thread = threading.Thread(target=run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> int:
        """Stop after the round under way; returns the rounds completed."""
        self._stop.set()
        self._thread.join(timeout=120)
        return self.rounds

    def __exit__(self, *exc: object) -> None:
        self.stop()
