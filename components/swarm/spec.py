"""Pure description of the MoonTV Swarm stack (no Pulumi).

:func:`stack_services` turns a :class:`SwarmSpec` into :class:`ServiceSpec` records - one per
release track, the storage service, the Traefik edge and the edge-config service. The Pulumi
component (:mod:`components.swarm.component`) and the compose renderer
(:mod:`components.swarm.compose`) both render these records, so the two stay identical.

Secrets and configs are referenced by a logical *key* (``owner-password``, ``site-env``, …).
Swarm secrets and configs are immutable, so their real names carry a digest of their content
(:func:`object_name`, :func:`secret_name`): a changed value becomes a new object and the
services using it update.

How the app gets its settings and secrets: the MoonTV image reads ``PASSWORD`` and
``KVROCKS_URL`` / ``REDIS_URL`` from the environment, while Swarm mounts secrets as files. The app
task therefore starts through a small entrypoint script (delivered as a config,
:data:`ENTRYPOINT_SCRIPT`): it exports the ``NAME=VALUE`` arguments before ``--``, waits for the
storage service (with ``node``, the one tool every MoonTV image has), sources the non-secret
``site.env`` config, exports each secret file named in ``MOONTV_SECRET_ENV`` into its variable
and ``exec``s the image's command. The settings are arguments, not a service environment,
because the docker provider sends an environment map to Swarm in random order, and Swarm
restarts every task whose environment order changed.

Durations are kept in the short form the docker provider reads back from Swarm (``1m``, not
``60s``; see :func:`duration`), so a second ``pulumi up`` finds nothing to change.
"""

from __future__ import annotations

import functools
import hashlib
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote

from components import app_facts, image_defaults, naming
from components.release import ReleasePlan, image_ref
from components.swarm import traefik

StorageKind = Literal["kvrocks", "redis", "external"]
StorageType = Literal["kvrocks", "redis"]

MIB = 1024 * 1024
#: measured on a single-node Swarm: removing a task container attached to an overlay network
#: takes up to ~6 s; Traefik needs up to 15 s to stop (requestAcceptGraceTimeout 5 s plus its
#: default graceTimeOut 10 s). The docker provider waits at most the stop grace period for a
#: removed service's containers, so every grace period leaves room for both.
STOP_GRACE = "15s"
EDGE_STOP_GRACE = "30s"
SECRETS_DIR = "/run/secrets"
CONFIG_DIR = "/moontv"

OWNER_PASSWORD = "owner-password"
STORAGE_URL = "storage-url"
STORAGE_CONFIG = "storage-config"
ENTRYPOINT = "entrypoint"
SITE_ENV = "site-env"
EDGE_DYNAMIC = "edge-dynamic"
STORAGE_DATA = "storage-data"
NETWORK = "net"

SITE_ENV_KEYS = re.compile(r"NEXT_PUBLIC_[A-Z0-9_]+|ANNOUNCEMENT")
_STACK = re.compile(r"[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?")
_PASSWORD = re.compile(r"[A-Za-z0-9_.~-]{8,128}")

#: Waits until ``host:port`` (argv 1) accepts a TCP connection, for at most argv 2 seconds.
STORAGE_WAIT_JS = """\
const net = require("net");
const target = process.argv[1];
const limit = Number(process.argv[2]) * 1000;
const cut = target.lastIndexOf(":");
const host = target.slice(0, cut);
const port = Number(target.slice(cut + 1));
const start = Date.now();
function attempt() {
  const socket = net.connect({ host, port });
  let settled = false;
  const retry = () => {
    if (settled) return;
    settled = true;
    socket.destroy();
    if (Date.now() - start >= limit) {
      const waited = limit / 1000;
      console.error("entrypoint: storage " + target + " not reachable after " + waited + " s");
      process.exit(1);
    }
    setTimeout(attempt, 1000);
  };
  socket.setTimeout(2000, retry);
  socket.once("error", retry);
  socket.once("connect", () => { settled = true; socket.destroy(); process.exit(0); });
}
attempt();
"""

#: The entrypoint's own settings: it reads them and unsets them, so the app never sees them.
WRAPPER_SETTINGS = ("MOONTV_SECRET_ENV", "MOONTV_WAIT_FOR", "MOONTV_WAIT_SECONDS")

