"""The real Pulumi engine for integration tests: a project copy, a file backend, a passphrase.

``Project`` copies the program into a temporary directory (so stack files and state never touch
the working tree), points the Automation API at a local file backend and returns stacks ready
for ``preview``/``up``/``destroy``. ``require_engine()`` skips — or, under
``MOONTV_REQUIRE_ENGINE=1``, fails — when the toolchain is not built.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from pulumi import automation as auto

from tests.conftest import ROOT, skip_or_fail

PASSPHRASE = "integration-test-passphrase"
PROGRAM_FILES = ("Pulumi.yaml", "__main__.py", "components", "policy")


def toolchain_bin() -> Path | None:
    """The toolchain's bin directory when its core set is built, else None."""
    result = subprocess.run(["bash", str(ROOT / "tools/toolchain.sh"), "--print-bin"],
                            capture_output=True, text=True, check=False)
    path = Path(result.stdout.strip()) if result.returncode == 0 else None
    return path if path and (path / "pulumi").exists() else None


def engine_env() -> dict[str, str]:
    """Environment with the engine on PATH (``pulumi`` on PATH wins over the toolchain)."""
    env = dict(os.environ)
    found = toolchain_bin()
    if found is not None:
        env["PATH"] = f"{found}:{env['PATH']}"
    env.update({
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
    })
    return env


def require_engine() -> dict[str, str]:
    env = engine_env()
    if shutil.which("pulumi", path=env["PATH"]) is None:
        skip_or_fail("the pulumi engine is not built (run `make toolchain`)")
    # The Automation API looks the CLI up on this process's PATH.
    os.environ["PATH"] = env["PATH"]
    return env


class Project:
    """A disposable copy of the program with its own file backend."""

    def __init__(self, tmp: Path, env: dict[str, str], program: str | None = None):
        """``program``: another Pulumi project of the repository (e.g. ``deploy/deployer``),
        copied with the components it imports; by default the main program."""
        root = self.dir = tmp / "project"
        self.dir.mkdir()
        for name in PROGRAM_FILES if program is None else ("components", program):
            src = ROOT / name
            if src.is_dir():
                shutil.copytree(src, self.dir / name,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(src, self.dir / name)
        (root / "venv").symlink_to(ROOT / "venv")
        if program is not None:
            self.dir = root / program
        self.state = tmp / "state"
        self.state.mkdir()
        self.env = {**env, "PULUMI_BACKEND_URL": f"file://{self.state}"}

    def stack(self, name: str, config: dict[str, Any], secrets: dict[str, str] | None = None
              ) -> auto.Stack:
        """Create stack ``name`` with ``config`` (moontv:* keys; objects as YAML would hold)."""
        (self.dir / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump({"config": config}))
        workspace = auto.LocalWorkspace(
            work_dir=str(self.dir), env_vars=self.env,
            secrets_provider="passphrase",
        )
        stack = auto.Stack.create_or_select(name, workspace)
        for key, value in (secrets or {}).items():
            stack.set_config(key, auto.ConfigValue(value, secret=True))
        return stack

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the pulumi CLI in the project directory."""
        return subprocess.run(["pulumi", *args], cwd=self.dir, env=self.env, text=True,
                              capture_output=True, check=check, timeout=600)


def changes(summary: dict[str, int] | None) -> dict[str, int]:
    """Change counts without the unchanged ones (``{"update": 1}``)."""
    return {k: v for k, v in (summary or {}).items() if k != "same" and v}


def stack_config(stack: str, **overrides: Any) -> dict[str, Any]:
    config = dict((yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text()) or {})["config"])
    config.update(overrides)
    return config
