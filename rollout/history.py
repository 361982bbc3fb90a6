"""``python -m rollout history``: past release decisions, read from git.

Every decision the CLI makes is written to ``moontv:release.lastDecision`` of the stack file, and
the deployment workflow commits that file back (``scripts/release-state.sh record``). So the
history of a stack's decisions is the history of that key in git: each commit of
``Pulumi.<stack>.yaml`` whose ``lastDecision`` differs from the one before it. A decision in the
working tree that is not committed yet is listed first, marked ``uncommitted``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from rollout.stack import IMAGE_KEY, RELEASE_KEY, UsageError

UNCOMMITTED = "uncommitted"


@dataclass(frozen=True)
class Decision:
    stack: str
    at: str
    action: str
    reason: str
    state: str  # what the stack ran after the decision
    commit: str  # short commit id, or "uncommitted"
    author: str

    def line(self) -> str:
        return (
            f"{self.at:<20}  {self.stack:<8}  {self.action:<10}  {self.state}\n"
            f"{'':<22}{self.reason}\n"
            f"{'':<22}{self.commit} {self.author}"
        )


def add_parser(sub: Any) -> None:
    history = sub.add_parser(
        "history",
        help="past release decisions of a stack, from git and moontv:release.lastDecision",
        description="List the release decisions recorded in git: every commit of "
        "Pulumi.<stack>.yaml that changed moontv:release.lastDecision (newest first), and a "
        "decision in the working tree that is not committed yet. Needs no engine.",
    )
    history.add_argument(
        "--stack",
        action="append",
        help="stack to list (repeatable; default: every Pulumi.<stack>.yaml beside Pulumi.yaml)",
    )
    history.add_argument(
        "--cwd",
        type=Path,
        default=Path(__file__).resolve().parents[1],
        help="directory holding Pulumi.yaml, inside a git checkout (default: the repository root)",
    )
    history.add_argument("--limit", type=_positive_int, default=20, help="at most N (default 20)")
    history.add_argument("--json", action="store_true", help="one JSON list instead of text")


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number ≥ 1, got {text!r}")
    return int(text)


def run(args: argparse.Namespace, out: Any = print) -> int:
    work_dir: Path = args.cwd.resolve()
    if not (work_dir / "Pulumi.yaml").is_file():
        raise UsageError(f"--cwd: no Pulumi.yaml in {work_dir}")
    stacks = args.stack or sorted(
        p.name[len("Pulumi.") : -len(".yaml")] for p in work_dir.glob("Pulumi.*.yaml")
    )
    found: list[Decision] = []
    for stack in stacks:
        found.extend(decisions(work_dir, stack))
    found.sort(key=lambda d: (d.commit == UNCOMMITTED, d.at), reverse=True)
    found = found[: args.limit]
    if args.json:
        out(json.dumps([asdict(d) for d in found], indent=2))
    elif not found:
        out(f"no release decisions recorded for {', '.join(stacks)}")
    else:
        out("\n".join(d.line() for d in found))
    return 0


def decisions(work_dir: Path, stack: str) -> list[Decision]:
    """The decisions of ``stack``, newest first."""
    path = f"Pulumi.{stack}.yaml"
    if not (work_dir / path).is_file():
        raise UsageError(f"--stack: no stack file {path} in {work_dir}")
    commits = _commits(work_dir, path)
    texts = _blobs(work_dir, [f"{sha}:{path}" for sha, _ in commits])
    revisions: list[tuple[str, str, dict[str, Any]]] = [
        (UNCOMMITTED, "", _config((work_dir / path).read_text(encoding="utf-8")))
    ]
    revisions += [
        (sha[:10], author, _config(text))
        for (sha, author), text in zip(commits, texts, strict=True)
    ]
    found = []
    for (commit, author, config), (_, _, older) in zip(
        revisions, [*revisions[1:], ("", "", {})], strict=True
    ):
        last = _last(config)
        if last and last != _last(older):
            found.append(
                Decision(
                    stack=stack,
                    at=str(last.get("at", "")),
                    action=str(last.get("action", "")),
                    reason=str(last.get("reason", "")),
                    state=describe(config),
                    commit=commit,
                    author=author,
                )
            )
    return found


def describe(config: dict[str, Any]) -> str:
    """What the stack runs according to ``config``, in a few words."""
    image = config.get(IMAGE_KEY) or {}
    release = config.get(RELEASE_KEY) or {}
    strategy = release.get("strategy", "rolling")
    if strategy == "blue-green":
        bg = release.get("blueGreen") or {}
        active = bg.get("active", "blue")
        return f"blue-green: {active} {_short(bg.get(active))} active"
    stable = f"stable {_short(image.get('tag'))}"
    if strategy == "canary":
        canary = release.get("canary") or {}
        if canary.get("version"):
            return f"{stable}, canary {_short(canary['version'])} at {canary.get('weight', 0)}%"
    return stable


def _short(version: Any) -> str:
    """``v1@sha256:abcdef…`` shortened to ``v1@sha256:abcdef12``."""
    text = str(version) if version else "?"
    tag, sep, digest = text.partition("@sha256:")
    return f"{tag}@sha256:{digest[:8]}" if sep else tag


def _last(config: dict[str, Any]) -> dict[str, Any]:
    last = (config.get(RELEASE_KEY) or {}).get("lastDecision")
    return last if isinstance(last, dict) else {}


def _config(text: str) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        return {}
    config = loaded.get("config") if isinstance(loaded, dict) else None
    return config if isinstance(config, dict) else {}


def _git(work_dir: Path, args: Sequence[str], stdin: str | None = None) -> str:
    try:
        result = subprocess.run(
            ["git", *args], cwd=work_dir, input=stdin, capture_output=True, text=True, check=True
        )
    except FileNotFoundError:
        raise UsageError("history reads git: install git") from None
    except subprocess.CalledProcessError as exc:
        raise UsageError(
            f"--cwd: {work_dir} is not a git checkout ({exc.stderr.strip()})"
        ) from None
    return result.stdout


def _commits(work_dir: Path, path: str) -> list[tuple[str, str]]:
    """(commit, author) of every commit that changed ``path``, newest first."""
    log = _git(work_dir, ["log", "--format=%H%x1f%an", "--", path])
    return [tuple(line.split("\x1f", 1)) for line in log.splitlines() if line]  # type: ignore[misc]


def _blobs(work_dir: Path, specs: list[str]) -> list[str]:
    """The contents of ``commit:path`` specs, read in one ``git cat-file --batch``."""
    if not specs:
        return []
    raw = subprocess.run(
        ["git", "cat-file", "--batch"],
        cwd=work_dir,
        input="\n".join(specs).encode() + b"\n",
        capture_output=True,
        check=True,
    ).stdout
    texts, pos = [], 0
    for _ in specs:
        header_end = raw.index(b"\n", pos)
        header = raw[pos:header_end].split()
        if len(header) < 3 or header[1] == b"missing":
            texts.append("")
            pos = header_end + 1
            continue
        size = int(header[2])
        texts.append(raw[header_end + 1 : header_end + 1 + size].decode("utf-8", "replace"))
        pos = header_end + 1 + size + 1
    return texts