ENTRYPOINT_SCRIPT = f"""\
#!/bin/sh
# Start MoonTV on Swarm.  Usage: entrypoint.sh [NAME=VALUE ...] -- COMMAND [ARG ...]
# Exports the settings, waits for storage, loads site settings, exports secret files, execs.
set -eu
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
  case "$1" in
    *=*) export "$1" ;;
    *) echo "entrypoint: expected NAME=VALUE or --, got '$1'" >&2; exit 2 ;;
  esac
  shift
done
if [ "$#" -gt 0 ]; then shift; fi
if [ "$#" -eq 0 ]; then echo "entrypoint: no command after --" >&2; exit 2; fi
if [ -n "${{MOONTV_WAIT_FOR:-}}" ]; then
  if ! command -v node >/dev/null 2>&1; then
    echo "entrypoint: node not found on PATH (needed to wait for $MOONTV_WAIT_FOR)" >&2; exit 1
  fi
  node -e '{STORAGE_WAIT_JS}' "$MOONTV_WAIT_FOR" "${{MOONTV_WAIT_SECONDS:-120}}"
fi
if [ -r {CONFIG_DIR}/site.env ]; then . {CONFIG_DIR}/site.env; fi
for pair in ${{MOONTV_SECRET_ENV:-}}; do
  name="${{pair%%=*}}"; file="${{pair#*=}}"
  if [ ! -r "$file" ]; then echo "entrypoint: secret file for $name is missing" >&2; exit 1; fi
  value="$(cat "$file")"
  export "$name=$value"
done
unset pair name file value {" ".join(WRAPPER_SETTINGS)}
exec "$@"
"""

EDGE_CONFIG_SCRIPT = f"""\
set -eu
cp {CONFIG_DIR}/dynamic.yml {traefik.DYNAMIC_DIR}/.dynamic.yml.new
mv {traefik.DYNAMIC_DIR}/.dynamic.yml.new {traefik.DYNAMIC_FILE}
echo "edge routing installed: $(sha256sum {traefik.DYNAMIC_FILE})"
trap 'exit 0' TERM INT
while :; do sleep 3600 & wait $!; done
"""

EDGE_START_SCRIPT = f"""\
until [ -s {traefik.DYNAMIC_FILE} ]; do echo "waiting for {traefik.DYNAMIC_FILE}"; sleep 1; done
exec traefik "$@"
"""


_GO_DURATION = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?(?:ns|us|µs|ms|s|m|h))+")
_GO_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?)(ns|us|µs|ms|s|m|h)")
_NANOS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9,
          "h": 3600 * 10**9}


def _fraction(value: int, unit: int) -> str:
    whole, rest = divmod(value, unit)
    digits = f"{rest:0{len(str(unit)) - 1}d}".rstrip("0") if rest else ""
    return f"{whole}.{digits}" if digits else str(whole)


