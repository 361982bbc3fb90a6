"""The stack the CLI operates on: read and write ``moontv:`` config objects, preview, up.

:class:`PulumiStack` drives the real engine through the Automation API; anything with the same
methods (:class:`Stack`) can stand in for it, which is how the decision logic is tested.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

NAMESPACE = "moontv:"
RELEASE_KEY = "moontv:release"
IMAGE_KEY = "moontv:image"
SECRET = "[secret]"
"""Stand-in for secret values: the CLI never reads them."""


#: What a canary weight step changes on Kubernetes: the route objects of either traffic provider
#: (Gateway API HTTPRoutes, ingress-nginx Ingresses), as ``pulumi up --target`` URN globs. A
#: weight step updates only these (and the stack outputs), about 0.8x the time of a whole ``up``
#: (``make bench``, docs/performance.md); on Swarm it runs a whole ``up``.
ROUTE_TARGETS = (
    "**kubernetes:gateway.networking.k8s.io/v1:HTTPRoute::*",
    "**kubernetes:networking.k8s.io/v1:Ingress::*",
    "**kubernetes:traefik.io/v1alpha1:TraefikService::*",  # a mirror (ends at the first weight)
)


class UsageError(Exception):
    """Bad input from the operator: exit status 2, config untouched."""


class EngineError(Exception):
    """``pulumi`` failed (preview, up, config): exit status 1."""


class Stack(Protocol):
    name: str

    def config(self) -> dict[str, Any]:
        """Every ``moontv:*`` key, objects decoded, secret values replaced by ``SECRET``."""

    def outputs(self) -> dict[str, Any]:
        """The stack outputs of the last update, secret values replaced by ``SECRET``."""

    def write(self, sets: Mapping[str, str], removes: list[str]) -> None:
        """Set these config paths (``moontv:release.canary.weight``) and remove those."""

    def up(self, targets: Sequence[str] = ()) -> None:
        """``pulumi up``; with ``targets`` (URN globs), only the resources they match."""

    def preview(self) -> None: ...


def diff(
    key: str, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None
) -> tuple[dict[str, str], list[str]]:
    """Config path edits turning object ``old`` into ``new``: (paths to set, paths to remove).

    A key that disappears is removed whole (``moontv:release.lastDecision``), never leaf by
    leaf, which would leave an empty object behind. Values are rendered the way
    ``pulumi config set --path`` reads them back (``true``, ``25``).
    """
    sets: dict[str, str] = {}
    removes: list[str] = []
    old, new = old or {}, new or {}
    for name, before in old.items():
        if name not in new or isinstance(before, Mapping) != isinstance(new[name], Mapping):
            removes.append(f"{key}.{name}")
    for name, after in new.items():
        path = f"{key}.{name}"
        before = old.get(name)
        if isinstance(after, Mapping):
            nested = before if isinstance(before, Mapping) else {}
            more_sets, more_removes = diff(path, nested, after)
            sets |= more_sets
            removes += more_removes
        elif name not in old or before != after or type(before) is not type(after):
            sets[path] = _render(after)
    return sets, removes


def decode_config(entries: Mapping[str, Any]) -> dict[str, Any]:
    """``pulumi config --json`` output to ``{key: value}`` for the ``moontv:`` keys."""
    config: dict[str, Any] = {}
    for key, entry in entries.items():
        if not key.startswith(NAMESPACE):
            continue
        if entry.get("secret"):
            config[key] = SECRET
        elif "objectValue" in entry:
            config[key] = entry["objectValue"]
        else:
            try:
                config[key] = json.loads(entry["value"])
            except (TypeError, ValueError):
                config[key] = entry.get("value")
    return config


def _render(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class PulumiStack:
    """A stack of the Pulumi project in ``work_dir``, through ``pulumi.automation``."""

    def __init__(self, name: str, work_dir: Path, on_output: Callable[[str], None] = print):
        from pulumi import automation

        self.name = name
        self._auto = automation
        self._on_output = on_output
        pack = work_dir / "policy"
        self._policy_packs = [str(pack)] if (pack / "PulumiPolicy.yaml").is_file() else None
        if not (work_dir / "Pulumi.yaml").is_file():
            raise UsageError(f"--cwd: no Pulumi.yaml in {work_dir}")
        options = automation.LocalWorkspaceOptions(env_vars=engine_env(name, work_dir))
        try:
            self._stack = automation.select_stack(
                stack_name=name, work_dir=str(work_dir), opts=options
            )
        except automation.StackNotFoundError:
            raise UsageError(
                f"--stack: no stack named {name!r} in the backend; create it with "
                f"`make up STACK={name}` (`pulumi stack ls` lists the stacks)"
            ) from None
        except FileNotFoundError:
            raise UsageError(
                "the pulumi CLI is not on PATH: `make toolchain` builds it "
                "(then `source tools/env.sh`)"
            ) from None
        except automation.CommandError as exc:
            raise EngineError(error_tail(exc)) from None

    def config(self) -> dict[str, Any]:
        workspace = self._stack.workspace
        env = {"PULUMI_HOME": workspace.pulumi_home} if workspace.pulumi_home else {}
        try:
            result = workspace.pulumi_command.run(  # `pulumi config --json`, secrets hidden
                ["config", "--json", "--stack", self.name],
                str(workspace.work_dir),
                {**env, **workspace.env_vars},
            )
        except self._auto.CommandError as exc:
            raise EngineError(error_tail(exc)) from None
        return decode_config(json.loads(result.stdout))

    def outputs(self) -> dict[str, Any]:
        try:
            outputs = self._stack.outputs()
        except self._auto.CommandError as exc:
            raise EngineError(error_tail(exc)) from None
        return {key: SECRET if out.secret else out.value for key, out in outputs.items()}

    def write(self, sets: Mapping[str, str], removes: list[str]) -> None:
        config = self._auto.ConfigValue
        try:
            if removes:
                self._stack.remove_all_config(removes, path=True)
            if sets:
                self._stack.set_all_config(
                    {path: config(value=value) for path, value in sets.items()}, path=True
                )
        except self._auto.CommandError as exc:
            raise EngineError(error_tail(exc)) from None

    def up(self, targets: Sequence[str] = ()) -> None:
        """A whole-stack ``up`` (one that may carry a new image) runs the project's policy pack;
        a targeted one (a canary weight step: routes only) does not."""
        try:
            self._stack.up(
                on_output=self._on_output,
                color="never",
                target=list(targets) or None,
                policy_packs=None if targets else self._policy_packs,
            )
        except self._auto.CommandError as exc:
            raise EngineError(error_tail(exc)) from None

    def preview(self) -> None:
        try:
            self._stack.preview(on_output=self._on_output, color="never", diff=True)
        except self._auto.CommandError as exc:
            raise EngineError(error_tail(exc)) from None


def engine_env(stack: str, work_dir: Path) -> dict[str, str]:
    """The engine settings of ``tools/stack.sh``, so the CLI and ``make up`` share state:
    a local file backend in ``.pulumi-state/`` unless ``PULUMI_BACKEND_URL`` is set (set but
    empty is refused), and the
    empty passphrase for dev when none is given."""
    env = {"PULUMI_SKIP_UPDATE_CHECK": "true"}
    if os.environ.get("PULUMI_BACKEND_URL") == "":
        raise UsageError(
            "PULUMI_BACKEND_URL is set but empty (an unset repository variable?): set it to "
            f"the backend that holds the state of {stack!r} (https://api.pulumi.com, s3://…, "
            "file://…), or unset it for the local .pulumi-state/ backend"
        )
    if "PULUMI_BACKEND_URL" not in os.environ:
        state = work_dir / ".pulumi-state"
        state.mkdir(exist_ok=True)
        env["PULUMI_BACKEND_URL"] = f"file://{state}"
    no_passphrase = "PULUMI_CONFIG_PASSPHRASE" not in os.environ and not os.environ.get(
        "PULUMI_CONFIG_PASSPHRASE_FILE"
    )
    if no_passphrase and stack == "dev":
        env["PULUMI_CONFIG_PASSPHRASE"] = ""
    return env


def error_tail(exc: Exception) -> str:
    """The useful tail of a failed pulumi command: its stderr, else the end of its stdout."""
    text = str(exc)
    head, _, stderr = text.partition("\n stderr: ")
    _, _, stdout = head.partition("\n stdout: ")
    for part in (stderr, stdout, text):
        lines = [line for line in part.strip().splitlines() if line.strip()]
        if lines:
            return "\n".join(lines[-15:])
    return type(exc).__name__
