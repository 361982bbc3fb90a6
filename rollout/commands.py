"""What each CLI command does to a stack; every change is recorded in
``moontv:release.lastDecision`` and applied with ``up`` (or previewed and undone with
``--dry-run``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from components import release as rel
from components.errors import ConfigError
from rollout.check_types import validated
from rollout.health import Health, HealthPolicy, QueryError, check, has_samples, query
from rollout.stack import (
    IMAGE_KEY,
    NAMESPACE,
    RELEASE_KEY,
    ROUTE_TARGETS,
    EngineError,
    Stack,
    UsageError,
    diff,
)

OK, FAILED, USAGE = 0, 1, 2


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Context:
    stack: Stack
    dry_run: bool = False
    out: Callable[[str], None] = print
    now: Callable[[], str] = utc_now
    sleep: Callable[[float], None] = time.sleep
    reason: str | None = None  # operator's reason for a manual decision


def _read(ctx: Context) -> tuple[dict[str, Any], dict[str, Any]]:
    config = ctx.stack.config()
    return _object(config, RELEASE_KEY), _object(config, IMAGE_KEY)


def _release(ctx: Context) -> dict[str, Any]:
    return _read(ctx)[0]


def _object(config: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = config.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"{key}: must be an object (set its keys with --path), got {value!r}")
    return value


def _preflight(config: Mapping[str, Any]) -> None:
    """The whole stack config after the change must pass the program's own validation."""
    try:
        validated(config)  # secrets read back hidden: their own rules are the program's
    except ConfigError as exc:
        problems = "\n".join(f"  - {problem}" for problem in exc.problems)
        raise UsageError(f"the change would make the stack config invalid:\n{problems}") from None


def _settings(cfg: Mapping[str, Any]) -> rel.ReleaseSettings:
    try:
        return rel.parse(cfg, allow_latest=True)
    except rel.ReleaseError as exc:
        raise UsageError(f"the stack config is invalid:\n{exc}") from None