def duration(text: str) -> str:
    """``text`` (a Go duration such as ``60s``) in the form the docker provider reads back.

    The provider stores what Swarm returns, formatted by Go's ``time.Duration.String`` with a
    trailing ``0s`` / ``0m`` cut (``60s`` -> ``1m``, ``3600s`` -> ``1h``, ``90s`` -> ``1m30s``).
    Sending that form makes a second ``pulumi up`` a no-op.
    """
    if not isinstance(text, str) or not _GO_DURATION.fullmatch(text):
        raise ValueError(f"duration: must look like 10s, 500ms, 1m30s or 1h, got {text!r}")
    nanos = 0
    for number, unit in _GO_PART.findall(text):
        whole, _, frac = number.partition(".")
        nanos += int(whole) * _NANOS[unit]
        if frac:
            nanos += int(frac) * _NANOS[unit] // 10 ** len(frac)
    if nanos == 0:
        return "0s"
    if nanos < 10**9:
        for unit, size in (("ms", 10**6), ("µs", 10**3), ("ns", 1)):
            if nanos >= size:
                return f"{_fraction(nanos, size)}{unit}"
    hours, rest = divmod(nanos, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    out = f"{hours}h" if hours else ""
    out += f"{minutes}m" if hours or minutes else ""
    out += f"{_fraction(rest, 10**9)}s"
    for suffix in ("m0s", "h0m"):  # the provider's shortDur
        if out.endswith(suffix):
            out = out[:-2]
    return out


def _canonical(obj: object, *names: str) -> None:
    for name in names:
        object.__setattr__(obj, name, duration(getattr(obj, name)))


@dataclass(frozen=True)
class Resources:
    """CPU (cores) and memory (MiB) limits and reservations of one app task."""

    cpu_limit: float = 1.0
    memory_limit_mib: int = 768
    cpu_reservation: float = 0.1
    memory_reservation_mib: int = 256


@dataclass(frozen=True)
class SwarmSpec:
    """Everything about the stack that is not a secret value or a provider."""

    stack: str  # name prefix of every Swarm object, e.g. "moontv-dev"
    image_repository: str  # e.g. "ghcr.io/moontechlab/lunatv"
    plan: ReleasePlan
    host: str  # public host name routed by the edge; preview is "preview.<host>"
    owner_username: str = "admin"
    site_env: Mapping[str, str] = field(default_factory=dict)  # NEXT_PUBLIC_* / ANNOUNCEMENT
    storage_kind: StorageKind = "kvrocks"
    storage_external_type: StorageType = "redis"  # protocol of the external URL
    storage_image: str = image_defaults.KVROCKS
    resources: Resources = Resources()
    edge_image: str = image_defaults.TRAEFIK
    http_port: int = 80  # published in host mode on the edge node
    app_command: tuple[str, ...] = ("node", "start.js")
    constraints: tuple[str, ...] = ()  # placement of app and storage tasks
    edge_constraints: tuple[str, ...] = ("node.role == manager",)
    health_interval: str = "10s"

    def __post_init__(self) -> None:
        problems = []
        try:
            _canonical(self, "health_interval")
        except ValueError as exc:
            problems.append(f"healthInterval: {exc}")
        if not _STACK.fullmatch(self.stack):
            problems.append(
                f"stack: must be 1-40 lower-case letters, digits or '-', got {self.stack!r}"
            )
        if not isinstance(self.http_port, int) or not 1 <= self.http_port <= 65535:
            problems.append(f"httpPort: must be an integer 1..65535, got {self.http_port!r}")
        if self.storage_kind not in ("kvrocks", "redis", "external"):
            problems.append(
                f"storage kind: must be kvrocks, redis or external, got {self.storage_kind!r}"
            )
        bad = sorted(k for k in self.site_env if not SITE_ENV_KEYS.fullmatch(k))
        if bad:
            problems.append(
                f"site env: only NEXT_PUBLIC_* and ANNOUNCEMENT are accepted, got {', '.join(bad)}"
            )
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def storage_type(self) -> StorageType:
        """The ``NEXT_PUBLIC_STORAGE_TYPE`` of the app."""
        if self.storage_kind == "external":
            return self.storage_external_type
        return self.storage_kind


@dataclass(frozen=True)
class FileRef:
    """A secret or config (by logical key) mounted into a task."""

    key: str
    target: str  # secrets: file name under /run/secrets; configs: absolute path
    uid: str = "0"
    gid: str = "0"
    mode: int = 0o444


@dataclass(frozen=True)
class Mount:
    """A volume of the stack (logical key), an anonymous volume (``volume=None``: a fresh one per
    task, filled by Docker from the image's files at ``target``) or a ``tmpfs``."""

    volume: str | None
    target: str
    read_only: bool = False
    kind: Literal["volume", "tmpfs"] = "volume"


@dataclass(frozen=True)
class Healthcheck:
    test: tuple[str, ...]  # ("CMD", …) or ("CMD-SHELL", "…")
    interval: str = "10s"
    timeout: str = "5s"
    retries: int = 3
    start_period: str = "0s"

    def __post_init__(self) -> None:
        _canonical(self, "interval", "timeout", "start_period")


@dataclass(frozen=True)
class UpdatePolicy:
    order: Literal["start-first", "stop-first"]
    failure_action: Literal["rollback", "pause", "continue"]
    parallelism: int = 1
    delay: str = "5s"
    monitor: str = "30s"
    max_failure_ratio: str = "0.0"

    def __post_init__(self) -> None:
        _canonical(self, "delay", "monitor")
        # the provider reads the ratio back with one decimal
        object.__setattr__(self, "max_failure_ratio", f"{float(self.max_failure_ratio):.1f}")


@dataclass(frozen=True)
class RestartPolicy:
    condition: Literal["any", "on-failure", "none"] = "any"
    delay: str = "5s"
    max_attempts: int = 0
    window: str = "1m"

    def __post_init__(self) -> None:
        _canonical(self, "delay", "window")


@dataclass(frozen=True)
class ServiceSpec:
    key: str  # short name inside the stack ("stable", "kvrocks", "edge", …)
    alias: str  # DNS name on the stack network
    component: str  # app.kubernetes.io/component
    image: str
    replicas: int
    healthcheck: Healthcheck
    update: UpdatePolicy
    rollback: UpdatePolicy
    entrypoint: tuple[str, ...] | None = None
    args: tuple[str, ...] | None = None
    # no environment: the docker provider would send it to Swarm in random order (see above)
    secrets: tuple[FileRef, ...] = ()
    configs: tuple[FileRef, ...] = ()
    mounts: tuple[Mount, ...] = ()
    published: tuple[tuple[int, int], ...] = ()  # (published, target), host mode
    restart: RestartPolicy = RestartPolicy()
    resources: Resources | None = None
    constraints: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    stop_grace_period: str = "30s"
    depends_on: tuple[str, ...] = ()  # keys of services this one needs first
    read_only: bool = True  # root filesystem; writable paths are mounts

    def __post_init__(self) -> None:
        _canonical(self, "stop_grace_period")


def object_name(stack: str, key: str, content: str) -> str:
    """Name of an immutable Swarm config: ``<stack>-<key>-<content hash>``."""
    return f"{stack}-{key}-{traefik.content_hash(content)}"


@functools.lru_cache(maxsize=32)
def secret_name(stack: str, key: str, value: str) -> str:
    """Name of an immutable Swarm secret: ``<stack>-<key>-<fingerprint of the value>``.

    The name is not secret (``docker secret ls``, Pulumi state), so the fingerprint is a
    salted, deliberately slow scrypt digest truncated to 48 bits rather than a plain hash a
    reader could test password guesses against cheaply.
    """
    digest = hashlib.scrypt(
        value.encode(), salt=f"moontv-swarm-secret:{stack}:{key}".encode(),
        n=2**14, r=8, p=1, dklen=6,
    )
    return f"{stack}-{key}-{digest.hex()}"


def storage_alias(spec: SwarmSpec) -> str:
    return naming.resource_name(naming.APP, spec.storage_kind)


def storage_url(spec: SwarmSpec, password: str) -> str:
    """The URL the app uses for the in-stack storage service."""
    _check_password(password)
    port = app_facts.STORAGE_PORTS[spec.storage_kind]
    return f"redis://:{quote(password, safe='')}@{storage_alias(spec)}:{port}"


def storage_config(password: str) -> str:
    """Kvrocks/Redis config fragment holding the password (mounted as a secret file)."""
    _check_password(password)
    return f"requirepass {password}\n"


def _check_password(password: str) -> None:
    if not _PASSWORD.fullmatch(password):
        raise ValueError(
            "storage password: must be 8-128 characters of letters, digits, '-', '_', '.' or '~'"
        )


def site_env_file(spec: SwarmSpec) -> str:
    """Non-secret app settings as a shell file the entrypoint sources (values shell-quoted)."""
    env = {
        app_facts.USERNAME_ENV: spec.owner_username,
        app_facts.STORAGE_TYPE_ENV: spec.storage_type,
        **dict(spec.site_env),
    }
    lines = [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())]
    return "\n".join(lines) + "\n"


