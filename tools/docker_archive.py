#!/usr/bin/env python3
"""Write a single-layer image as a docker-archive tarball (what `docker save` writes).

    python3 tools/docker_archive.py OUT.tar NAME:TAG --add SRC=DEST[:MODE] ... [--cmd ARG ...]

The layer holds the given files (and their parent directories); the image config names
linux/amd64, the command and, optionally, a user. `ctr images import` and `docker load` read it.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path, PurePosixPath

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _layer(files: list[tuple[Path, str, int]]) -> bytes:
    buf = io.BytesIO()
    dirs: set[str] = set()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for src, dest, mode in files:
            parts = PurePosixPath(dest.lstrip("/")).parts
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            data = src.read_bytes()
            info = tarfile.TarInfo("/".join(parts))
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def write(out: Path, ref: str, files: list[tuple[Path, str, int]], cmd: list[str],
          user: str | None = None) -> None:
    layer = _layer(files)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config: dict[str, object] = {
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": cmd, "Env": [f"PATH={PATH}"], **({"User": user} if user else {})},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "tools/docker_archive.py"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_name = diff_id.removeprefix("sha256:") + "/layer.tar"
    name, _, tag = ref.rpartition(":")
    manifest = [{"Config": config_name, "RepoTags": [ref], "Layers": [layer_name]}]
    with tarfile.open(out, mode="w") as tar:
        for member, data in ((config_name, config_bytes), (layer_name, layer),
                             ("manifest.json", json.dumps(manifest).encode()),
                             ("repositories", json.dumps({name: {tag: diff_id[7:]}}).encode())):
            info = tarfile.TarInfo(member)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the tarball to write")
    parser.add_argument("ref", help="the image reference, NAME:TAG")
    parser.add_argument("--add", action="append", default=[], metavar="SRC=DEST[:MODE]",
                        help="a file to put into the layer (MODE octal, default 755)")
    parser.add_argument("--user", help="the image's user (e.g. 65534:65534)")
    parser.add_argument("--cmd", nargs=argparse.REMAINDER, default=[],
                        help="the image command (the rest of the arguments)")
    args = parser.parse_args(argv)
    if ":" not in args.ref.rsplit("/", 1)[-1]:
        parser.error(f"ref must be NAME:TAG, got '{args.ref}'")
    files = []
    for spec in args.add:
        src, sep, dest = spec.partition("=")
        if not sep or not dest.startswith("/"):
            parser.error(f"--add takes SRC=/DEST[:MODE], got '{spec}'")
        dest, _, mode = dest.partition(":")
        if not Path(src).is_file():
            parser.error(f"--add: no file '{src}'")
        files.append((Path(src), dest, int(mode or "755", 8)))
    if not files:
        parser.error("give at least one --add SRC=/DEST")
    write(args.out, args.ref, files, args.cmd, args.user)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
