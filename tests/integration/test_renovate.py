"""Renovate manages every pin of the repository (renovate.json), checked with Renovate itself.

Renovate (pinned in tools/renovate.sh, installed from the npm registry into a cache) runs
offline: ``renovate-config-validator`` on renovate.json, then an extract-only dry run on the
local repository (``--platform=local --dry-run=extract``, JSON logs) inside a network namespace
of its own, so it cannot reach any network (it only extracts; there is nothing to look up).
What it extracted is compared with a grep of the repository for every pinned image, action,
Go module version and Python requirement: a pin that no manager extracts fails the test, and a
repository copy with one unmanaged pin added shows that it does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.conftest import ROOT, skip_or_fail

RENOVATE = ROOT / "tools" / "renovate.sh"

#: Pins deliberately left to people, with the reason (nothing else may be unmanaged).
UNMANAGED = {
    ("tools/toolchain.sh", "4.0.0-20260115033456-f47bc2d6f199"):
        "KUBERNETES_PROVIDER_FALLBACK: the only pseudo-version of the provider module the Go "
        "module proxy serves, used only when the pinned provider is not served",
}

Pin = tuple[str, str, str]  # (file, name, version or digest)


def _renovate(*args: str, cwd: Path, env: dict[str, str] | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run tools/renovate.sh in a fresh network namespace (no interface but a down loopback)."""
    return subprocess.run(
        ["unshare", "--net", "bash", str(RENOVATE), *args], cwd=cwd, capture_output=True,
        text=True, timeout=timeout, check=False, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def renovate_ready() -> None:
    if shutil.which("unshare") is None or shutil.which("git") is None:
        skip_or_fail("unshare or git missing (util-linux, git)")
    install = subprocess.run(["bash", str(RENOVATE), "--install"], capture_output=True,
                             text=True, timeout=900, check=False)
    if install.returncode != 0:
        skip_or_fail(f"Renovate could not be installed: {install.stderr.strip()[-400:]}")
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True,
                           check=False)
    if probe.returncode != 0:
        skip_or_fail(f"cannot make a network namespace: {probe.stderr.strip()}")


def extract(repo: Path) -> tuple[dict[str, list[dict]], float]:
    """Renovate's ``packageFiles`` for ``repo`` (its tracked files) and the seconds it took."""
    started = time.monotonic()
    run = _renovate("--platform=local", "--dry-run=extract", cwd=repo,
                    env={"LOG_FORMAT": "json", "LOG_LEVEL": "debug"})
    took = time.monotonic() - started
    records = []
    for line in (run.stdout + run.stderr).splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    fatal = [r.get("msg") for r in records if r.get("level", 0) >= 50]
    assert run.returncode == 0 and not fatal, (run.returncode, fatal, run.stderr[-2000:])
    found = [r["packageFiles"] for r in records if r.get("msg") == "Extracted dependencies"]
    assert len(found) == 1, [r.get("msg") for r in records][-20:]
    return found[0], took


def extracted_pins(package_files: dict[str, list[dict]]) -> set[Pin]:
    pins: set[Pin] = set()
    for files in package_files.values():
        for f in files:
            for dep in f["deps"]:
                name = str(dep.get("depName") or dep.get("packageName") or "")
                for value in (dep.get("currentValue"), dep.get("currentDigest")):
                    if value:
                        pins.add((f["packageFile"], name.lower(), str(value).removeprefix("==")
                                  .removeprefix("v")))
    return pins


# --- the grep: what counts as a pin -------------------------------------------------------------

_IMAGE = r"((?:[a-z0-9.-]+/)*[a-z0-9._-]+):([\w][\w.-]*?)(?:@(sha256:[a-f0-9]{64}))?"
#: The same with a version-like tag (``v``, a digit): a Python string such as "moontv:release" is
#: not an image.
#: ``NAME=1.2.3``, ``NAME=v1.2.3-pre`` or ``NAME="${OVERRIDE:-v1.2.3}"`` (not an address).
_SHELL_VERSION = r'^[A-Z][A-Z_]*=(?:"\$\{\w+:-)?v?(\d+\.\d+\.\d+(?:[-+][\w.-]+)?)(?=["}\s]|$)'
_IMAGE_V = _IMAGE.replace(r"([\w][\w.-]*?)", r"(v?\d[\w.-]*?)")


def tracked(repo: Path, *patterns: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", "--", *patterns], cwd=repo, capture_output=True,
                         text=True, check=True).stdout.split()
    return [repo / p for p in out]


def _image_pins(rel: str, matches: Iterable[tuple[str, str, str]]) -> set[Pin]:
    pins: set[Pin] = set()
    for repo, tag, digest in matches:
        pins.add((rel, repo.lower(), tag.removeprefix("v")))
        if digest:
            pins.add((rel, repo.lower(), digest))
    return pins