def config_contents(spec: SwarmSpec) -> dict[str, str]:
    """Contents of every (non-secret) Swarm config of the stack, by logical key."""
    dynamic = traefik.render(traefik.dynamic_config(spec.plan.routes(spec.host)))
    return {ENTRYPOINT: ENTRYPOINT_SCRIPT, SITE_ENV: site_env_file(spec), EDGE_DYNAMIC: dynamic}


def secret_contents(
    spec: SwarmSpec,
    owner_password: str,
    storage_password: str | None = None,
    external_url: str | None = None,
) -> dict[str, str]:
    """Contents of every Swarm secret of the stack, by logical key (plain values: keep secret)."""
    if not owner_password:
        raise ValueError("owner password: must not be empty")
    if spec.storage_kind == "external":
        if not external_url:
            raise ValueError("storage URL: required when the storage kind is 'external'")
        return {OWNER_PASSWORD: owner_password, STORAGE_URL: external_url}
    if not storage_password:
        raise ValueError(f"storage password: required for storage kind '{spec.storage_kind}'")
    return {
        OWNER_PASSWORD: owner_password,
        STORAGE_URL: storage_url(spec, storage_password),
        STORAGE_CONFIG: storage_config(storage_password),
    }


def volume_keys(spec: SwarmSpec) -> tuple[str, ...]:
    data = () if spec.storage_kind == "external" else (STORAGE_DATA,)
    return (*data, EDGE_DYNAMIC)


def _app_update() -> UpdatePolicy:
    return UpdatePolicy(order="start-first", failure_action="rollback")


