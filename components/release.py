"""Release strategies as pure data: which tracks run, with which version, replicas and traffic.

``moontv:release`` (see :class:`ReleaseSettings`) picks one of three strategies:

* ``rolling`` - one ``stable`` track gets all traffic; new versions roll in place.
* ``canary`` - ``stable`` plus ``canary``; the canary gets ``canary.weight`` % of traffic, and the
  header ``x-moontv-canary: always`` / ``never`` forces one track regardless of the weight.
* ``blue-green`` - ``blue`` and ``green``; the ``active`` colour gets all traffic, the other one
  is reachable through the preview Service.

:func:`plan` turns the settings into a :class:`ReleasePlan` both platforms render; its
:meth:`ReleasePlan.routes` is the provider-neutral :class:`RouteTable` that Gateway API, nginx and
Traefik only render (hosts, blocked paths, header and cookie overrides, weighted backends, the
track affinity cookie that keeps a browser on the track that first served it, and the mirror that
copies read requests to a release candidate no user is sent to yet). Staging,
promotion, rollback, abort and switching are edits of the raw config mapping (:func:`stage`,
:func:`set_weight`, :func:`promote`, :func:`rollback`, :func:`abort`, :func:`switch`): each
validates its input and returns the new mapping, so the operator CLI only writes what this
module accepted.

This module imports nothing from Pulumi.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BeforeValidator, ValidationInfo, model_validator

from components import app_facts, naming
from components.errors import ConfigModel, config_error, format_errors, int_range, matching, show

Role = Literal["primary", "canary", "preview", "idle"]
Strategy = Literal["rolling", "blue-green", "canary"]
Colour = Literal["blue", "green"]
OverrideKind = Literal["header", "cookie"]
Action = Literal["stage", "set-weight", "promote", "rollback", "abort", "switch"]
Method = Literal["GET", "HEAD", "OPTIONS"]

KEY = "moontv:release"
#: Upper bound of every replica count (the same as ``moontv:replicas``).
MAX_REPLICAS = 50
#: ``blueGreen.scaleDownDelaySeconds``: its default and its upper bound (an hour).
DEFAULT_SCALE_DOWN_DELAY = 300
MAX_SCALE_DOWN_DELAY = 3600
HEADER: Literal["x-moontv-canary"] = "x-moontv-canary"
ALLOW_LATEST = "allow_latest"
"""Validation context key: ``model_validate(data, context={ALLOW_LATEST: True})`` accepts the
``latest`` tag. Without it ``latest`` is rejected; the environment's settings decide."""

TAG_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
DIGEST_PATTERN = r"sha256:[0-9a-f]{64}"
_TAG = re.compile(TAG_PATTERN)
_VERSION = re.compile(rf"({TAG_PATTERN})(?:@({DIGEST_PATTERN}))?")
_COOKIE = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: An RFC 6265 cookie-name (an RFC 2616 token) without the backquote, which Traefik's rule syntax
#: uses as its string delimiter.
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_|~-]{1,64}")
#: The default name of the track affinity cookie (``release.affinity.cookie``).
AFFINITY_COOKIE = "moontv-track"

TAG_ACCEPTED = (
    "an image tag (at most 128 letters, digits, '_', '.' and '-', not starting with '.' or '-')"
)
DIGEST_ACCEPTED = "sha256: followed by 64 lower-case hex digits"
VERSION_ACCEPTED = f"{TAG_ACCEPTED}, optionally followed by @sha256:<64 hex digits>"
LATEST_REFUSED = (
    "must not be the mutable tag 'latest' in this environment; "
    "use a version tag or pin it with @sha256:<64 hex>"
)