def grep_pins(repo: Path) -> set[Pin]:
    pins: set[Pin] = set()

    def rel(p: Path) -> str:
        return str(p.relative_to(repo))

    for p in tracked(repo, "components/*.py"):  # module-level image constants
        pins |= _image_pins(rel(p), re.findall(rf'^[A-Z][A-Z_]* = "{_IMAGE_V}"$', p.read_text(),
                                               re.M))
    for p in tracked(repo, "Pulumi.*.yaml"):  # any value that is an image reference
        found = re.findall(rf'^\s+[\w.-]+: "?{_IMAGE}"?\s*(?:#.*)?$', p.read_text(), re.M)
        pins |= _image_pins(rel(p), [m for m in found if "/" in m[0] or m[0] in
                                     ("redis", "traefik", "node", "busybox", "alpine")])
    for p in tracked(repo, "docker/Dockerfile*", "**/Dockerfile"):
        text = p.read_text()
        pins |= _image_pins(rel(p), re.findall(rf"^(?:ARG \w+=|FROM ){_IMAGE}(?:\s|$)",
                                               text, re.M))
        for _name, value in re.findall(r"^ARG (\w*VERSION)=(\d\S*)$", text, re.M):
            pins.add((rel(p), "", value))
    for p in tracked(repo, ".github/workflows/*.yml"):
        text = p.read_text()
        for action, digest in re.findall(r"uses: ([\w.-]+/[\w./-]+)@([0-9a-f]{40})", text):
            pins.add((rel(p), "/".join(action.split("/")[:2]).lower(), digest))
        for value in re.findall(r'^\s+[A-Z][A-Z_]*_VERSION: "?v?(\d+\.\d+\.\d+)"?$', text, re.M):
            pins.add((rel(p), "", value))
    for p in tracked(repo, "tools/*.sh"):
        text = p.read_text()
        for value in re.findall(_SHELL_VERSION, text, re.M):
            pins.add((rel(p), "", value))
        for module, value in re.findall(r"([a-z0-9.-]+\.[a-z]{2,}/[\w./-]+)@v(\d+\.\d+\.\d+)",
                                        text):
            pins.add((rel(p), module.lower(), value))
    for p in tracked(repo, "**/go.mod"):
        for module, value in re.findall(r"^\s+([a-z0-9.-]+\.[a-z]+/\S+) (v\S+)", p.read_text(),
                                        re.M):
            pins.add((rel(p), module.lower(), value.removeprefix("v")))
    for p in tracked(repo, "requirements*.txt", "**/requirements*.txt"):
        for name, value in re.findall(r"^([A-Za-z0-9_.-]+)(?:\[[\w,]+\])?==(\S+)",
                                      p.read_text(), re.M):
            pins.add((rel(p), name.lower(), value))
    return pins


def unmanaged(grepped: set[Pin], extracted: set[Pin]) -> set[Pin]:
    """Grep pins that no extracted dependency of the same file carries (a pin with no name
    matches on file and version alone)."""
    missing = set()
    for file, name, value in grepped:
        if (file, value) in UNMANAGED:
            continue
        hit = any(f == file and v == value and (not name or n == name)
                  for f, n, v in extracted)
        if not hit:
            missing.add((file, name, value))
    return missing


# --- tests --------------------------------------------------------------------------------------


def test_given_renovate_json_then_the_config_validator_accepts_it(renovate_ready: None) -> None:
    run = _renovate("validate", cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Config validated successfully" in run.stdout + run.stderr


def test_given_the_repository_then_renovate_manages_every_pin(renovate_ready: None) -> None:
    package_files, took = extract(ROOT)
    print(f"renovate extract: {took:.1f} s, managers: {sorted(package_files)}")
    extracted = extracted_pins(package_files)
    grepped = grep_pins(ROOT)
    kinds = {
        "images": {p for p in grepped if p[0].startswith(("components/", "Pulumi.", "docker/"))},
        "actions": {p for p in grepped if p[0].startswith(".github/") and p[1]},
        "go modules": {p for p in grepped if p[0].startswith("tools/")},
        "python requirements": {p for p in grepped if "requirements" in p[0]},
    }
    assert all(len(v) >= 3 for v in kinds.values()), {k: len(v) for k, v in kinds.items()}
    assert unmanaged(grepped, extracted) == set()
    # The defaults, the toolchain's Pulumi CLI and the workflows' copy are each extracted.
    assert ("components/image_defaults.py", "redis", "7.4.10-alpine") in extracted
    assert ("tools/toolchain.sh", "github.com/pulumi/pulumi/pkg/v3", "3.274.0") in extracted
    assert ("tools/traefik.sh", "github.com/traefik/traefik/v3", "3.7.13") in extracted


def test_given_a_new_pin_without_a_manager_then_the_check_names_it(
    renovate_ready: None, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    for p in tracked(ROOT):
        if p.is_file():
            target = repo / p.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, target)
    with (repo / "tools" / "toolchain.sh").open("a") as f:
        f.write("HELM_VERSION=3.19.0\n")  # no '# renovate:' comment above it
    defaults = repo / "components" / "image_defaults.py"
    defaults.write_text(defaults.read_text().replace(
        'REDIS = "redis:7.4.10-alpine"', 'REDIS = "redis:7.4.10-alpine"\n'
        '# a second constant per line is still found\nVALKEY = "valkey/valkey:8.1.4"'))
    prod = repo / "Pulumi.prod.yaml"
    prod.write_text(prod.read_text() + "  moontv:extra:\n    sidecar: busybox:1.37.0\n")
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"]):
        subprocess.run(cmd, cwd=repo, check=True, capture_output=True)
    package_files, _ = extract(repo)
    missing = unmanaged(grep_pins(repo), extracted_pins(package_files))
    assert ("tools/toolchain.sh", "", "3.19.0") in missing
    assert ("Pulumi.prod.yaml", "busybox", "1.37.0") in missing
    # The image_defaults manager reads every constant, so the new one is managed.
    assert not any(m[1] == "valkey/valkey" for m in missing), missing
    assert len(missing) == 2, missing