def _app_rollback() -> UpdatePolicy:
    return UpdatePolicy(order="start-first", failure_action="pause", delay="0s")


def track_images(spec: SwarmSpec) -> dict[str, tuple[str, str]]:
    """``track -> (version, image reference)``: the one place a track's image is chosen."""
    return {t.name: (t.version, image_ref(spec.image_repository, t.version))
            for t in spec.plan.tracks}


def login_probe(port: int) -> str:
    """Node one-liner: exit 0 when ``GET /login`` on ``port`` answers below 400 (the image's own
    HEALTHCHECK does the same), 1 on an error status, a refused connection or 4 s of silence."""
    return (
        f'require("http").get({{host: "127.0.0.1", port: {port}, path: "{app_facts.PROBE_PATH}", '
        "timeout: 4000}, "
        '(r) => process.exit(r.statusCode < 400 ? 0 : 1))'
        '.on("timeout", () => process.exit(1)).on("error", () => process.exit(1))'
    )


def app_settings(spec: SwarmSpec) -> tuple[tuple[str, str], ...]:
    """The app task's settings, in the order the entrypoint exports them: the ones the app
    reads, then the wrapper's own (:data:`WRAPPER_SETTINGS`, unset before the app starts).
    Track and version are service and container labels, never settings: the app reads neither."""
    url_var = app_facts.URL_VARIABLES[spec.storage_type]
    password = app_facts.PASSWORD_ENV
    secret_env = f"{password}={SECRETS_DIR}/{OWNER_PASSWORD} {url_var}={SECRETS_DIR}/{STORAGE_URL}"
    settings = [
        *app_facts.LISTEN_ENV.items(),
        ("MOONTV_SECRET_ENV", secret_env),
    ]
    if spec.storage_kind != "external":
        port = app_facts.STORAGE_PORTS[spec.storage_kind]
        settings.append(("MOONTV_WAIT_FOR", f"{storage_alias(spec)}:{port}"))
    return tuple(settings)


def app_mounts() -> tuple[Mount, ...]:
    """Writable paths of the app under a read-only root: the public directory is a fresh
    anonymous volume per task, which Docker fills from the image (``start.js`` writes
    ``manifest.json`` next to the icons and ``sw.js``); the other writable paths are tmpfs, as
    emptyDirs on Kubernetes."""
    scratch = sorted(p for p in app_facts.WRITABLE_PATHS.values() if p != app_facts.PUBLIC_DIR)
    return (Mount(None, app_facts.PUBLIC_DIR), *(Mount(None, p, kind="tmpfs") for p in scratch))


def app_service(spec: SwarmSpec, track_name: str) -> ServiceSpec:
    track = next(t for t in spec.plan.tracks if t.name == track_name)
    depends = () if spec.storage_kind == "external" else (spec.storage_kind,)
    settings = tuple(f"{k}={v}" for k, v in app_settings(spec))
    return ServiceSpec(
        key=track.name,
        alias=naming.track_name(track.name),
        component="app",
        image=track_images(spec)[track.name][1],
        replicas=track.replicas,
        healthcheck=Healthcheck(
            test=("CMD", "node", "-e", login_probe(app_facts.PORT)),
            interval=spec.health_interval,
            start_period="60s",
        ),
        update=_app_update(),
        rollback=_app_rollback(),
        entrypoint=("/bin/sh", f"{CONFIG_DIR}/entrypoint.sh"),
        args=(*settings, "--", *spec.app_command),
        secrets=(
            FileRef(OWNER_PASSWORD, OWNER_PASSWORD, str(app_facts.UID), str(app_facts.GID), 0o400),
            FileRef(STORAGE_URL, STORAGE_URL, str(app_facts.UID), str(app_facts.GID), 0o400),
        ),
        configs=(
            FileRef(ENTRYPOINT, f"{CONFIG_DIR}/entrypoint.sh", mode=0o555),
            FileRef(SITE_ENV, f"{CONFIG_DIR}/site.env", mode=0o444),
        ),
        mounts=app_mounts(),
        resources=spec.resources,
        constraints=spec.constraints,
        labels=naming.labels(spec.stack, "app", track.version, track.name),
        depends_on=depends,
    )