def _transition(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except rel.ReleaseError as exc:
        raise UsageError(str(exc)) from None


def apply(
    ctx: Context,
    release: Mapping[str, Any],
    action: rel.Action,
    reason: str,
    image: Mapping[str, Any] | None = None,
    weight_step: bool = False,
    config_only: bool = False,
) -> dict[str, Any]:
    """Record the decision, write the config change and run ``up`` (``--dry-run``: preview, then
    restore the previous config). Returns the release config now in effect. A ``weight_step``
    changes only the routes: on Kubernetes its ``up`` targets them (:data:`ROUTE_TARGETS`).
    ``config_only``: write and record, no ``up`` (the caller's next ``pulumi up`` applies it)."""
    config = ctx.stack.config()
    old_release, old_image = _object(config, RELEASE_KEY), _object(config, IMAGE_KEY)
    new_release = rel.record(release, action, reason, ctx.now())
    new_image = old_image if image is None else dict(image)
    _preflight({**config, RELEASE_KEY: new_release, IMAGE_KEY: new_image})
    sets, removes = _changes((old_release, old_image), (new_release, new_image))
    for path, value in sets.items():
        ctx.out(f"  set {path} = {value}")
    for path in removes:
        ctx.out(f"  remove {path}")
    ctx.stack.write(sets, removes)
    if ctx.dry_run:
        try:
            ctx.out(f"previewing {ctx.stack.name} (dry run: the config is restored afterwards)")
            ctx.stack.preview()
        finally:
            ctx.stack.write(*_changes((new_release, new_image), (old_release, old_image)))
        return old_release
    if config_only:
        ctx.out(f"written to the config of {ctx.stack.name}; the next `pulumi up` applies it")
        return new_release
    if weight_step and config.get(f"{NAMESPACE}platform", "kubernetes") != "swarm":
        ctx.out(f"updating the routes of {ctx.stack.name}")
        ctx.stack.up(ROUTE_TARGETS)
    else:
        ctx.out(f"updating {ctx.stack.name}")
        ctx.stack.up()
    return new_release


def _changes(
    old: tuple[Mapping[str, Any], Mapping[str, Any]],
    new: tuple[Mapping[str, Any], Mapping[str, Any]],
) -> tuple[dict[str, str], list[str]]:
    sets, removes = diff(RELEASE_KEY, old[0], new[0])
    image_sets, image_removes = diff(IMAGE_KEY, old[1], new[1])
    return sets | image_sets, removes + image_removes


# --- manual commands ---------------------------------------------------------------------------


def status(ctx: Context, policy: HealthPolicy | None = None) -> int:
    release, image = _read(ctx)
    settings = _settings(release)
    ctx.out(f"stack: {ctx.stack.name}")
    ctx.out(f"strategy: {settings.strategy}")
    tag = image.get("tag")
    stable = rel.join_version(str(tag), image.get("digest")) if tag is not None else None
    if settings.strategy != "blue-green":
        ctx.out(f"image version (stable): {stable or 'not set (moontv:image.tag)'}")
    if stable is None and settings.strategy != "blue-green":
        return OK
    plan = _transition(lambda: rel.plan(settings, stable or "unused", 1))
    for track in plan.tracks:
        ctx.out(
            f"track {track.name}: version {track.version}, weight {track.weight}%, "
            f"role {track.role}"
        )
    if plan.header_routes:
        routes = ", ".join(f"{value} -> {name}" for value, name in plan.header_routes.items())
        ctx.out(f"header {plan.header}: {routes}")
    if plan.mirror is not None:
        ctx.out(f"mirror: {_mirror_words(plan.mirror)}")
    if settings.last_decision is not None:
        d = settings.last_decision
        ctx.out(f"last decision: {d.action} at {d.at}: {d.reason}")
    if policy is not None:
        for track in plan.tracks:
            if track.role != "idle":
                ctx.out(f"health {track.name}: {check(policy, track.name).summary}")
    return OK


def stage(
    ctx: Context, version: str, repository: str | None = None, config_only: bool = False
) -> int:
    """Stage ``version``; ``repository``: the image repository it was pushed to, which becomes
    ``moontv:image.repository`` (every track then pulls from it)."""
    release, image = _read(ctx)
    new = _transition(lambda: rel.stage(release, version))
    new_image = None
    if repository is not None and image.get("repository") != repository:
        new_image = {**image, "repository": repository}
        ctx.out(
            f"image repository {image.get('repository', '(default)')} -> {repository}: "
            "every track pulls from it now"
        )
    ctx.out(f"staging {version} as the release candidate (no default traffic)")
    apply(ctx, new, "stage", ctx.reason or f"staged {version}", new_image, config_only=config_only)
    return OK


def set_weight(ctx: Context, weight: str) -> int:
    release = _release(ctx)
    new = _transition(lambda: rel.set_weight(release, weight))
    ctx.out(f"setting canary weight to {new['canary']['weight']}%")
    apply(ctx, new, "set-weight", ctx.reason or "set by operator", weight_step=True)
    return OK


def promote(ctx: Context) -> int:
    release, image = _read(ctx)
    promotion = _transition(lambda: rel.promote(release, image))
    ctx.out(f"promoting: {promotion.summary}")
    apply(
        ctx,
        promotion.release,
        "promote",
        ctx.reason or f"promoted by operator: {promotion.summary}",
        promotion.image,
    )
    return OK


def rollback(ctx: Context) -> int:
    release = _release(ctx)
    new = _transition(lambda: rel.rollback(release))
    ctx.out("rolling back: " + _describe(new))
    apply(ctx, new, "rollback", ctx.reason or "rolled back by operator")
    return OK


def recover(ctx: Context, candidate: str) -> int:
    """After a failed release of ``candidate``: take default traffic off it when any reaches it,
    else change nothing (safe to run after ``auto`` already rolled back, and again)."""
    release, image = _read(ctx)
    recovery = _transition(lambda: rel.recover(release, image, candidate))
    if recovery is None:
        ctx.out(
            f"{candidate} takes no default traffic ({_describe(release)}): nothing to roll back"
        )
        return OK
    ctx.out(f"rolling back {candidate}: {recovery.summary}")
    apply(
        ctx,
        recovery.release,
        "rollback",
        ctx.reason or f"rolled back {candidate}: {recovery.summary}",
        recovery.image,
    )
    return OK


def abort(ctx: Context) -> int:
    release = _release(ctx)
    new = _transition(lambda: rel.abort(release))
    ctx.out("aborting the release candidate: " + _describe(new))
    apply(ctx, new, "abort", ctx.reason or "aborted by operator")
    return OK


def switch(ctx: Context, colour: str | None) -> int:
    release = _release(ctx)
    settings = _settings(release)
    if colour is None and settings.blue_green is not None:
        colour = settings.blue_green.inactive
    new = _transition(lambda: rel.switch(release, colour))
    if new.get("blueGreen") == release.get("blueGreen"):
        ctx.out(f"{colour} is already active; nothing to change")
        return OK
    ctx.out(f"switching the active colour to {colour}")
    apply(ctx, new, "switch", ctx.reason or f"switched to {colour} by operator")
    return OK


def _describe(cfg: Mapping[str, Any]) -> str:
    settings = rel.parse(cfg, allow_latest=True)
    if settings.strategy == "blue-green" and settings.blue_green is not None:
        return f"{settings.blue_green.active} active"
    canary = settings.canary
    return f"canary weight {canary.weight if canary else 0}%"


# --- automatic progression ---------------------------------------------------------------------


def _mirror_words(mirror: rel.Mirror) -> str:
    return (
        f"{mirror.percent}% of {', '.join(mirror.methods)} requests copied to "
        f"{mirror.track} (answers from {mirror.source})"
    )


def auto(
    ctx: Context,
    policy: HealthPolicy,
    steps: Sequence[int],
    interval: float,
    mirror: float | None = None,
) -> int:
    """Canary: raise the weight step by step while healthy, then promote. Blue-green: switch
    to the preview colour if healthy, and back if it turns unhealthy. Any failure rolls back,
    records the reason and returns FAILED. With ``mirror`` (seconds), a first step: the
    candidate gets copies of read requests (the stack's mirror) for that long, then its health
    decides whether the first weighted step (or the switch) happens at all."""
    release, image = _read(ctx)
    settings = _settings(release)
    if settings.strategy == "blue-green":
        bg = settings.blue_green
        assert bg is not None
        _transition(lambda: rel.switch(release, bg.inactive))
    elif settings.strategy != "canary":
        raise UsageError(
            f"{RELEASE_KEY}.strategy: auto needs strategy canary or blue-green, "
            f"got {settings.strategy!r}"
        )
    elif settings.canary is None or settings.canary.version is None:
        raise UsageError(
            f"{RELEASE_KEY}.canary.version: auto needs a canary; "
            f"set {RELEASE_KEY}.canary.version first"
        )
    mirrored = _active_mirror(settings, image) if mirror is not None else None
    try:
        query(policy.prometheus, "vector(1)", policy.timeout)
    except QueryError as exc:
        raise UsageError(f"--prometheus: {exc}") from None
    if mirrored is not None:
        assert mirror is not None
        failed = _mirror_step(ctx, policy, release, mirrored, mirror)
        if failed is not None:
            return failed
    if settings.strategy == "blue-green":
        return _auto_blue_green(ctx, policy, release, interval)
    assert settings.canary is not None
    start = settings.canary.weight
    todo = [weight for weight in steps if weight > start]
    if start:
        ctx.out(f"canary is at {start}%; continuing with steps {todo}")
    return _auto_canary(ctx, policy, (release, image), start, todo, interval)


def _active_mirror(settings: rel.ReleaseSettings, image: Mapping[str, Any]) -> rel.Mirror:
    """The mirror the stack runs now, for ``auto --mirror``; :class:`UsageError` if none."""
    section = "blueGreen" if settings.strategy == "blue-green" else "canary"
    key = f"{RELEASE_KEY}.{section}.mirror"
    if settings.strategy == "canary" and settings.canary and settings.canary.weight > 0:
        raise UsageError(
            f"--mirror: the canary already takes {settings.canary.weight}% of traffic; the "
            "mirror step comes before the first weight (roll back to 0 first, or drop --mirror)"
        )
    tag = image.get("tag")
    stable = rel.join_version(str(tag), image.get("digest")) if tag is not None else "unused"
    plan: rel.ReleasePlan = _transition(lambda: rel.plan(settings, stable, 1))
    if plan.mirror is None:
        raise UsageError(
            f"--mirror: the stack mirrors nothing: set {key}.percent (1..100) and run up, so the "
            "release candidate gets copies of read requests before the mirror step"
        )
    return plan.mirror


def _mirror_step(
    ctx: Context, policy: HealthPolicy, release: dict[str, Any], mirror: rel.Mirror, seconds: float
) -> int | None:
    """Wait while ``mirror`` copies requests to the candidate, then check it: None when healthy,
    else the decision is recorded (nothing else changes: no user reaches it) and FAILED."""
    step = f"mirror step ({seconds:g}s, {mirror.percent}% of {', '.join(mirror.methods)})"
    ctx.out(f"{step}: {_mirror_words(mirror)}")
    if ctx.dry_run:
        ctx.out(f"{step}: dry run: not waiting")
    else:
        ctx.out(f"{step}: waiting {seconds:g}s")
        ctx.sleep(seconds)
    health = check(policy, mirror.track)
    ctx.out(f"{step}: {mirror.track}: {health.summary}")
    if health.ok:
        return None
    reason = (
        f"{step}: {mirror.track} unhealthy on mirrored requests, no user was sent to it: "
        f"{health.summary}"
    )
    if ctx.dry_run:
        ctx.out(f"dry run: would stop here: {reason}")
        return FAILED
    if mirror.track == "canary":
        return _roll_back(ctx, release, reason)
    ctx.out(f"not switching: {reason}")
    apply(ctx, release, "rollback", reason)
    return FAILED


def _auto_canary(
    ctx: Context,
    policy: HealthPolicy,
    config: tuple[dict[str, Any], dict[str, Any]],
    weight: int,
    steps: list[int],
    interval: float,
) -> int:
    release, image = config
    total = len(steps)
    for number, target in enumerate(steps, 1):
        step = f"step {number}/{total}"
        ctx.out(f"{step}: checking canary health before {weight}% -> {target}%")
        health = check(policy, "canary")
        if number == 1:
            health = _after_first_samples(ctx, policy, "canary", interval, health)
        ctx.out(f"{step}: {health.summary}")
        if not health.ok:
            return _roll_back(ctx, release, f"{step} at {weight}%: {health.summary}")
        new = rel.set_weight(release, target)
        ctx.out(f"{step}: canary weight {target}%")
        try:
            release = apply(ctx, new, "set-weight", f"{step}: {health.summary}", weight_step=True)
        except EngineError as exc:
            return _roll_back(ctx, release, f"{step}: update failed: {_first_line(exc)}")
        if ctx.dry_run:
            ctx.out("dry run: stopping after the first step")
            return OK
        weight = target
        ctx.out(f"{step}: waiting {interval:g}s")
        ctx.sleep(interval)
    ctx.out("final check: canary health before promotion")
    health = check(policy, "canary")
    ctx.out(f"final check: {health.summary}")
    if not health.ok:
        return _roll_back(ctx, release, f"final check at {weight}%: {health.summary}")
    promotion = rel.promote(release, image)
    ctx.out(f"promoting: {promotion.summary}")
    apply(
        ctx,
        promotion.release,
        "promote",
        f"all steps healthy ({health.summary}); {promotion.summary}",
        promotion.image,
    )
    ctx.out("done: promoted")
    return OK


#: How often the first check's wait for samples asks Prometheus again (seconds).
SAMPLES_POLL = 5.0


def _after_first_samples(
    ctx: Context, policy: HealthPolicy, track: str, interval: float, health: Health
) -> Health:
    """The first check of a candidate deployed moments ago (the pipeline's `pulumi up` just
    made its probe) may find no samples yet, and no data counts as unhealthy: then wait up to
    ``interval`` for the gate's queries to return data and check again. Any other answer
    stands."""
    if health.ok or ctx.dry_run or not health.summary.endswith("no data"):
        return health
    ctx.out(
        f"{track}: no samples in Prometheus yet ({health.summary}); waiting up to "
        f"{interval:g}s for them"
    )
    waited = 0.0
    while waited < interval:
        pause = min(SAMPLES_POLL, interval - waited)
        ctx.sleep(pause)
        waited += pause
        if has_samples(policy, track):
            ctx.out(f"{track}: first samples after {waited:g}s")
            break
    return check(policy, track)


def _roll_back(ctx: Context, release: dict[str, Any], reason: str) -> int:
    ctx.out(f"rolling back: {reason}")
    apply(ctx, rel.rollback(release), "rollback", reason)
    ctx.out("rolled back: " + _describe(rel.rollback(release)))
    return FAILED


def _auto_blue_green(
    ctx: Context, policy: HealthPolicy, release: dict[str, Any], interval: float
) -> int:
    bg = rel.parse(release, allow_latest=True).blue_green
    assert bg is not None
    old, new = bg.active, bg.inactive
    switched = _transition(lambda: rel.switch(release, new))
    ctx.out(f"checking preview {new} health before switching from {old}")
    health = _after_first_samples(ctx, policy, new, interval, check(policy, new))
    ctx.out(f"preview {new}: {health.summary}")
    if not health.ok:
        reason = f"preview {new} unhealthy, {old} stays active: {health.summary}"
        ctx.out(f"not switching: {reason}")
        apply(ctx, release, "rollback", reason)
        return FAILED
    try:
        release = apply(ctx, switched, "switch", f"preview {new}: {health.summary}")
    except EngineError as exc:
        return _roll_back(ctx, switched, f"switch to {new}: update failed: {_first_line(exc)}")
    if ctx.dry_run:
        return OK
    ctx.out(f"waiting {interval:g}s, then checking {new}")
    ctx.sleep(interval)
    health = check(policy, new)
    ctx.out(f"active {new}: {health.summary}")
    if not health.ok:
        return _roll_back(ctx, release, f"{new} unhealthy after the switch: {health.summary}")
    ctx.out(f"done: {new} is active")
    return OK


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[-1] if lines else type(exc).__name__
