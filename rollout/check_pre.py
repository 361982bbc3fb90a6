"""Checks run before a deployment (``python -m rollout check pre``)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from croniter import croniter  # type: ignore[import-untyped]

from components import image_lifecycle, naming
from components import release as rel
from components.image_settings import DEFAULT_REPOSITORY, UPSTREAM_RELEASES
from components.settings import is_placeholder_digest
from rollout.check_data import key_counts, state_file
from rollout.check_types import (
    Result,
    Target,
    failed,
    no_cluster,
    passed,
    skipped,
    validated,
    warned,
)

#: The upstream repository: its tags are UPSTREAM_RELEASES (the GitHub release names) and `latest`.
UPSTREAM_REPOSITORY = DEFAULT_REPOSITORY
#: Slack added to the schedule's longest gap before the newest backup counts as too old.
BACKUP_GRACE = timedelta(hours=1)


def check_config(t: Target) -> Result:
    model, deferred = validated(t.config)
    where = model.kubernetes.context or model.kubernetes.render_dir or "current context"
    reason = f"{model.environment} on {model.platform} ({where}), {len(t.config)} keys valid"
    if deferred:
        reason += f"; {len(deferred)} rule(s) on secret objects are checked by the preview"
    return passed("config", reason)


def check_policy(t: Target) -> Result:
    problem = t.preview()
    if problem:
        return failed("policy", f"pulumi preview with the policy pack failed: {problem}")
    return passed("policy", "pulumi preview with the policy pack passed")


#: Every image the stack runs: ``what -> reference`` (one definition, shared with the program).
images = image_lifecycle.stack_images


def _split(ref: str) -> tuple[str, str | None, str | None]:
    """``repo:tag@sha256:…`` -> (repository, tag, digest)."""
    name, _, digest = ref.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :], digest or None
    return name, None, digest or None


def check_images_pinned(t: Target) -> Result:
    model = t.settings()
    prod = model.environment == "prod"
    problems = []
    for what, ref in images(model).items():
        _, tag, digest = _split(ref)
        if prod and not digest:
            problems.append(f"{what} {ref}: prod pins every image by digest (@sha256:…)")
        elif not tag and not digest:
            problems.append(f"{what} {ref}: no tag (an implicit latest)")
        elif tag == "latest" and not digest and model.environment != "dev":
            problems.append(f"{what} {ref}: latest is a moving target (dev only)")
    if problems:
        return failed("images-pinned", "; ".join(problems))
    return passed(
        "images-pinned",
        f"{len(images(model))} images pinned" + (" by digest" if prod else " by tag or digest"),
    )


def check_images_exist(t: Target) -> Result:
    model = t.settings()
    missing, unknown, found = [], [], 0
    for what, ref in images(model).items():
        repository, tag, digest = _split(ref)
        if digest and is_placeholder_digest(digest.removeprefix("sha256:")):
            missing.append(f"{what} {ref}: the digest is a placeholder (all-zero or another "
                           "repeating pattern)")
            continue
        if (
            repository == UPSTREAM_REPOSITORY
            and tag
            and tag != "latest"
            and tag not in UPSTREAM_RELEASES
        ):
            missing.append(
                f"{what} {ref}: upstream publishes no tag {tag} (tags are the "
                "release names listed in components/image_settings.py)"
            )
            continue
        exists = t.image_exists(ref)
        if exists is True:
            found += 1
        elif exists is False:
            missing.append(f"{what} {ref}: not found")
        else:
            unknown.append(what)
    if missing:
        return failed("images-exist", "; ".join(missing))
    reason = f"{found} found"
    if unknown:
        reason += f"; {len(unknown)} not checkable here (no registry access): {', '.join(unknown)}"
    return passed("images-exist", reason)


def check_image_lifecycle(t: Target) -> Result:
    """Warn (never fail) when an image of the stack is past its line's end of life or below a
    known fix (components/image_lifecycle.py)."""
    model = t.settings()
    problems = image_lifecycle.warnings(model, t.now().date())
    if problems:
        return warned("image-lifecycle", "; ".join(problems))
    return passed(
        "image-lifecycle",
        f"{len(image_lifecycle.lifecycle_images(model))} images: none past end of life or "
        "below a known fix",
    )


def longest_gap(schedule: str, start: datetime) -> timedelta:
    """The longest time between two runs of a cron ``schedule`` over its next few runs."""
    runs = croniter(schedule, start)
    times: list[datetime] = [runs.get_next(datetime) for _ in range(32)]
    return max(b - a for a, b in zip(times, times[1:], strict=False))


def check_backup_age(t: Target) -> Result:
    model = t.settings()
    backup = model.storage.backup
    if model.storage.kind == "external":
        return skipped("backup-age", "storage.kind is external: its backups are its operator's")
    if not backup.enabled:
        return skipped("backup-age", "storage.backup.enabled is false")
    if t.cluster is None:
        return no_cluster("backup-age", model)
    name = naming.resource_name(naming.APP, model.storage.kind, "backup")
    if t.cluster.get("namespace", None, model.namespace) is None:
        return skipped(
            "backup-age",
            f"namespace {model.namespace} does not exist yet: "
            "a first deployment has no data to lose",
        )
    job = t.cluster.get("cronjob", model.namespace, name)
    if job is None:
        return failed("backup-age", f"CronJob {name} is missing in {model.namespace}")
    last = (job.get("status") or {}).get("lastSuccessfulTime")
    if not last:
        return failed(
            "backup-age",
            f"CronJob {name} has never completed a backup; take one: "
            f"kubectl -n {model.namespace} create job --from=cronjob/{name} "
            f"{name}-manual",
        )
    when = datetime.fromisoformat(last.replace("Z", "+00:00"))
    now = t.now()
    allowed = longest_gap(job["spec"].get("schedule", backup.schedule), now) + BACKUP_GRACE
    age = now - when
    measured = (
        f"newest backup {_human(age)} old (schedule {backup.schedule!r} allows {_human(allowed)})"
    )
    if age > allowed:
        return failed("backup-age", f"{measured}: too old")
    return passed("backup-age", measured)


def _human(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m"


def git_versions(stack: str, work_dir: Path) -> list[str]:
    """The stable image versions ``Pulumi.<stack>.yaml`` held in git, newest first."""
    import yaml

    path = f"Pulumi.{stack}.yaml"
    log = subprocess.run(
        ["git", "log", "--format=%H", "-n", "50", "--", path],
        cwd=work_dir,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    versions: list[str] = []
    for commit in log.stdout.split():
        shown = subprocess.run(
            ["git", "show", f"{commit}:{path}"],
            cwd=work_dir,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        try:
            image = (yaml.safe_load(shown.stdout) or {}).get("config", {}).get("moontv:image")
        except yaml.YAMLError:
            continue
        if isinstance(image, dict) and image.get("tag"):
            version = rel.join_version(str(image["tag"]), image.get("digest"))
            if not versions or versions[-1] != version:
                versions.append(version)
    return versions


def check_rollback_target(t: Target) -> Result:
    model = t.settings()
    release = model.release
    if release.strategy == "blue-green" and release.blue_green is not None:
        bg = release.blue_green
        if t.cluster is not None and t.cluster.get("namespace", None, model.namespace) is None:
            return passed(
                "rollback-target",
                f"first release: namespace {model.namespace} does not exist yet, nothing "
                "serves that a rollback would go back to",
            )
        # The active colour serves until the switch, and a switch back returns to it.
        serving, candidate = bg.version_of(bg.active), bg.version_of(bg.inactive)
        if candidate == serving:
            return failed(
                "rollback-target",
                f"blue-green: both colours run {serving}, so a switch back changes nothing",
            )
        staged = f"{bg.inactive} holds {candidate}" if candidate else f"{bg.inactive} is free"
        return passed(
            "rollback-target",
            f"blue-green: {bg.active} keeps {serving} serving until the switch ({staged}); "
            f"`python -m rollout switch {bg.active} --stack {t.stack}` goes back",
        )
    if release.strategy == "canary":
        return passed(
            "rollback-target",
            f"canary: stable {model.image.version} keeps the "
            f"traffic; `python -m rollout rollback --stack {t.stack}` sets weight 0",
        )
    history: Callable[[], list[str]] = t.extra.get("history", lambda: [])
    previous = [v for v in history() if v != model.image.version]
    if not previous:
        return failed(
            "rollback-target",
            "rolling: no earlier image version of this stack is "
            f"recorded in git (Pulumi.{t.stack}.yaml)",
        )
    return passed(
        "rollback-target",
        f"rolling: the previous version {previous[0]} is recorded "
        f"in git; redeploy it with `pulumi config set --path moontv:image.tag …`",
    )


def check_data_snapshot(t: Target) -> Result:
    """Record the key counts that ``check post`` compares with."""
    if t.storage_url is None:
        return skipped("data-snapshot", "no --storage-url: post cannot compare key counts")
    counts = key_counts(t.storage_url, t.timeout)
    path = state_file(t.state_dir, t.stack)
    path.write_text(json.dumps({"at": t.now().isoformat(), "counts": counts}))
    return passed(
        "data-snapshot",
        f"{counts['total']} keys ({counts['u:*:fav']} favourite "
        f"lists, {counts['admin:config']} admin config) recorded in {path}",
    )


CHECKS = [
    check_config,
    check_policy,
    check_images_pinned,
    check_images_exist,
    check_image_lifecycle,
    check_backup_age,
    check_rollback_target,
    check_data_snapshot,
]
