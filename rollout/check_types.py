"""What the deploy gates share: results, the cluster and the target the checks read.

``rollout.check`` (the runner and the CLI), ``rollout.check_pre`` and ``rollout.check_post``
(the checks) all import from here and not from each other.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from components import settings as settings_module
from components.errors import ConfigError
from components.release import ReleaseError
from rollout.stack import NAMESPACE, SECRET

PASS, FAIL, SKIP, WARN = "PASS", "FAIL", "SKIP", "WARN"


@dataclass(frozen=True)
class Result:
    name: str
    status: str  # PASS, FAIL, SKIP or WARN (passed, with something to act on)
    reason: str


def passed(name: str, reason: str) -> Result:
    return Result(name, PASS, reason)


def failed(name: str, reason: str) -> Result:
    return Result(name, FAIL, reason)


def skipped(name: str, reason: str) -> Result:
    return Result(name, SKIP, reason)


def warned(name: str, reason: str) -> Result:
    """Passed, but with something the operator should act on (does not fail the gate)."""
    return Result(name, WARN, reason)


class ClusterError(Exception):
    """The cluster could not be asked (unreachable, forbidden)."""


class Cluster(Protocol):
    def get(self, kind: str, namespace: str | None = None, name: str | None = None) -> Any:
        """The object (``name`` given) or the list ``{"items": [...]}``; None when not found."""


def local_image_exists(ref: str) -> bool | None:
    """Whether the local Docker engine holds ``ref``; None when that cannot be told (no engine,
    or the image is not local: registries are not asked)."""
    try:
        result = subprocess.run(
            ["docker", "image", "inspect", ref],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None
    return True if result.returncode == 0 else None


@dataclass
class Target:
    """Where the checks look. Anything left None is reported as not checkable (SKIP) or, when
    the stack config says it must be there, as a failure naming the option to give."""

    stack: str
    config: dict[str, Any]  # the moontv:* keys (secrets as rollout.stack.SECRET)
    cluster: Cluster | None = None
    prometheus: str | None = None
    url: str | None = None  # public base URL of the site
    storage_url: str | None = None
    owner_password: str | None = None
    state_dir: Path = Path(".rollout")
    key_tolerance: float = 0.05
    expect_version: str | None = None
    preview: Callable[[], str | None] = lambda: None
    image_exists: Callable[[str], bool | None] = local_image_exists
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    timeout: float = 10.0
    extra: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> settings_module.MoonTVSettings:
        """The validated stack config (secret objects, unreadable here, left out)."""
        return validated(self.config)[0]


def validated(config: Mapping[str, Any]) -> tuple[settings_module.MoonTVSettings, list[str]]:
    """Validate the ``moontv:*`` keys: (model, rules left to ``pulumi preview``). Secrets read
    back as one placeholder, so the rules needing their values (the owner password's strength,
    the members of secret objects) are reported as deferred to the program itself rather than
    failed. Raises ConfigError for anything else."""
    raw = {key[len(NAMESPACE) :]: value for key, value in config.items()}
    hidden = tuple(
        f"{settings_module.PREFIX}{key}"
        for key in ("ownerPassword", "backupKeys", "alertReceiverUrls")
        if raw.get(key) == SECRET
    )
    for key in hidden:
        raw.pop(key.removeprefix(settings_module.PREFIX))
    model = settings_module.validate_fields(raw)
    try:
        problems = settings_module.cross_checks(model)
    except ReleaseError as exc:
        raise ConfigError([str(exc)]) from None
    deferred = [
        p for p in problems if hidden and (p.startswith(hidden) or any(h in p for h in hidden))
    ]
    rest = [p for p in problems if p not in deferred]
    if rest:
        raise ConfigError(rest)
    return model, deferred


def no_cluster(name: str, model: settings_module.MoonTVSettings) -> Result:
    """The result of a check that needs the cluster when there is none to read."""
    if model.kubernetes.render_dir:
        return skipped(
            name,
            f"the stack renders manifests to {model.kubernetes.render_dir}: no cluster to read",
        )
    return failed(name, "no cluster to read (give --context or --kubeconfig)")
