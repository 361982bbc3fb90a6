"""``python -m rollout check pre|post``: deploy gates.

Each check prints ``PASS``, ``FAIL`` or ``SKIP`` with its reason (``--json``: one JSON document).
Exit status: 0 every check passed or was skipped for a stated reason, 1 at least one failed,
2 bad input.

Everything a check reads from outside goes through :class:`Target` (the cluster through
``kubectl``, Prometheus and the public route over HTTP, the storage through a Redis client,
``pulumi preview`` with the policy pack), so the same checks run against fakes in unit tests and
against a real cluster, a real Redis and a real HTTP app in integration tests.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from components import settings as settings_module
from components.errors import ConfigError
from rollout import check_post, check_pre
from rollout.check_types import (
    FAIL,
    PASS,
    SKIP,
    WARN,
    Cluster,
    ClusterError,
    Result,
    Target,
    failed,
    validated,
)
from rollout.stack import UsageError, engine_env, error_tail

OK, FAILED = 0, 1


@dataclass(frozen=True)
class Kubectl:
    """A cluster reached with ``kubectl`` (the kubeconfig and context of the stack)."""

    kubeconfig: str | None = None
    context: str | None = None
    timeout: float = 30.0

    def get(self, kind: str, namespace: str | None = None, name: str | None = None) -> Any:
        command = ["kubectl", "get", kind, *([name] if name else []), "-o", "json"]
        if namespace:
            command += ["--namespace", namespace]
        if self.kubeconfig:
            command += ["--kubeconfig", self.kubeconfig]
        if self.context:
            command += ["--context", self.context]
        try:
            result = subprocess.run(
                command, capture_output=True, text=True, check=False, timeout=self.timeout
            )
        except FileNotFoundError:
            raise ClusterError("kubectl is not on PATH") from None
        except subprocess.TimeoutExpired:
            raise ClusterError(f"kubectl get {kind} timed out after {self.timeout:g}s") from None
        if result.returncode != 0:
            # Only the API server's answer means the object is missing; kubectl's own errors
            # (a context or kubeconfig "not found") are configuration errors.
            if "Error from server (NotFound)" in result.stderr:
                return None
            raise ClusterError(
                result.stderr.strip().splitlines()[-1]
                if result.stderr.strip()
                else f"kubectl get {kind} failed"
            )
        return json.loads(result.stdout)


def policy_preview(stack: str, work_dir: Path) -> str | None:
    """``pulumi preview --policy-pack policy``: None when it passes, else the error's tail."""
    command = [
        "pulumi",
        "preview",
        "--stack",
        stack,
        "--non-interactive",
        "--diff=false",
        "--policy-pack",
        str(work_dir / "policy"),
    ]
    env = {**os.environ, **engine_env(stack, work_dir)}
    try:
        result = subprocess.run(
            command, cwd=work_dir, env=env, capture_output=True, text=True, check=False, timeout=900
        )
    except FileNotFoundError:
        return "the pulumi CLI is not on PATH (`make toolchain`, then `source tools/env.sh`)"
    if result.returncode == 0:
        return None
    return error_tail(Exception(f"\n stdout: {result.stdout}\n stderr: {result.stderr}"))


def report(
    phase: str,
    stack: str,
    results: Sequence[Result],
    as_json: bool,
    out: Callable[[str], None] = print,
) -> int:
    ok = all(r.status != FAIL for r in results)
    if as_json:
        out(
            json.dumps(
                {"phase": phase, "stack": stack, "ok": ok, "checks": [asdict(r) for r in results]},
                indent=2,
            )
        )
    else:
        width = max((len(r.name) for r in results), default=0)
        for r in results:
            out(f"{r.status:<4}  {r.name:<{width}}  {r.reason}")
        counts = {s: sum(r.status == s for r in results) for s in (PASS, FAIL, SKIP, WARN)}
        verdict = "passed" if ok else "FAILED"
        warned_part = f", {counts[WARN]} warned" if counts[WARN] else ""
        out(
            f"check {phase} {verdict} on {stack}: {counts[PASS]} passed, {counts[FAIL]} failed, "
            f"{counts[SKIP]} skipped{warned_part}"
        )
    return OK if ok else FAILED


def run_checks(
    checks: Sequence[Callable[[Target], Result | list[Result]]], target: Target
) -> list[Result]:
    """Run every check; one that raises fails with the error instead of stopping the others."""
    results: list[Result] = []
    for check in checks:
        name = check.__name__.removeprefix("check_").replace("_", "-")
        try:
            outcome = check(target)
        except ClusterError as exc:
            outcome = failed(name, f"cannot read the cluster: {exc}")
        except ConfigError as exc:
            outcome = failed(name, "the stack config is invalid: " + "; ".join(exc.problems))
        except (OSError, ValueError) as exc:
            outcome = failed(name, f"{type(exc).__name__}: {exc}")
        results.extend(outcome if isinstance(outcome, list) else [outcome])
    return results


