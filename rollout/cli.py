"""``python -m rollout``: argument parsing and exit statuses (0 done, 1 failed or rolled back,
2 bad input with the config untouched)."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rollout import check, commands, history
from rollout.commands import FAILED, USAGE, Context
from rollout.health import OUTPUT, HealthPolicy, stack_gates
from rollout.stack import EngineError, PulumiStack, Stack, UsageError

REPO_ROOT = Path(__file__).resolve().parents[1]
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def duration(text: str) -> float:
    """``60s``, ``2m``, ``500ms``, ``1h`` or plain seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"must be a duration like 60s, 2m or 500ms, got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def steps(text: str) -> list[int]:
    """``10,25,50,100``: increasing integers 1..100."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or any(not 1 <= v <= 100 for v in values) or values != sorted(set(values)):
        raise argparse.ArgumentTypeError(
            f"must be comma-separated increasing integers 1..100, got {text!r}"
        )
    return values


def fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number 0..1, got {text!r}")
    return value


def positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def http_url(text: str) -> str:
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", text):
        raise argparse.ArgumentTypeError(f"must be an http(s) URL, got {text!r}")
    return text


def parser() -> argparse.ArgumentParser:
    target = argparse.ArgumentParser(add_help=False)
    target.add_argument(
        "--stack",
        default=os.environ.get("MOONTV_STACK"),
        help="stack to operate on, e.g. dev, staging, prod (default: $MOONTV_STACK)",
    )
    target.add_argument(
        "--cwd",
        type=Path,
        default=REPO_ROOT,
        help="directory holding Pulumi.yaml (default: the repository root)",
    )
    common = argparse.ArgumentParser(add_help=False, parents=[target])
    common.add_argument(
        "--dry-run",
        action="store_true",
        help="show the config change and run `pulumi preview` with it; the config is restored",
    )
    common.add_argument("--reason", help="why: recorded in moontv:release.lastDecision")

    health = argparse.ArgumentParser(add_help=False)
    stack_gate = f"(default: the track's gate in the stack output {OUTPUT})"
    health.add_argument(
        "--success-query",
        help="PromQL giving the success ratio 0..1 of the track; $track is replaced by the "
        f"track name {stack_gate}",
    )
    health.add_argument(
        "--latency-query", help=f"PromQL giving the p99 latency in seconds {stack_gate}"
    )
    health.add_argument(
        "--min-success", type=fraction, help=f"lowest healthy success ratio {stack_gate}"
    )
    health.add_argument(
        "--max-p99-ms", type=positive, help=f"highest healthy p99 latency in ms {stack_gate}"
    )
    health.add_argument(
        "--smoke-url",
        type=http_url,
        help="also GET this URL (with x-moontv-canary: always for a canary); "
        "it must answer 2xx/3xx",
    )

    top = argparse.ArgumentParser(
        prog="python -m rollout",
        description="Progressive delivery for MoonTV stacks: every decision is a change of "
        "moontv:release in the stack config, applied with `pulumi up`.",
        epilog="Exit status: 0 done, 1 failed or rolled back (reason in "
        "moontv:release.lastDecision), 2 bad input (config untouched).",
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    status = sub.add_parser(
        "status",
        parents=[common, health],
        help="strategy, versions, weights, last decision and health",
    )
    status.add_argument(
        "--prometheus",
        type=http_url,
        help="Prometheus base URL; when given, show each track's health",
    )

    stage = sub.add_parser(
        "stage",
        parents=[common],
        help="deploy VERSION as the release candidate: canary at weight 0, or the inactive "
        "blue-green colour (preview)",
    )
    stage.add_argument("version", metavar="VERSION", help="image tag, or tag@sha256:<digest>")
    stage.add_argument(
        "--repository",
        help="image repository VERSION was pushed to; becomes moontv:image.repository",
    )
    stage.add_argument(
        "--config-only",
        action="store_true",
        help="write and record the change without `up`: the next `pulumi up` (with the policy "
        "pack) deploys it, after `check pre` has judged it",
    )

    weight = sub.add_parser(
        "set-weight", parents=[common], help="send N%% of traffic to the canary"
    )
    weight.add_argument("weight", metavar="N", help="canary weight, an integer 0..100")

    sub.add_parser(
        "promote",
        parents=[common],
        help="canary: the canary version becomes the image version, weight 0; "
        "blue-green: the preview colour becomes active",
    )
    rollback = sub.add_parser(
        "rollback",
        parents=[common],
        help="canary: weight 0 (the canary stays reachable by header); "
        "blue-green: switch back to the other colour",
    )
    rollback.add_argument(
        "--candidate",
        metavar="VERSION",
        help="after a failed release of VERSION: take default traffic off it only if it has "
        "any (canary: weight 0, or back to the version its promotion replaced; blue-green: "
        "switch only when VERSION is active). Changes nothing otherwise; never switches "
        "towards VERSION",
    )
    sub.add_parser(
        "abort",
        parents=[common],
        help="drop the release candidate (canary version or inactive colour)",
    )
    switch = sub.add_parser(
        "switch", parents=[common], help="blue-green: make a colour active (default: the other one)"
    )
    switch.add_argument("colour", nargs="?", choices=["blue", "green"])

    auto = sub.add_parser(
        "auto",
        parents=[common, health],
        help="raise the canary weight step by step while healthy, then promote; "
        "roll back on the first failed check",
        description="Before every step, check the canary's health in Prometheus (and the "
        "optional smoke URL); healthy: set the next weight and `up`, wait --interval; after the "
        "last step and a final check, promote. Unhealthy: weight 0, `up`, the reason goes to "
        "moontv:release.lastDecision, exit 1. Blue-green: check the preview colour, switch, "
        "wait --interval, check again, switch back if unhealthy.",
    )
    auto.add_argument(
        "--steps",
        type=steps,
        default=steps("10,25,50,100"),
        help="canary weights in order (default: 10,25,50,100)",
    )
    auto.add_argument(
        "--interval",
        type=duration,
        default=60.0,
        help="wait after each step before the next check (default: 60s)",
    )
    auto.add_argument(
        "--mirror",
        type=duration,
        default=None,
        metavar="DURATION",
        help="first step: for DURATION the release candidate gets only copies of read requests "
        "(the stack's release.canary.mirror / release.blueGreen.mirror must be set); unhealthy "
        "then: stopped before any user reaches it (exit 1). Gate it on the gateway's "
        "per-backend metrics (--success-query/--latency-query): probes see no mirrored request",
    )
    auto.add_argument(
        "--prometheus",
        type=http_url,
        required=True,
        help="Prometheus base URL, e.g. http://127.0.0.1:9090",
    )
    history.add_parser(sub)
    check.add_parser(sub, target)
    return top


def _policy(args: argparse.Namespace, stack: Stack) -> HealthPolicy | None:
    if getattr(args, "prometheus", None) is None:
        return None
    return HealthPolicy(
        prometheus=args.prometheus,
        gates=stack_gates(stack.outputs()),
        success_query=args.success_query,
        latency_query=args.latency_query,
        min_success=args.min_success,
        max_p99_ms=args.max_p99_ms,
        smoke_url=args.smoke_url,
    )


def run(args: argparse.Namespace, stack: Stack) -> int:
    if args.command == "check":
        return check.main(args, stack.config(), stack.name, _print)
    ctx = Context(stack=stack, dry_run=args.dry_run, out=_say, reason=args.reason)
    policy = _policy(args, stack)
    if args.command == "status":
        return commands.status(ctx, policy)
    if args.command == "stage":
        return commands.stage(ctx, args.version, args.repository, args.config_only)
    if args.command == "set-weight":
        return commands.set_weight(ctx, args.weight)
    if args.command == "promote":
        return commands.promote(ctx)
    if args.command == "rollback":
        if args.candidate is not None:
            return commands.recover(ctx, args.candidate)
        return commands.rollback(ctx)
    if args.command == "abort":
        return commands.abort(ctx)
    if args.command == "switch":
        return commands.switch(ctx, args.colour)
    assert policy is not None
    return commands.auto(ctx, policy, args.steps, args.interval, args.mirror)


def _print(line: str) -> None:
    print(line, flush=True)


def _say(line: str) -> None:
    print(f"[rollout] {line}" if line and not line.startswith(" ") else line, flush=True)


def main(
    argv: Sequence[str] | None = None,
    open_stack: Callable[[str, Path], Stack] | None = None,
) -> int:
    """Run the CLI; ``open_stack(name, work_dir)`` defaults to the Automation API stack."""
    args = parser().parse_args(argv)
    try:
        if args.command == "history":  # reads git, needs no stack or engine
            return history.run(args)
        if not args.stack:
            raise UsageError("--stack: name the stack (or set MOONTV_STACK), e.g. --stack dev")
        if open_stack is None:
            stack: Stack = PulumiStack(args.stack, args.cwd.resolve(), on_output=_engine_output)
        else:
            stack = open_stack(args.stack, args.cwd.resolve())
        return run(args, stack)
    except UsageError as exc:
        print(f"rollout: error: {exc}", file=sys.stderr)
        return USAGE
    except EngineError as exc:
        print(f"rollout: pulumi failed:\n{exc}", file=sys.stderr)
        return FAILED
    except KeyboardInterrupt:
        print(
            "rollout: interrupted; the stack config holds the last applied decision",
            file=sys.stderr,
        )
        return 130


def _engine_output(line: str) -> None:
    print(line.rstrip("\n"), flush=True)
