"""Page loads in a real browser: Debian's Chromium (``/usr/bin/chromium``) driven by Playwright
(PyPI), never a browser download, against an address on 127.0.0.1.

A page load is what a user gets: the document and every file it names or loads (``/_next/static``
chunks, CSS, the lazily imported code of a click), each recorded with its answer. A load is
*broken* when any request fails (no answer) or answers >= 400, or the page throws (an uncaught
error, or an error on the console: "Loading chunk 229 failed", React's hydration error #423).
Measured on LunaTV, that is what a per-request split between two releases does to a third of the
page loads (issue table in ``../shared/MOONTV-RUNTIME.md``).

One Chromium process serves many loads; each load gets a fresh browser context (no cache, no
cookies but those given), or a context the caller keeps (tabs opened before a release event,
used again after it). Every host name resolves to 127.0.0.1 (``--host-resolver-rules``), so a
router that routes by host name (the node's Gateway, the Swarm edge) is reached as
``http://<host>:<port>`` and nothing leaves the machine.

Also here: :func:`twin_split`, two builds of the app twin behind the toolchain's Traefik on
127.0.0.1 with a per-request weighted split and no affinity (the "before" of track affinity).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import tempfile
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from playwright.sync_api import Browser as PlaywrightBrowser
from playwright.sync_api import (
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    Response,
    sync_playwright,
)
from playwright.sync_api import Error as PlaywrightError

CHROMIUM = Path("/usr/bin/chromium")
#: As root, offline: no sandbox (root), no GPU, and none of Chromium's own connections (which
#: this machine's closed network refuses, many at a time).
FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * 127.0.0.1",
)
#: A load has settled when no request has been in flight for this long after the load event
#: (a failed chunk's error is thrown within milliseconds of its 404).
QUIET = 0.15
TIMEOUT = 20.0
#: The twin's lazily loaded code (tests/fixtures/app-twin): the home page's "更多" button
#: imports a chunk its HTML does not name, which renders the panel (or, when it fails, an error).
MORE = "[data-testid=more]"
LAZY_PANEL = "[data-testid=lazy-panel]"
#: The element that carries the compiled-in version of the client bundle a page rendered.
VERSION = "[data-version]"


class BrowserUnavailable(RuntimeError):
    """Chromium or Playwright cannot start here (``tools/test-deps.sh`` installs Chromium)."""


@dataclass(frozen=True)
class Failure:
    url: str
    #: the answer's status, or None when the request got no answer
    status: int | None
    error: str = ""

    def __str__(self) -> str:
        return f"{self.status or self.error} {self.url}"


@dataclass(frozen=True)
class PageLoad:
    """One page load (or one action in an open tab): what the browser requested and saw."""

    url: str
    #: the document's status (None for an action in an open tab)
    status: int | None
    requests: int
    failed: tuple[Failure, ...]
    #: uncaught errors and console errors, in order
    errors: tuple[str, ...]
    #: the version the page shows (its ``[data-version]``), None when it shows none
    version: str | None
    seconds: float

    @property
    def broken(self) -> bool:
        return bool(self.failed or self.errors)

    @property
    def threw(self) -> bool:
        """The page itself reported an error (not only a failed request)."""
        return any(not e.startswith("harness:") for e in self.errors)

    def summary(self) -> str:
        what = [str(f) for f in self.failed] + [e.splitlines()[0][:160] for e in self.errors]
        return f"{self.url} v{self.version}: " + ("; ".join(what) or "ok")


@dataclass
class Tally:
    """Several loads of one page."""

    url: str
    loads: list[PageLoad] = field(default_factory=list)

    @property
    def broken(self) -> int:
        return sum(load.broken for load in self.loads)

    @property
    def threw(self) -> int:
        return sum(load.threw for load in self.loads)

    @property
    def per_100(self) -> float:
        return 100.0 * self.broken / len(self.loads) if self.loads else 0.0

    @property
    def versions(self) -> Counter[str | None]:
        return Counter(load.version for load in self.loads)

    def examples(self, count: int = 3) -> list[str]:
        return [load.summary() for load in self.loads if load.broken][:count]


class Tab:
    """A page of a context, recording everything it requests from the moment it opens: a tab a
    user keeps open. :meth:`goto` loads a page in it, :meth:`click` acts on it; each returns
    what happened since the previous call."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self._requests = 0
        self._inflight: set[Request] = set()
        self._active = time.monotonic()
        self._failed: list[Failure] = []
        self._errors: list[str] = []
        #: (url, message) of Chromium's console lines for a failed request
        self._echoes: list[tuple[str, str]] = []
        page.on("request", self._on_request)
        page.on("requestfinished", self._on_done)
        page.on("requestfailed", self._on_failed)
        page.on("response", self._on_response)
        page.on("pageerror", lambda exc: self._errors.append(f"pageerror: {exc}"))
        page.on("console", self._on_console)

    def _on_request(self, request: Request) -> None:
        self._requests += 1
        self._inflight.add(request)
        self._active = time.monotonic()

    def _on_done(self, request: Request) -> None:
        self._inflight.discard(request)
        self._active = time.monotonic()

    def _on_failed(self, request: Request) -> None:
        self._on_done(request)
        self._failed.append(Failure(request.url, None, request.failure or "failed"))

    def _on_response(self, response: Response) -> None:
        if response.status >= 400:
            self._failed.append(Failure(response.url, response.status))

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        if message.text.startswith("Failed to load resource"):
            # Chromium's echo of a failed request: recorded by the response events already,
            # except for the browser's own icon request (a missing icon breaks nothing).
            url = message.location.get("url", "")
            if urllib.parse.urlsplit(url).path == "/favicon.ico":
                return
            self._echoes.append((url, f"console: {message.text}"))
            return
        self._errors.append(f"console: {message.text}")

    def _settle(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.page.wait_for_timeout(50)  # lets Playwright deliver the page's events
            if not self._inflight and time.monotonic() - self._active >= QUIET:
                return
        self._errors.append(f"harness: requests still in flight after {timeout:.0f}s: "
                            + ", ".join(r.url for r in self._inflight))

    def _result(self, url: str, status: int | None, started: float) -> PageLoad:
        version = None
        try:
            version = self.page.evaluate(
                "s => (document.querySelector(s) || {dataset: {}}).dataset.version || null",
                VERSION)
        except PlaywrightError as exc:  # e.g. the page crashed or navigated away meanwhile
            self._errors.append(f"harness: {exc}".splitlines()[0])
        seen = {f.url for f in self._failed}
        errors = self._errors + [text for where, text in self._echoes if where not in seen]
        load = PageLoad(url, status, self._requests, tuple(self._failed), tuple(errors),
                        version, time.monotonic() - started)
        self._requests, self._failed, self._errors, self._echoes = 0, [], [], []
        return load

    def goto(self, url: str, timeout: float = TIMEOUT) -> PageLoad:
        """Load ``url`` in this tab (a full page load) and wait until it has settled."""
        started = time.monotonic()
        status = None
        try:
            response = self.page.goto(url, wait_until="load", timeout=timeout * 1000)
            status = response.status if response else None
            self._settle(timeout)
        except PlaywrightError as exc:
            self._errors.append(f"harness: {exc}".splitlines()[0])
        return self._result(url, status, started)

    def click(self, selector: str = MORE, appears: str | None = LAZY_PANEL,
              timeout: float = TIMEOUT) -> PageLoad:
        """Click ``selector`` (default: the twin's button that loads a chunk lazily), wait until
        the page has settled; ``appears`` (a selector) must then be on the page, else the result
        carries an error."""
        started = self._active = time.monotonic()
        try:
            self.page.click(selector, timeout=timeout * 1000)
            self._settle(timeout)
            if appears:
                self.page.wait_for_selector(appears, timeout=1000)
        except PlaywrightError as exc:
            self._errors.append(f"harness: {exc}".splitlines()[0])
        return self._result(f"{self.page.url} click {selector}", None, started)

    def close(self) -> None:
        self.page.close()


class Browser:
    """One Chromium process for many page loads (each in a context of its own)."""

    def __init__(self) -> None:
        if not CHROMIUM.exists():
            raise BrowserUnavailable(f"{CHROMIUM} is missing (Debian's chromium: "
                                     "tools/test-deps.sh installs it)")
        self._playwright = sync_playwright().start()
        try:
            self.browser: PlaywrightBrowser = self._playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=list(FLAGS), headless=True)
        except PlaywrightError as exc:
            self._playwright.stop()
            raise BrowserUnavailable(f"Chromium did not start: {exc}") from exc

    def close(self) -> None:
        with contextlib.suppress(PlaywrightError):
            self.browser.close()
        self._playwright.stop()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def version(self) -> str:
        return self.browser.version

    def context(self, cookies: list[dict[str, Any]] | None = None) -> BrowserContext:
        """A new context (a user's browser profile: no cache, only these cookies); close it."""
        context = self.browser.new_context()
        context.set_default_timeout(TIMEOUT * 1000)
        if cookies:
            context.add_cookies(cookies)  # type: ignore[arg-type]
        return context

    def open(self, url: str, context: BrowserContext) -> tuple[Tab, PageLoad]:
        """A new tab of ``context`` with ``url`` loaded: a tab opened before an event."""
        tab = Tab(context.new_page())
        return tab, tab.goto(url)

    def load(self, url: str, cookies: list[dict[str, Any]] | None = None,
             click: str | None = None, context: BrowserContext | None = None) -> PageLoad:
        """Load ``url`` in a new tab of ``context`` (default: a fresh context with ``cookies``),
        then, with ``click``, click that selector (e.g. :data:`MORE`) and wait for
        :data:`LAZY_PANEL`; the result covers both."""
        own = context is None
        ctx = self.context(cookies) if context is None else context
        try:
            tab, load = self.open(url, ctx)
            if click is None:
                return load
            clicked = tab.click(click)
            return PageLoad(load.url, load.status, load.requests + clicked.requests,
                            load.failed + clicked.failed, load.errors + clicked.errors,
                            clicked.version, load.seconds + clicked.seconds)
        finally:
            if own:
                ctx.close()

    def tally(self, url: str, count: int, cookies: list[dict[str, Any]] | None = None,
              click: str | None = None) -> Tally:
        """``count`` loads of ``url``, each in a fresh context."""
        tally = Tally(url)
        for _ in range(count):
            tally.loads.append(self.load(url, cookies, click))
        return tally