def require_state_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--state-dir: cannot create {path}: {exc.strerror}") from None
    return path


# --- command line ------------------------------------------------------------------------------


def add_parser(sub: Any, common: Any) -> None:
    """The ``check`` subcommand of ``python -m rollout``."""
    check = sub.add_parser(
        "check",
        parents=[common],
        help="deploy gates: `check pre` before `pulumi up`, `check post` after it",
        description="pre: stack config valid, policy pack passes (pulumi preview), images "
        "pinned (prod: by digest) and existing where checkable, newest backup younger than its "
        "schedule allows, a rollback target recorded, key counts recorded. post: every track "
        "Ready, smoke through the public route (owner login, favourites, /api/server-config "
        "version), monitoring targets up and no MoonTV alert firing, logs shipping when "
        "enabled, key counts within --key-tolerance of pre's, NetworkPolicies present and the "
        "namespace labelled Pod Security restricted.",
        epilog="Exit status: 0 every check passed (or was skipped for the reason shown), "
        "1 a check failed, 2 bad input.",
    )
    check.add_argument("phase", choices=["pre", "post"], help="which gate")
    check.add_argument("--json", action="store_true", help="one JSON document on stdout")
    check.add_argument("--context", help="kubeconfig context (default: moontv:kubernetes.context)")
    check.add_argument(
        "--kubeconfig", help="kubeconfig path (default: moontv:kubernetes.kubeconfig)"
    )
    check.add_argument(
        "--url", help="public base URL of the site (default: https://<traffic.host>)"
    )
    check.add_argument("--host-header", help="Host header for --url (reach the route by address)")
    check.add_argument("--prometheus", help="Prometheus base URL (needed when monitoring is on)")
    check.add_argument(
        "--storage-url",
        # An optional secret that is not set reaches a workflow step as an empty variable.
        default=os.environ.get("MOONTV_STORAGE_URL") or None,
        help="redis://:password@host:port of the storage, e.g. through `kubectl port-forward` "
        "(default: $MOONTV_STORAGE_URL); pre records key counts, post compares them",
    )
    check.add_argument(
        "--expect-version",
        help="version /api/server-config must report (default: the primary track's tag "
        "without its v when it names a release; a branch build's, e.g. main, is not compared)",
    )
    check.add_argument(
        "--key-tolerance",
        type=float,
        default=0.05,
        help="largest share of keys a group may lose between pre and post (default: %(default)s)",
    )
    check.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="where pre records key counts for post (default: <cwd>/.rollout)",
    )


def cluster_for(args: Any, model: settings_module.MoonTVSettings) -> Cluster | None:
    k = model.kubernetes
    if args.context or args.kubeconfig:
        return Kubectl(args.kubeconfig, args.context)
    if k.render_dir:
        return None
    return Kubectl(k.kubeconfig, k.context)


def owner_password(cluster: Cluster | None, namespace: str) -> str | None:
    """$MOONTV_OWNER_PASSWORD, else the PASSWORD of the app Secret in the cluster."""
    if os.environ.get("MOONTV_OWNER_PASSWORD"):
        return os.environ["MOONTV_OWNER_PASSWORD"]
    if cluster is None:
        return None
    try:
        secrets = cluster.get("secret", namespace) or {"items": []}
    except ClusterError:
        return None
    import base64

    for item in secrets.get("items", []):
        data = item.get("data") or {}
        if "PASSWORD" in data and "USERNAME" in data:
            return base64.b64decode(data["PASSWORD"]).decode()
    return None


def main(args: Any, config: dict[str, Any], stack: str, out: Callable[[str], None] = print) -> int:
    try:
        model, _ = validated(config)
    except ConfigError:
        model = None
    cluster = cluster_for(args, model) if model is not None else None
    if not 0.0 <= args.key_tolerance <= 1.0:
        raise UsageError(f"--key-tolerance: must be a number 0..1, got {args.key_tolerance}")
    url = args.url or (f"https://{model.traffic.host}" if model is not None else None)
    target = Target(
        stack=stack,
        config=config,
        cluster=cluster,
        prometheus=args.prometheus,
        url=url,
        storage_url=args.storage_url,
        owner_password=owner_password(cluster, model.namespace)
        if (model is not None and args.phase == "post")
        else None,
        state_dir=require_state_dir(args.state_dir or args.cwd / ".rollout"),
        key_tolerance=args.key_tolerance,
        expect_version=args.expect_version,
        preview=lambda: policy_preview(stack, args.cwd),
        extra={
            "host": args.host_header,
            "history": lambda: check_pre.git_versions(stack, args.cwd),
        },
    )
    checks = check_pre.CHECKS if args.phase == "pre" else check_post.CHECKS
    if model is None:  # nothing else can be judged against an invalid config
        checks = [check_pre.check_config]
    return report(args.phase, stack, run_checks(checks, target), args.json, out)
