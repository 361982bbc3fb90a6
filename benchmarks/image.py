"""Image rebuild figures: the app twin built cold by docker/Dockerfile, then rebuilt after a
one-line source change. Printed: build steps reused, bytes of the image reused and rebuilt
(raw and gzip, per layer as a registry stores them), cold and rebuild wall time, and the
compressed size of the image, its base and the app on top.

Uses the test images' Debian trixie Node 20 base (``tests/integration/images.py``) and the
local Docker engine (Debian's ``docker`` 20.10 client with its built-in BuildKit).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

from tests.integration import images


@dataclass(frozen=True)
class Layer:
    diff_id: str
    raw: int
    gzip: int


@dataclass(frozen=True)
class Build:
    ref: str
    seconds: float
    steps: list[tuple[str, str, bool]]  # (stage, instruction, cached)


def parse_steps(log: str) -> list[tuple[str, str, bool]]:
    """Dockerfile steps of a ``--progress=plain`` build (FROM lines left out), in order."""
    return [(s.stage, s.command, s.cached) for s in images.parse_steps(log)]


def _build(context: Path, dockerfile: Path, ref: str, *extra: str) -> Build:
    cmd = [
        images.DOCKER,
        "build",
        "--progress=plain",
        "-f",
        str(dockerfile),
        "--build-arg",
        f"BASE_IMAGE={images.BASE}",
        "--build-arg",
        "VERSION=0.0.0-bench",
        "-t",
        ref,
        *extra,
        str(context),
    ]
    start = time.perf_counter()
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
        env={**os.environ, "DOCKER_BUILDKIT": "1"},
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise images.ImageBuildError(f"docker build {ref} failed:\n{proc.stderr[-2000:]}")
    return Build(ref, seconds, parse_steps(proc.stdout + proc.stderr))


def layers(ref: str, workdir: Path) -> list[Layer]:
    """Every layer of ``ref`` in order, with its raw tar size and its gzip (level 6) size."""
    archive = workdir / "image.tar"
    subprocess.run(
        [images.DOCKER, "save", "-o", str(archive), ref],
        check=True,
        capture_output=True,
        timeout=600,
    )
    diff_ids = json.loads(
        subprocess.run(
            [images.DOCKER, "image", "inspect", "--format", "{{json .RootFS.Layers}}", ref],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    )
    out = []
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        for diff_id, name in zip(diff_ids, manifest[0]["Layers"], strict=True):
            member = tar.extractfile(name)
            assert member is not None
            raw = gz = 0
            compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # gzip framing, as registries
            while chunk := member.read(1 << 20):
                raw += len(chunk)
                gz += len(compressor.compress(chunk))
            gz += len(compressor.flush())
            out.append(Layer(diff_id, raw, gz))
    archive.unlink()
    return out


def _mb(n: int) -> str:
    return f"{n / 1e6:7.2f} MB" if n >= 1e6 else f"{n / 1e3:7.1f} kB"


def image_figures(dockerfile: Path = images.DOCKERFILE) -> None:
    inside = dockerfile.is_relative_to(images.REPO)
    shown = dockerfile.relative_to(images.REPO) if inside else dockerfile
    print(f"\nimage: app twin built by {shown} on the Debian trixie Node 20 base")
    try:
        images.ensure_engine()
        images.build_base()
    except images.ImageBuildError as err:
        print(f"  skipped: {err}")
        return
    run = uuid.uuid4().hex[:10]
    cold_ref, warm_ref = f"moontv-bench/twin-{run}:cold", f"moontv-bench/twin-{run}:rebuild"
    with tempfile.TemporaryDirectory() as tmp:
        context = Path(tmp) / "app"
        shutil.copytree(
            images.APP_FIXTURE, context, ignore=shutil.ignore_patterns("node_modules", ".next")
        )
        try:
            cold = _build(context, dockerfile, cold_ref, "--no-cache")
            app = context / "src" / "app" / "page.js"
            app.write_text(app.read_text() + f"// one-line source change {run}\n")
            warm = _build(context, dockerfile, warm_ref)
            base = layers(images.BASE, Path(tmp))
            before = {layer.diff_id for layer in layers(cold_ref, Path(tmp))}
            after = layers(warm_ref, Path(tmp))
        finally:
            subprocess.run(
                [images.DOCKER, "rmi", "-f", cold_ref, warm_ref], capture_output=True, check=False
            )
    hits = sum(cached for _, _, cached in warm.steps)
    print(
        f"  cold build (--no-cache) {cold.seconds:6.1f} s;  rebuild after a one-line source "
        f"change {warm.seconds:6.1f} s ({warm.seconds / cold.seconds:.2f}x cold)"
    )
    print(f"  steps reused by the rebuild: {hits}/{len(warm.steps)}")
    for stage, cmd, cached in warm.steps:
        print(f"    {'CACHED' if cached else 'built '} [{stage}] {cmd[:72]}")
    app_layers = after[len(base) :]
    reused = [layer for layer in app_layers if layer.diff_id in before]
    rebuilt = [layer for layer in app_layers if layer.diff_id not in before]
    total_raw = sum(layer.raw for layer in after)
    total_gz = sum(layer.gzip for layer in after)
    base_raw, base_gz = sum(x.raw for x in base), sum(x.gzip for x in base)
    print(f"  layers on the base: {len(app_layers)}, reused {len(reused)}, rebuilt {len(rebuilt)}")
    print(f"  {'':28} {'raw':>10} {'gzip':>10}")
    print(
        f"  {'app layers reused':28} {_mb(sum(x.raw for x in reused))} "
        f"{_mb(sum(x.gzip for x in reused))}"
    )
    print(
        f"  {'app layers rebuilt (pushed)':28} {_mb(sum(x.raw for x in rebuilt))} "
        f"{_mb(sum(x.gzip for x in rebuilt))}"
    )
    print(f"  {'base image':28} {_mb(base_raw)} {_mb(base_gz)}")
    app_gz = sum(x.gzip for x in app_layers)
    print(f"  {'whole image':28} {_mb(total_raw)} {_mb(total_gz)}")
    print(
        f"  a source-only change rebuilds {sum(x.gzip for x in rebuilt) / app_gz:.1%} of the "
        f"app's gzip bytes ({sum(x.gzip for x in rebuilt) / total_gz:.2%} of the image's)"
    )


if __name__ == "__main__":
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m benchmarks.image", description=__doc__)
    parser.add_argument(
        "--dockerfile",
        type=Path,
        default=images.DOCKERFILE,
        help="the Dockerfile to measure (default docker/Dockerfile)",
    )
    image_figures(parser.parse_args(sys.argv[1:]).dockerfile.resolve())
