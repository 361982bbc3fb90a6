"""End of life and known fixes of the image lines the stack ships (pure data, no Pulumi import).

One row per image line: when upstream stops fixing it, and the first version of the line with
each known security fix. The table is data, updated together with the pins in
``components/image_defaults.py`` (Renovate's pull requests touch both; a unit test fails when a
shipped default is past its line's end of life or below a listed fix, and when a default's line
is missing here). ``rollout check pre`` and ``pulumi preview`` warn when a stack runs an image
this table flags (:func:`assess`).

Sources are the upstream release notes and announcements named in each row. An ``eol`` of
``None`` means upstream has announced no end date for the line (it is maintained).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from components.settings import MoonTVSettings


@dataclass(frozen=True)
class Fix:
    """The first version of a line that carries ``what``."""

    version: str
    what: str
    source: str


@dataclass(frozen=True)
class Line:
    """A release line (``"7.4"``, ``"24"``) of one image ``repository``."""

    repository: str
    line: str
    eol: date | None
    source: str
    fixes: tuple[Fix, ...] = ()


@dataclass(frozen=True)
class KnownGap:
    """A pin the project knows is below a fix and cannot raise yet, and why."""

    what: str
    pinned: str
    wanted: str
    reason: str


LINES: tuple[Line, ...] = (
    Line("redis", "7.4", None,
         "Redis SECURITY.md: 7.4 is a supported line (redis/redis#14355)",
         (Fix("7.4.6", "CVE-2025-49844 Lua use-after-free (RCE), CVE-2025-46817/46818/46819",
              "Redis CE 7.4.6 release notes (redis/docs#2211)"),
          Fix("7.4.10", "July 2026 security release (RCE)",
              "docker-library/official-images#21927 '[SECURITY] Redis ... 7.4.10'"))),
    Line("apache/kvrocks", "2", None,
         "Apache Kvrocks releases (2.17.0 of 2026-09-11)",
         (Fix("2.16.0", "CVE-2024-31449 and CVE-2025-49844 in the bundled Lua "
              "(apache/kvrocks#3435, April 2026)", "apache/kvrocks#3433, #3434, #3435"),
          Fix("2.17.0", "Lua reply sanitising (apache/kvrocks#3494), admin-only DEBUG and "
              "namespace-scoped CLIENT (apache/kvrocks#3570, #3536)",
              "Kvrocks 2.17.0 release notes"))),
    Line("node", "20", date(2026, 4, 30), "Node.js release schedule (nodejs/Release)"),
    Line("node", "22", date(2027, 4, 30), "Node.js release schedule (nodejs/Release)",
         (Fix("22.23.2", "CVE-2026-56846, CVE-2026-56848, CVE-2026-58043 (High)",
              "Node.js v22.23.2 release notes"),)),
    Line("node", "24", date(2028, 4, 30), "Node.js release schedule (nodejs/Release)",
         (Fix("24.18.1", "CVE-2026-56846, CVE-2026-56848, CVE-2026-58043 (High)",
              "Node.js v24.18.1 release notes"),)),
    Line("traefik", "3.7", None, "Traefik releases (3.7 is the current minor)",
         (Fix("3.7.13", "GHSA-qqjf-53cj-pwvv, GHSA-f52w-8j3h-j724, GHSA-v67p-phpq-fc8x, "
              "GHSA-w4v4-9rw7-5326, GHSA-8fcf-v89g-xpg6", "Traefik v3.7.13 release notes"),
          Fix("3.7.17", "security fixes after 3.7.13",
              "issue 28 (Traefik release notes; not in the reference corpus here)"))),
    Line("quay.io/prometheus/prometheus", "2.53", date(2025, 7, 31),
         "Prometheus LTS 2.53 support ended 2025-07-31"),
    Line("quay.io/prometheus/prometheus", "3.13", date(2027, 7, 31),
         "Prometheus 3.13 LTS, supported until July 2027 (gitlab-org/omnibus-gitlab!9666)"),
    Line("quay.io/prometheus/alertmanager", "0.34", None, "Alertmanager releases"),
    Line("quay.io/prometheus/blackbox-exporter", "0.27", None, "blackbox_exporter releases"),
    Line("cr.fluentbit.io/fluent/fluent-bit", "3.2", date(2025, 6, 29),
         "Fluent Bit security policy (3.2 end of life)"),
    Line("cr.fluentbit.io/fluent/fluent-bit", "5.0", date(2026, 11, 30),
         "Fluent Bit security policy: 5.0 supported through 2026-11-30 (fluent/fluent-bit#11818)"),
    Line("cr.fluentbit.io/fluent/fluent-bit", "5.1", None,
         "Fluent Bit 5.1 is the current stable line (endoflife-date#10747)"),
    Line("otel/opentelemetry-collector-contrib", "0.160", None,
         "OpenTelemetry Collector contrib v0.160.0 (2026-09-02)"),
    Line("oliver006/redis_exporter", "1.67", None, "redis_exporter releases"),
)

KNOWN_GAPS: tuple[KnownGap, ...] = (
    KnownGap(
        "the real node's Gateway (tools/traefik.sh)", "v3.7.13", "v3.7.17",
        "built from github.com/traefik/traefik/v3 through the Go module proxy, which serves "
        "up to v3.7.13; the Swarm edge image (traefik:v3.7.17) is not affected"),
)

_SEMVER = re.compile(r"^v?(\d+(?:\.\d+)*)")


def parse(ref: str) -> tuple[str, str | None]:
    """``repo[:tag][@sha256:…]`` -> (repository without ``docker.io/library/``, version)."""
    name = ref.partition("@")[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    repository, tag = (name[:colon], name[colon + 1:]) if colon > slash else (name, "")
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/"):
        if repository.startswith(prefix):
            repository = repository.removeprefix(prefix)
            break
    match = _SEMVER.match(tag)
    return repository, match.group(1) if match else None


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def line_of(repository: str, version: str) -> Line | None:
    """The table row whose line ``version`` belongs to (the longest matching line)."""
    rows = [r for r in LINES if r.repository == repository
            and _key(version)[: len(_key(r.line))] == _key(r.line)]
    return max(rows, key=lambda r: len(r.line), default=None)


def tracked(repository: str) -> bool:
    return any(r.repository == repository for r in LINES)


def assess(ref: str, today: date) -> list[str]:
    """What is wrong with running ``ref`` on ``today``: past its line's end of life, below a
    known fix, or on a line of a tracked repository that the table does not list. Images of
    repositories the table does not track give nothing."""
    repository, version = parse(ref)
    if not tracked(repository):
        return []
    if version is None:
        return [f"{ref}: no version in the tag, so its fixes cannot be checked"]
    row = line_of(repository, version)
    if row is None:
        lines = ", ".join(r.line for r in LINES if r.repository == repository)
        return [f"{ref}: line {version} of {repository} is not in the lifecycle table "
                f"(known lines: {lines}; see components/image_lifecycle.py)"]
    problems = []
    if row.eol is not None and today > row.eol:
        problems.append(f"{ref}: {repository} {row.line} reached end of life on "
                        f"{row.eol.isoformat()} ({row.source})")
    depth = len(_key(version))
    for fix in row.fixes:
        if len(_key(fix.version)) > depth:
            problems.append(f"{ref}: a floating tag; pin a full version to prove it has "
                            f"{fix.version} ({fix.what})")
        elif _key(version) < _key(fix.version):
            problems.append(f"{ref}: below {fix.version}, which fixes {fix.what} ({fix.source})")
    return problems


def stack_images(model: MoonTVSettings) -> dict[str, str]:
    """Every image the stack runs: ``what -> reference``."""
    from components import release as rel

    found = {
        f"app track {track.name}": rel.image_ref(model.image.repository, track.version)
        for track in model.plan.tracks
        if track.role != "idle"
    }
    s = model.storage
    if s.kind != "external":
        found[f"storage ({s.kind})"] = s.kvrocks_image if s.kind == "kvrocks" else s.redis_image
        found["storage exporter"] = s.exporter_image
    m = model.monitoring
    if m.enabled:
        found["blackbox exporter"] = m.images.blackbox_exporter
        if m.logs.enabled:
            found["log shipper"] = m.images.fluent_bit
        if m.traces.enabled:
            found["trace collector"] = m.images.otel_collector
    return found


def lifecycle_images(model: MoonTVSettings) -> dict[str, str]:
    """:func:`stack_images` plus what only Swarm runs (edge, its storage override, and its own
    Prometheus and Alertmanager)."""
    found = stack_images(model)
    if model.platform == "swarm":
        sw = model.swarm
        found["edge"] = sw.edge_image
        if sw.storage_image and model.storage.kind in ("kvrocks", "redis"):
            found[f"storage ({model.storage.kind})"] = sw.storage_image
        if model.monitoring.enabled:
            found["prometheus"] = model.monitoring.images.prometheus
            found["alertmanager"] = model.monitoring.images.alertmanager
    return found


def warnings(model: MoonTVSettings, today: date) -> list[str]:
    """One line per image of the stack that :func:`assess` flags."""
    return [f"{what}: {problem}" for what, ref in lifecycle_images(model).items()
            for problem in assess(ref, today)]