def storage_service(spec: SwarmSpec) -> ServiceSpec:
    kind = spec.storage_kind
    port = app_facts.STORAGE_PORTS[kind]
    data_dir = app_facts.STORAGE_DATA_DIRS[kind]
    conf = f"{SECRETS_DIR}/{STORAGE_CONFIG}"
    entrypoint: tuple[str, ...] | None
    if kind == "kvrocks":
        entrypoint = ("kvrocks", "-c", conf, "--dir", data_dir, "--bind", "0.0.0.0")
        args: tuple[str, ...] = ("--port", str(port))
    else:  # redis: keep the image's entrypoint (it drops privileges), append-only file on
        entrypoint = None
        args = ("redis-server", conf, "--appendonly", "yes", "--dir", data_dir,
                "--port", str(port))
    stop_first = UpdatePolicy(order="stop-first", failure_action="rollback", delay="0s")
    return ServiceSpec(
        key=kind,
        alias=storage_alias(spec),
        component="storage",
        image=spec.storage_image,
        replicas=1,
        healthcheck=Healthcheck(
            test=("CMD-SHELL", f"redis-cli -p {port} PING | grep -qE 'PONG|NOAUTH'"),
            interval=spec.health_interval,
            start_period="30s",
        ),
        update=stop_first,  # one writer per data directory
        rollback=UpdatePolicy(order="stop-first", failure_action="pause", delay="0s"),
        entrypoint=entrypoint,
        args=args,
        secrets=(FileRef(STORAGE_CONFIG, STORAGE_CONFIG),),
        mounts=(Mount(STORAGE_DATA, data_dir), Mount(None, "/tmp", kind="tmpfs")),
        constraints=spec.constraints,
        labels=naming.labels(spec.stack, "storage"),
        stop_grace_period="30s",  # let it flush its data
    )


def edge_config_service(spec: SwarmSpec) -> ServiceSpec:
    """Installs the current dynamic config into the volume Traefik's file provider watches.

    Traefik publishes its port in host mode, so replacing the Traefik task would drop traffic.
    Instead each routing change replaces this small task (start-first), which renames the new
    file into place; Traefik reloads it without restarting.
    """
    return ServiceSpec(
        key="edge-config",
        alias=naming.resource_name(naming.APP, "edge-config"),
        component="edge-config",
        image=spec.edge_image,
        replicas=1,
        healthcheck=Healthcheck(
            test=("CMD", "test", "-s", traefik.DYNAMIC_FILE),
            interval="2s",
            retries=3,
        ),
        update=UpdatePolicy(order="start-first", failure_action="rollback", delay="0s",
                            monitor="5s"),
        rollback=UpdatePolicy(order="start-first", failure_action="pause", delay="0s"),
        entrypoint=("/bin/sh", "-c", EDGE_CONFIG_SCRIPT),
        configs=(FileRef(EDGE_DYNAMIC, f"{CONFIG_DIR}/dynamic.yml"),),
        mounts=(Mount(EDGE_DYNAMIC, traefik.DYNAMIC_DIR),),
        constraints=spec.edge_constraints,
        labels=naming.labels(spec.stack, "edge-config"),
        stop_grace_period=STOP_GRACE,
    )


def edge_service(spec: SwarmSpec) -> ServiceSpec:
    return ServiceSpec(
        key="edge",
        alias=naming.resource_name(naming.APP, "edge"),
        component="edge",
        image=spec.edge_image,
        replicas=1,
        healthcheck=Healthcheck(
            test=("CMD", *traefik.healthcheck_command()), interval=spec.health_interval
        ),
        # a host-mode port cannot be bound twice on a node: replace the task stop-first
        update=UpdatePolicy(order="stop-first", failure_action="rollback", delay="0s"),
        rollback=UpdatePolicy(order="stop-first", failure_action="pause", delay="0s"),
        entrypoint=("/bin/sh", "-c", EDGE_START_SCRIPT, "traefik"),
        args=tuple(traefik.static_args()),
        mounts=(
            Mount(EDGE_DYNAMIC, traefik.DYNAMIC_DIR, read_only=True),
            Mount(None, "/tmp", kind="tmpfs"),
        ),
        published=((spec.http_port, traefik.EDGE_PORT),),
        constraints=spec.edge_constraints,
        labels=naming.labels(spec.stack, "edge"),
        stop_grace_period=EDGE_STOP_GRACE,
        depends_on=("edge-config",),
    )


def stack_services(spec: SwarmSpec) -> tuple[ServiceSpec, ...]:
    """Every service of the stack: storage first, then one per track, then the edge."""
    storage = () if spec.storage_kind == "external" else (storage_service(spec),)
    apps = tuple(app_service(spec, t.name) for t in spec.plan.tracks)
    return (*storage, *apps, edge_config_service(spec), edge_service(spec))