class ReleaseError(ValueError):
    """Invalid release config or transition; ``problems`` holds one message per problem."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


# --- version strings ---------------------------------------------------------------------------


def version_problem(value: object, *, allow_latest: bool, with_digest: bool = True) -> str | None:
    """Why ``value`` is not an acceptable version (``tag`` or ``tag@sha256:<hex>``), or None.

    ``with_digest=False`` checks a bare tag (``moontv:image.tag``). A digest pins even the
    ``latest`` tag, so only a bare ``latest`` needs ``allow_latest``.
    """
    accepted = VERSION_ACCEPTED if with_digest else TAG_ACCEPTED
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return f"must be {accepted}"
    text = str(value)
    match = (_VERSION if with_digest else _TAG).fullmatch(text)
    if match is None:
        return f"must be {accepted}"
    if text == "latest" and not allow_latest:
        return LATEST_REFUSED
    return None


def _checker(with_digest: bool) -> BeforeValidator:
    def check(value: object, info: ValidationInfo) -> str:
        allow = bool((info.context or {}).get(ALLOW_LATEST, False))
        problem = version_problem(value, allow_latest=allow, with_digest=with_digest)
        if problem is not None:
            raise config_error(problem, got=value)
        return str(value)  # `--path` config stores a numeric tag such as 42 as a number

    return BeforeValidator(check)


Version = Annotated[str, _checker(with_digest=True)]
"""A version: ``tag`` or ``tag@sha256:<64 hex>``; ``latest`` per the validation context."""
Tag = Annotated[str, _checker(with_digest=False)]
"""A bare image tag; ``latest`` per the validation context."""
Digest = Annotated[str, matching(rf"^{DIGEST_PATTERN}$", DIGEST_ACCEPTED)]
"""An image digest, ``sha256:<64 hex>``."""


def join_version(tag: str, digest: str | None) -> str:
    """``tag`` or ``tag@sha256:…``: the version string of an image tag and optional digest."""
    return f"{tag}@{digest}" if digest else tag


def image_ref(repository: str, version: str) -> str:
    """``repo:tag`` or ``repo:tag@sha256:…`` for a track version."""
    return f"{repository}:{version}"


def split_version(version: str) -> tuple[str, str | None]:
    """Inverse of :func:`join_version`."""
    tag, _, digest = version.partition("@")
    return tag, digest or None


# --- the `moontv:release` object ---------------------------------------------------------------

#: Methods that change state: mirrored, each one would run twice (once on every version) against
#: the one shared database, e.g. every `POST /api/favorites` stored by stable and the candidate.
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
READ_METHODS: tuple[Method, ...] = ("GET", "HEAD", "OPTIONS")
MIRROR_DEFAULT_METHODS: tuple[Method, ...] = ("GET", "HEAD")


def _methods(value: object) -> object:
    """``mirror.methods``: a non-empty list of distinct read methods, in upper case."""
    accepted = f"a non-empty list of distinct methods out of {', '.join(READ_METHODS)}"
    if not isinstance(value, (list, tuple)) or not value:
        raise config_error(f"must be {accepted}", got=value)
    problems = []
    for item in value:
        if isinstance(item, str) and item.upper() in WRITE_METHODS:
            problems.append(
                f"{item} writes: a mirrored {item} would be applied twice to the shared storage "
                "(once by each version); mirror read methods only")
        elif item not in READ_METHODS:
            problems.append(f"{show(item)} is not accepted")
    if not problems and len(set(value)) != len(value):
        problems.append("lists a method twice")
    if problems:
        raise config_error(f"must be {accepted}; " + "; ".join(problems), got=value)
    return tuple(value)


class MirrorSettings(ConfigModel):
    """``moontv:release.canary.mirror`` / ``moontv:release.blueGreen.mirror``: copy ``percent`` %
    of the public host's read requests (``methods``) to the release candidate while it takes no
    user traffic; its answers are thrown away."""

    percent: Annotated[int, int_range(0, 100)]
    methods: Annotated[tuple[Method, ...], BeforeValidator(_methods)] = MIRROR_DEFAULT_METHODS



def _cookie(value: object) -> object:
    if not (isinstance(value, str) and _COOKIE.fullmatch(value)):
        raise config_error("must be a cookie name: 1 to 64 letters, digits, '_' or '-'", got=value)
    return value


def _token(value: object) -> object:
    if not (isinstance(value, str) and _TOKEN.fullmatch(value)):
        raise config_error(
            "must be a cookie name: an RFC 6265 token of 1 to 64 characters (letters, digits and "
            "! # $ % & ' * + - . ^ _ | ~; no space, no separator such as ( ) < > @ , ; : \\ \" "
            "/ [ ] ? = { } and no backquote)", got=value)
    return value


class AffinitySettings(ConfigModel):
    """``moontv:release.affinity``: track affinity of the canary split. A browser without the
    cookie is split by weight and told (``Set-Cookie``) which track served it; a browser with
    it stays on that track while the track takes default traffic. On by default with strategy
    canary (the only strategy that splits default traffic between two versions)."""

    enabled: bool = True
    cookie: Annotated[str, BeforeValidator(_token)] = AFFINITY_COOKIE
    #: ``Secure`` on the cookie: set it when the host is served over HTTPS only (the Gateway's
    #: listener, or a TLS proxy in front of Swarm's edge, holds the certificate; this program
    #: cannot see it). A browser drops a Secure cookie that comes over plain HTTP.
    secure: bool = False

    @model_validator(mode="after")
    def _read_only_when_enabled(self) -> AffinitySettings:
        unread = [f for f in ("cookie", "secure") if f in self.model_fields_set]
        if not self.enabled and unread:
            raise config_error("is read only when affinity.enabled is true: remove it",
                               unread[0])
        return self


class CanarySettings(ConfigModel):
    """``moontv:release.canary``."""

    version: Version | None = None
    weight: Annotated[int, int_range(0, 100)] = 0
    header: Literal["x-moontv-canary"] = HEADER
    cookie: Annotated[str, BeforeValidator(_cookie)] | None = None
    replicas: Annotated[int, int_range(1, MAX_REPLICAS)] | None = None
    #: The stable version the last promotion replaced (written by ``promote``): what a
    #: rollback after a promotion goes back to.
    previous: Version | None = None
    mirror: MirrorSettings | None = None

    @model_validator(mode="after")
    def _weight_needs_version(self) -> CanarySettings:
        if self.weight > 0 and self.version is None:
            raise config_error(
                f"must be 0 while {KEY}.canary.version is unset (no canary to send traffic to)",
                "weight",
                got=self.weight,
            )
        return self


class BlueGreenSettings(ConfigModel):
    """``moontv:release.blueGreen``."""

    blue: Version | None = None
    green: Version | None = None
    active: Colour = "blue"
    scale_down_inactive: bool = False
    preview_replicas: Annotated[int, int_range(1, MAX_REPLICAS)] | None = None
    #: Seconds the colour that lost the traffic keeps the replicas the autoscaler gave it, from
    #: the `up` that switched (Argo Rollouts' scaleDownDelaySeconds): a switch back within it
    #: finds the capacity still there. A later `up` scales it down (components/kubernetes/
    #: capacity.py).
    scale_down_delay_seconds: Annotated[int, int_range(0, MAX_SCALE_DOWN_DELAY)] = (
        DEFAULT_SCALE_DOWN_DELAY)
    mirror: MirrorSettings | None = None

    @model_validator(mode="after")
    def _mirror_needs_a_preview(self) -> BlueGreenSettings:
        if self.mirror is not None and self.scale_down_inactive:
            raise config_error(
                "cannot mirror while blueGreen.scaleDownInactive is true: the inactive colour "
                "runs no replica to send the copies to; remove mirror or scaleDownInactive",
                "mirror",
            )
        return self

    def version_of(self, colour: Colour) -> str | None:
        return self.blue if colour == "blue" else self.green

    @property
    def inactive(self) -> Colour:
        return "green" if self.active == "blue" else "blue"


class Decision(ConfigModel):
    """``moontv:release.lastDecision``: what the rollout CLI last did, and why."""

    action: Action
    reason: str
    at: str  # ISO 8601, UTC


class ReleaseSettings(ConfigModel):
    """The ``moontv:release`` config object."""

    strategy: Strategy = "rolling"
    canary: CanarySettings | None = None
    blue_green: BlueGreenSettings | None = None
    affinity: AffinitySettings | None = None
    last_decision: Decision | None = None

    @model_validator(mode="after")
    def _strategy_has_what_it_needs(self) -> ReleaseSettings:
        if self.affinity is not None and self.strategy != "canary":
            raise config_error(
                f"is read only by strategy canary, not {self.strategy}: "
                + ("blue-green sends all default traffic to the active colour, and a switch "
                   "(or a switch back) must move every browser at once, so there is no split "
                   "to keep a browser on one side of; " if self.strategy == "blue-green" else
                   "rolling runs one track; ")
                + "remove affinity or use strategy canary", "affinity")
        affinity = self.affinity or AffinitySettings()
        canary_cookie = self.canary.cookie if self.canary else None
        if self.strategy == "canary" and affinity.enabled and canary_cookie == affinity.cookie:
            where = ("affinity", "cookie") if self.affinity else ("canary", "cookie")
            raise config_error(
                f"{canary_cookie!r} is both canary.cookie (which forces a track with the values "
                "always/never) and the track affinity cookie release.affinity.cookie (which "
                "names the track that served, and would overwrite it): give them different "
                "names", *where, got=canary_cookie)
        if self.strategy == "rolling":
            for key, section in (("canary", self.canary), ("blueGreen", self.blue_green)):
                if section is not None and section.mirror is not None:
                    raise config_error(
                        "mirroring needs a release candidate to send the copies to: strategy "
                        "rolling runs one version only; use strategy canary or blue-green, or "
                        "remove mirror",
                        key, "mirror",
                    )
        if self.strategy == "blue-green":
            bg = self.blue_green
            if bg is None:
                raise config_error(
                    "is required when strategy is blue-green "
                    "(set blueGreen.blue and/or blueGreen.green, and blueGreen.active)",
                    "blueGreen",
                )
            if bg.version_of(bg.active) is None:
                raise config_error(
                    f"is required: {bg.active} is the active colour (blueGreen.active)",
                    "blueGreen",
                    bg.active,
                )
        return self


def parse(raw: Mapping[str, Any] | None, *, allow_latest: bool = False) -> ReleaseSettings:
    """Validate a raw ``moontv:release`` mapping; :class:`ReleaseError` lists every problem."""
    try:
        return ReleaseSettings.model_validate(raw or {}, context={ALLOW_LATEST: allow_latest})
    except pydantic.ValidationError as exc:
        raise ReleaseError(format_errors(exc, KEY, model=ReleaseSettings)) from None


# --- the plan ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Track:
    name: str  # "stable" | "canary" | "blue" | "green"
    version: str  # image tag, or "tag@sha256:<64 hex>"
    replicas: int
    weight: int  # % of default (no header) traffic, 0..100; weights of all tracks sum to 100
    role: Role  # primary = behind Service `moontv`; preview = behind `moontv-preview`


@dataclass(frozen=True)
class ReleasePlan:
    strategy: Strategy
    tracks: tuple[Track, ...]
    primary: str  # track name that Service `moontv` selects
    preview: str | None  # track behind Service `moontv-preview` (inactive colour, or the canary)
    header: str  # "x-moontv-canary"
    header_routes: Mapping[str, str]  # header value -> track name
    cookie: str | None  # optional canary cookie name
    #: Copies of the public host's read requests for the release candidate, or None.
    mirror: Mirror | None = None
    #: Track affinity of the public host's split (its ``pinned`` tracks are set per route).
    affinity: Affinity | None = None

    def track(self, name: str) -> Track:
        return next(t for t in self.tracks if t.name == name)

    @property
    def weights(self) -> dict[str, int]:
        return {t.name: t.weight for t in self.tracks}

    def routes(self, host: str) -> RouteTable:
        """How requests for ``host`` (and ``preview.<host>``) reach the tracks."""
        kinds: tuple[tuple[OverrideKind, str | None], ...] = (
            ("header", self.header), ("cookie", self.cookie))
        overrides = [Override(kind, name, value, track) for kind, name in kinds if name
                     for value, track in sorted(self.header_routes.items())]
        forced = {o.track for o in overrides}
        backends = tuple(Backend(t.name, t.weight) for t in self.tracks
                         if t.weight > 0 or t.name in forced)
        affinity = self.affinity
        if affinity is not None:
            weighted = tuple(b.track for b in backends if b.weight)
            # With one weighted track every request without an override goes there anyway.
            affinity = replace(affinity, pinned=weighted if len(weighted) > 1 else ())
        public = Route("public", naming.PRIMARY_SERVICE, host, tuple(overrides), backends,
                       self.mirror, affinity)
        routes = [public]
        if self.preview:
            routes.append(Route("preview", naming.PREVIEW_SERVICE, f"preview.{host}", (),
                                (Backend(self.preview, None),)))
        return RouteTable(tuple(routes), app_facts.BLOCKED_PATHS, app_facts.NOT_FOUND_PATH)


# --- the route table ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Backend:
    track: str
    weight: int | None  # % of the host's default traffic; None: the host's only backend


@dataclass(frozen=True)
class Override:
    """Requests whose header (or cookie) ``name`` is ``value`` go to ``track``, whatever the
    weights. A header override takes precedence over a cookie override."""

    kind: OverrideKind
    name: str
    value: str
    track: str

    @property
    def pattern(self) -> str:
        """A regular expression on the whole ``Cookie`` header (:func:`cookie_pattern`)."""
        return cookie_pattern(self.name, self.value)


def cookie_pattern(name: str, value: str) -> str:
    """A regular expression on the whole ``Cookie`` header that holds when cookie ``name`` is
    ``value`` (RE2 and Go syntax; it holds whether the implementation matches it in full or in
    part)."""
    return rf"(^|.*;\s*){re.escape(name)}={re.escape(value)}(;.*|$)"


@dataclass(frozen=True)
class Affinity:
    """Track affinity of a host's default traffic (no override).

    Every answer of the weighted split, and of the mirror that stands in for it at weight 0,
    sets the cookie ``cookie=<track>`` with :attr:`attributes` (a session cookie: no Max-Age).
    A request whose cookie names one of ``pinned`` goes to that track whatever the weights, so
    a weight step moves only browsers without the cookie; a cookie naming any other track (one
    that left the split, e.g. the canary after a rollback) is ignored and replaced. Overrides
    (header, canary cookie) come first and set no cookie.

    ``pinned`` holds the tracks with a weight above 0 when there are two or more; with one,
    every request goes to it anyway (and a cookie rule would outrank a mirror's)."""

    cookie: str
    secure: bool
    pinned: tuple[str, ...] = ()
    path: str = "/"
    same_site: Literal["Lax"] = "Lax"
    http_only: bool = True

    @property
    def attributes(self) -> str:
        """``Path=/; SameSite=Lax; HttpOnly`` (and ``; Secure``)."""
        flags = ["HttpOnly"] if self.http_only else []
        flags += ["Secure"] if self.secure else []
        return "; ".join([f"Path={self.path}", f"SameSite={self.same_site}", *flags])

    def set_cookie(self, track: str) -> str:
        """The ``Set-Cookie`` value that answers from ``track`` carry."""
        return f"{self.cookie}={track}; {self.attributes}"

    def pattern(self, track: str) -> str:
        """The ``Cookie`` header match of the browsers that stay on ``track``."""
        return cookie_pattern(self.cookie, track)


@dataclass(frozen=True)
class Mirror:
    """Requests of the host's default traffic (no override) whose method is one of ``methods``
    are answered by ``source``; ``percent`` % of them are also copied to ``track``, whose answers
    are thrown away. Other methods (every write) are never copied."""

    source: str  # the track that answers (the only one with default traffic)
    track: str  # the release candidate that gets the copies
    percent: int  # 1..100
    methods: tuple[str, ...]  # read methods only (GET, HEAD, OPTIONS)


@dataclass(frozen=True)
class Route:
    role: Literal["public", "preview"]
    name: str  # "moontv" / "moontv-preview": names the route objects of every provider
    host: str
    overrides: tuple[Override, ...]  # in precedence order
    backends: tuple[Backend, ...]  # the first one also answers the blocked paths
    mirror: Mirror | None = None  # copies of read requests to the release candidate
    affinity: Affinity | None = None  # the cookie that keeps a browser on its track


@dataclass(frozen=True)
class RouteTable:
    routes: tuple[Route, ...]  # the public host, then the preview host if there is a preview
    blocked: tuple[str, ...]  # path prefixes never routed: rewritten to ``not_found`` instead
    not_found: str  # a path the app answers with 404, so a blocked path never looks like a 5xx


def plan(release: ReleaseSettings, stable_version: str, replicas: int) -> ReleasePlan:
    """The tracks to run for ``release``; ``stable_version`` is the image version (rolling and
    canary), ``replicas`` the replica count of the track(s) taking production traffic.

    ``stable_version`` is checked for its shape only: whether ``latest`` is acceptable was
    decided by the settings of the environment.
    """
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise ReleaseError(f"replicas: must be an integer >= 0, got {show(replicas)}")
    if release.strategy != "blue-green":
        problem = version_problem(stable_version, allow_latest=True)
        if problem is not None:
            raise ReleaseError(f"stable version: {problem}, got {show(stable_version)}")
    if release.strategy == "canary":
        settings = release.affinity or AffinitySettings()
        affinity = Affinity(settings.cookie, settings.secure) if settings.enabled else None
        return replace(_canary(release.canary or CanarySettings(), stable_version, replicas),
                       affinity=affinity)
    if release.strategy == "blue-green":
        assert release.blue_green is not None  # guaranteed by ReleaseSettings
        return _blue_green(release.blue_green, replicas)
    stable = Track("stable", stable_version, replicas, 100, "primary")
    return ReleasePlan("rolling", (stable,), "stable", None, HEADER, MappingProxyType({}), None)


def _canary(canary: CanarySettings, stable_version: str, replicas: int) -> ReleasePlan:
    weight = canary.weight
    stable = Track("stable", stable_version, replicas, 100 - weight, "primary")
    if canary.version is None:  # nothing to try: the stable track alone
        return ReleasePlan(
            "canary", (stable,), "stable", None, HEADER, MappingProxyType({}), canary.cookie
        )
    # Full size unless set: the weight is then a routing edit only, and 100 % fits.
    canary_replicas = canary.replicas or replicas
    track = Track("canary", canary.version, canary_replicas, weight, "canary")
    routes = MappingProxyType({"always": "canary", "never": "stable"})
    # Mirroring is the step before the first weight: once users reach the canary, it ends.
    mirror = _mirror(canary.mirror, "stable", "canary") if weight == 0 else None
    return ReleasePlan("canary", (stable, track), "stable", "canary", HEADER, routes, canary.cookie,
                       mirror)


def _mirror(settings: MirrorSettings | None, source: str, track: str) -> Mirror | None:
    if settings is None or settings.percent == 0:
        return None
    return Mirror(source, track, settings.percent, tuple(settings.methods))


def _blue_green(bg: BlueGreenSettings, replicas: int) -> ReleasePlan:
    active_version = bg.version_of(bg.active)
    assert active_version is not None  # guaranteed by ReleaseSettings
    tracks = [Track(bg.active, active_version, replicas, 100, "primary")]
    other = bg.inactive
    other_version = bg.version_of(other)
    preview: str | None = None
    if other_version is not None:
        if bg.scale_down_inactive:
            tracks.append(Track(other, other_version, 0, 0, "idle"))
        else:
            count = bg.preview_replicas if bg.preview_replicas is not None else replicas
            tracks.append(Track(other, other_version, count, 0, "preview"))
            preview = other
    mirror = _mirror(bg.mirror, bg.active, preview) if preview else None
    return ReleasePlan(
        "blue-green", tuple(tracks), bg.active, preview, HEADER, MappingProxyType({}), None, mirror
    )


# --- transitions on the raw config -------------------------------------------------------------


@dataclass(frozen=True)
class Promotion:
    """Result of :func:`promote`: the new ``moontv:release`` and ``moontv:image`` mappings."""

    release: dict[str, Any]
    image: dict[str, Any]
    summary: str


def stage(cfg: Mapping[str, Any] | None, version: object) -> dict[str, Any]:
    """Deploy ``version`` as the release candidate without sending it default traffic.

    Canary: ``canary.version`` at weight 0 (refused while another canary version takes
    traffic). Blue-green: the inactive colour gets the version (the preview).
    """
    settings = parse(cfg, allow_latest=True)
    if settings.strategy == "canary":
        canary = settings.canary
        if canary is not None and canary.weight > 0 and canary.version != str(version):
            raise ReleaseError(
                f"{KEY}.canary.version: {canary.version} takes {canary.weight}% of traffic; "
                "promote, roll back or abort it before staging another version"
            )
        release = _edit(cfg, ("canary", "version"), version)
        return _edit(release, ("canary", "weight"), 0)
    if settings.strategy == "blue-green":
        assert settings.blue_green is not None
        return _edit(cfg, ("blueGreen", settings.blue_green.inactive), version)
    raise _wrong_strategy("stage", settings.strategy, "canary or blue-green")


def set_weight(cfg: Mapping[str, Any] | None, weight: object) -> dict[str, Any]:
    """Send ``weight`` % of default traffic to the canary."""
    _require_canary(cfg, "set-weight")
    if isinstance(weight, str) and re.fullmatch(r"\s*-?[0-9]+\s*", weight):
        weight = int(weight)  # as typed on a command line
    return _edit(cfg, ("canary", "weight"), weight)


def promote(cfg: Mapping[str, Any] | None, image: Mapping[str, Any] | None) -> Promotion:
    """Make the release candidate the release.

    Canary: the canary version becomes the image version (``moontv:image.tag`` and ``digest``),
    the weight goes to 0 and ``canary.version`` is removed. Blue-green: the preview colour
    becomes active.
    """
    settings = parse(cfg, allow_latest=True)
    if settings.strategy == "canary":
        canary = _require_canary(cfg, "promote")
        assert canary.version is not None
        tag, digest = split_version(canary.version)
        new_image = copy.deepcopy(dict(image or {}))
        new_image["tag"] = tag
        if digest:
            new_image["digest"] = digest
        else:
            new_image.pop("digest", None)
        release = _edit(cfg, ("canary", "weight"), 0)
        release["canary"].pop("version", None)
        stable = image or {}
        if stable.get("tag") is not None:
            old = join_version(str(stable["tag"]), stable.get("digest"))
            if old != canary.version:
                release = _edit(release, ("canary", "previous"), old)
        return Promotion(release, new_image, f"image version is now {canary.version}")
    if settings.strategy == "blue-green":
        bg = settings.blue_green
        assert bg is not None
        release = switch(cfg, bg.inactive)
        return Promotion(release, dict(image or {}), f"{bg.inactive} is now active")
    raise _wrong_strategy("promote", settings.strategy, "canary or blue-green")


def rollback(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """Undo exposure: canary weight to 0 (the canary keeps running for the header route);
    blue-green: switch back to the other colour."""
    settings = parse(cfg, allow_latest=True)
    if settings.strategy == "canary":
        _require_canary(cfg, "rollback")
        return _edit(cfg, ("canary", "weight"), 0)
    if settings.strategy == "blue-green":
        assert settings.blue_green is not None
        return switch(cfg, settings.blue_green.inactive)
    raise _wrong_strategy("rollback", settings.strategy, "canary or blue-green")


def recover(
    cfg: Mapping[str, Any] | None, image: Mapping[str, Any] | None, candidate: str
) -> Promotion | None:
    """After a failed release of ``candidate``: the config that takes every bit of default
    traffic off it, or None when none reaches it already (so running it again changes nothing).
    It never moves traffic towards the candidate, and never switches when the candidate is not
    what serves.

    Canary: a candidate taking traffic goes back to weight 0; a candidate already promoted to
    the image version is replaced by ``canary.previous`` (it stays the canary at weight 0).
    Blue-green: when the active colour runs the candidate, the other colour becomes active if
    it holds another version.
    """
    settings = parse(cfg, allow_latest=True)
    stable = image or {}
    if settings.strategy == "canary":
        canary = settings.canary or CanarySettings()
        tag = stable.get("tag")
        current = join_version(str(tag), stable.get("digest")) if tag is not None else None
        if current == candidate:
            if canary.previous is None or canary.previous == candidate:
                raise ReleaseError(
                    f"{KEY}.canary.previous: {candidate} was promoted and no earlier stable "
                    "version is recorded, so there is nothing to go back to; set "
                    "moontv:image.tag (and digest) to the version to run"
                )
            back, back_digest = split_version(canary.previous)
            new_image = copy.deepcopy(dict(stable))
            new_image["tag"] = back
            if back_digest:
                new_image["digest"] = back_digest
            else:
                new_image.pop("digest", None)
            release = _mutable(cfg)
            release["canary"] = {
                **release.get("canary", {}),
                "version": candidate,
                "weight": 0,
            }
            release["canary"].pop("previous", None)
            parse(release, allow_latest=True)
            return Promotion(
                release,
                new_image,
                f"image version back to {canary.previous}; {candidate} kept as the canary at 0%",
            )
        if canary.version == candidate and canary.weight > 0:
            return Promotion(_edit(cfg, ("canary", "weight"), 0), dict(stable), "canary weight 0%")
        return None
    if settings.strategy == "blue-green":
        bg = settings.blue_green
        assert bg is not None
        other = bg.version_of(bg.inactive)
        if bg.version_of(bg.active) != candidate:
            return None
        if other is None or other == candidate:
            raise ReleaseError(
                f"{KEY}.blueGreen.{bg.inactive}: {bg.active} runs the failed {candidate} and "
                f"{bg.inactive} holds no other version to switch back to"
            )
        return Promotion(switch(cfg, bg.inactive), dict(stable), f"{bg.inactive} active again")
    return None


def abort(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """Drop the release candidate: canary weight 0 and ``canary.version`` removed; blue-green:
    the inactive colour's version is removed (it is no longer deployed)."""
    settings = parse(cfg, allow_latest=True)
    if settings.strategy == "canary":
        _require_canary(cfg, "abort")
        release = _edit(cfg, ("canary", "weight"), 0)
        release["canary"].pop("version", None)
        return release
    if settings.strategy == "blue-green":
        bg = settings.blue_green
        assert bg is not None
        if bg.version_of(bg.inactive) is None:
            raise ReleaseError(
                f"{KEY}.blueGreen.{bg.inactive}: nothing to abort, the inactive colour "
                "has no version"
            )
        release = _mutable(cfg)
        release["blueGreen"].pop(bg.inactive, None)
        parse(release, allow_latest=True)
        return release
    raise _wrong_strategy("abort", settings.strategy, "canary or blue-green")


def switch(cfg: Mapping[str, Any] | None, colour: object) -> dict[str, Any]:
    """Make ``colour`` the active blue-green colour (it must have a version)."""
    settings = parse(cfg, allow_latest=True)
    if settings.strategy != "blue-green":
        raise _wrong_strategy("switch", settings.strategy, "blue-green")
    if colour not in ("blue", "green"):
        raise ReleaseError(f"{KEY}.blueGreen.active: must be 'blue' or 'green', got {show(colour)}")
    bg = settings.blue_green
    assert bg is not None
    if bg.version_of(colour) is None:
        raise ReleaseError(
            f"{KEY}.blueGreen.{colour}: cannot switch to {colour}, it has no version; "
            f"set {KEY}.blueGreen.{colour} first"
        )
    return _edit(cfg, ("blueGreen", "active"), colour)


def record(cfg: Mapping[str, Any] | None, action: Action, reason: str, at: str) -> dict[str, Any]:
    """Store the decision in ``lastDecision`` (``at``: ISO 8601 UTC time). A rollback after a
    rollback keeps the first one's reason after its own."""
    last = (cfg or {}).get("lastDecision")
    if action == "rollback" and isinstance(last, Mapping) and last.get("action") == "rollback":
        earlier = str(last.get("reason", ""))
        if earlier and earlier != reason:
            reason = f"{reason}; earlier rollback at {last.get('at', '?')}: {earlier}"
    return _edit(cfg, ("lastDecision",), {"action": action, "reason": reason, "at": at})


def _require_canary(cfg: Mapping[str, Any] | None, action: str) -> CanarySettings:
    settings = parse(cfg, allow_latest=True)
    if settings.strategy != "canary":
        raise _wrong_strategy(action, settings.strategy, "canary")
    if settings.canary is None or settings.canary.version is None:
        raise ReleaseError(
            f"{KEY}.canary.version: {action} needs a canary; set {KEY}.canary.version first"
        )
    return settings.canary


def _wrong_strategy(action: str, strategy: str, accepted: str) -> ReleaseError:
    return ReleaseError(f"{KEY}.strategy: {action} needs strategy {accepted}, got {show(strategy)}")


def _mutable(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    return copy.deepcopy(dict(cfg or {}))


def _edit(cfg: Mapping[str, Any] | None, path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A copy of ``cfg`` with ``path`` set to ``value``, validated as a whole."""
    release = _mutable(cfg)
    node = release
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    parse(release, allow_latest=True)
    return release
