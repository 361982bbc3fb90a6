"""The app pods' `copy-public` init container, run as the app user into a root-owned emptyDir."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.conftest import skip_or_fail
from tests.program import run_stack

pytestmark = pytest.mark.integration
UID = 1001
#: What the real image's /app/public holds (LunaTV 100.1.2): a service worker, icons, a manifest.
FILES = {"sw.js": b"self.addEventListener('fetch', () => {});\n",
         "manifest.json": b'{"name": "MoonTV"}\n',
         "icons/icon-192x192.png": b"\x89PNG\r\n\x1a\n-192",
         "icons/icon-512x512.png": b"\x89PNG\r\n\x1a\n-512",
         "robots.txt": b"User-agent: *\n"}


@pytest.fixture
def work():
    """A directory the app user can traverse (pytest's own tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="moontv-copy-public-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def as_app_user():
    if os.geteuid() != 0 or not shutil.which("setpriv") or not shutil.which("node"):
        skip_or_fail("needs root, setpriv and node to run a command as uid 1001")

    def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", *command],
            cwd=cwd, capture_output=True, text=True, timeout=60, check=False)

    return run


def image_and_volume(base: Path) -> tuple[Path, Path]:
    """The image's /app/public (owned by the app user, a read-only icons directory) and a fresh
    emptyDir (root-owned, mode 0777, as the kubelet makes it)."""
    public, seed = base / "public", base / "seed"
    for name, content in FILES.items():
        (public / name).parent.mkdir(parents=True, exist_ok=True)
        (public / name).write_bytes(content)
    for path in [public, *public.rglob("*")]:
        os.chown(path, UID, UID)
    (public / "icons").chmod(0o555)
    seed.mkdir()
    seed.chmod(0o777)
    return public, seed


def rendered_command(public: Path, seed: Path) -> list[str]:
    """The init container's command as the program renders it, with this test's paths."""
    deployment = next(d for d in run_stack("dev").kind("Deployment")
                      if d.inputs["metadata"]["name"] == "moontv-stable")
    init = deployment.inputs["spec"]["template"]["spec"]["initContainers"][0]
    assert init["name"] == "copy-public"
    paths = {"/app/public": str(public), "/seed": str(seed)}
    return [paths.get(part, part) for part in init["command"]]


def test_given_a_root_owned_empty_dir_then_cp_a_fails_as_the_app_user(work, as_app_user):
    public, seed = image_and_volume(work)
    old = as_app_user(["cp", "-a", f"{public}/.", f"{seed}/"], work)
    assert old.returncode != 0 and "preserving times" in old.stderr, old.stderr


def test_copy_public_fills_the_volume_and_leaves_the_manifest_writable(work, as_app_user):
    public, seed = image_and_volume(work)
    command = rendered_command(public, seed)
    first = as_app_user(command, work)
    assert first.returncode == 0, first.stderr
    assert {str(p.relative_to(seed)): p.read_bytes()
            for p in seed.rglob("*") if p.is_file()} == FILES
    assert all(p.stat().st_uid == UID for p in seed.rglob("*"))
    # start.js rewrites the manifest as the app user
    write = as_app_user(["node", "-e", "require('fs').writeFileSync(process.argv[1], '{}')",
                         str(seed / "manifest.json")], work)
    assert write.returncode == 0, write.stderr
    # a re-run (the pod's sandbox restarted, the emptyDir kept) overwrites and succeeds
    again = as_app_user(command, work)
    assert again.returncode == 0, again.stderr
    assert (seed / "manifest.json").read_bytes() == FILES["manifest.json"]
