"""tools/docker_archive.py writes what `docker save` writes: manifest, config, one layer."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile

from tests.conftest import ROOT

SCRIPT = ROOT / "tools" / "docker_archive.py"


def test_given_a_file_when_archived_then_manifest_config_and_layer_describe_one_image(tmp_path):
    payload = tmp_path / "hello"
    payload.write_bytes(b"#!/bin/sh\necho hi\n")
    out = tmp_path / "image.tar"

    subprocess.run([sys.executable, str(SCRIPT), str(out), "moontv.local/hello:1",
                    "--add", f"{payload}=/usr/bin/hello:750", "--user", "65534:65534",
                    "--cmd", "/usr/bin/hello", "--loud"], check=True)

    with tarfile.open(out) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert manifest[0]["RepoTags"] == ["moontv.local/hello:1"]
        config = json.load(archive.extractfile(manifest[0]["Config"]))  # type: ignore[arg-type]
        layer = archive.extractfile(manifest[0]["Layers"][0]).read()  # type: ignore[union-attr]
    assert config["config"]["Cmd"] == ["/usr/bin/hello", "--loud"]
    assert config["config"]["User"] == "65534:65534"
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    with tarfile.open(fileobj=io.BytesIO(layer)) as files:
        assert files.getnames() == ["usr", "usr/bin", "usr/bin/hello"]
        member = files.getmember("usr/bin/hello")
        assert member.mode == 0o750
        assert files.extractfile(member).read() == payload.read_bytes()  # type: ignore[union-attr]


def test_given_a_destination_without_a_leading_slash_when_archiving_then_it_says_what_is_accepted(
        tmp_path):
    payload = tmp_path / "f"
    payload.write_text("x")
    result = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "o.tar"), "a:1",
                             "--add", f"{payload}=relative"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "--add takes SRC=/DEST[:MODE]" in result.stderr