def login_cookies(base_url: str, username: str, password: str) -> list[dict[str, Any]]:
    """Log in with ``POST /api/login`` at ``base_url``; the cookies it sets, for
    :meth:`Browser.context` (the app's ``auth`` cookie: a logged-in user)."""
    parts = urllib.parse.urlsplit(base_url)
    conn = http.client.HTTPConnection("127.0.0.1", parts.port or 80, timeout=10)
    try:
        conn.request("POST", "/api/login", json.dumps({"username": username,
                                                       "password": password}),
                     {"Host": parts.netloc, "Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise AssertionError(f"login at {base_url} answered {response.status}")
        set_cookies = response.headers.get_all("Set-Cookie") or []
    finally:
        conn.close()
    cookies = []
    for header in set_cookies:
        name, value = header.split(";", 1)[0].split("=", 1)
        cookies.append({"name": name.strip(), "value": value.strip(), "url": base_url})
    return cookies


#: The pages the figures cover (issue table): ``/login`` as a new user, ``/`` logged in.
PAGES = {"/login": False, "/": True}


def page_loads(br: Browser, urls: dict[int, str], loads: dict[int, int],
               cookies: list[dict[str, Any]]) -> dict[str, dict[int, Tally]]:
    """For each page of :data:`PAGES` and each canary weight: ``loads[weight]`` loads through
    the router at ``urls[weight]`` (a base URL: a local Traefik, the node's Gateway, the Swarm
    edge), each in a fresh context; ``cookies`` (:func:`login_cookies`) for the logged-in
    pages. The cookies are given for each URL's host."""
    out: dict[str, dict[int, Tally]] = {}
    for page, logged_in in PAGES.items():
        out[page] = {}
        for weight, url in urls.items():
            given = [{**c, "url": url} for c in cookies] if logged_in else None
            out[page][weight] = br.tally(url + page, loads[weight], given)
    return out


def figures(phase: str, router: str, tallies: dict[str, dict[int, Tally]]) -> str:
    """One line a test prints and ``make bench-browser`` reads: broken loads per page and
    weight, for ``phase`` ("before": no affinity; "after": with it) through ``router``."""
    pages = {page: {str(weight): {"broken": t.broken, "threw": t.threw, "loads": len(t.loads)}
                    for weight, t in by_weight.items()} for page, by_weight in tallies.items()}
    return "[browser] figures " + json.dumps({"phase": phase, "router": router, "pages": pages})


# --- two builds of the twin behind a per-request weighted split (no affinity) -------------------


class Split:
    """Routers on 127.0.0.1 (Traefik entry points), each a per-request weighted split of the
    twin's two builds: ``url(name)`` is an entry point's base URL."""

    def __init__(self, weights: dict[str, int], servers: dict[str, str],
                 versions: dict[str, str], edge: Any) -> None:
        self.weights = dict(weights)
        self.servers = servers
        #: track ("stable", "canary") → the ``Version`` its build reports
        self.versions = versions
        self._edge = edge

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self._edge.ports[name]}"

    def switch(self, name: str, weight: int, timeout: float = 30.0) -> None:
        """Set entry point ``name``'s canary weight to 0 or 100 (a complete switch) and wait
        until Traefik routes every request by it."""
        if weight not in (0, 100):
            raise ValueError(f"switch weight {weight}: only 0 or 100 can be waited for")
        self.weights[name] = weight
        self._edge.dynamic_file.write_text(
            yaml.safe_dump(split_config(self.weights, self.servers)))
        want = self.versions["canary" if weight else "stable"]
        port = self._edge.ports[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(_version(port) == want for _ in range(5)):
                return
            time.sleep(0.3)
        raise AssertionError(f"Traefik did not switch {name} to {weight} in {timeout:.0f}s")


def split_config(weights: dict[str, int], servers: dict[str, str]) -> dict[str, Any]:
    """Traefik's dynamic configuration: entry point ``name`` → a weighted service of the
    ``stable`` server (100 - weight) and the ``canary`` one (weight), chosen per request (no
    sticky cookie), for each ``name: weight`` of ``weights``."""
    routers, services = {}, {}
    for name, weight in weights.items():
        shares = {"stable": 100 - weight, "canary": weight}
        routers[name] = {"entryPoints": [name], "rule": "PathPrefix(`/`)",
                         "service": f"split-{name}"}
        services[f"split-{name}"] = {"weighted": {"services": [
            {"name": track, "weight": share} for track, share in shares.items() if share]}}
    for track, url in servers.items():
        services[track] = {"loadBalancer": {"servers": [{"url": url}]}}
    return {"http": {"routers": routers, "services": services}}


@contextlib.contextmanager
def twin_split(stable_image: str, canary_image: str, weights: dict[str, int]) -> Iterator[Split]:
    """Redis, the twin's ``stable_image`` and ``canary_image`` (host network, 127.0.0.1) and the
    toolchain's Traefik with :func:`split_config` (entry point name → canary weight), until the
    block ends."""
    from tests.integration import local_traefik, twin
    from tests.integration.test_storage_tool import redis_server

    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="moontv-split-")))
        port = stack.enter_context(redis_server(tmp / "redis", password=None))
        redis_url = f"redis://127.0.0.1:{port}"
        apps = {track: stack.enter_context(twin.running(image, redis_url))
                for track, image in (("stable", stable_image), ("canary", canary_image))}
        servers = {track: app.url for track, app in apps.items()}
        versions = {track: _version(int(url.rsplit(":", 1)[1])) or ""
                    for track, url in servers.items()}

        def ready(ports: dict[str, int]) -> bool:
            return all(_version(p) for p in ports.values())

        edge = stack.enter_context(local_traefik.running(
            tmp, split_config(weights, servers), list(weights), ready))
        yield Split(weights, servers, versions, edge)


def _version(port: int) -> str | None:
    """The ``Version`` that ``/api/server-config`` on 127.0.0.1:``port`` reports."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/api/server-config")
        response = conn.getresponse()
        body = response.read()
        return str(json.loads(body)["Version"]) if response.status == 200 else None
    finally:
        conn.close()
