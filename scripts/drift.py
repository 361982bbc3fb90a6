"""Drift report: does what runs match the program and the stack file?

Runs ``pulumi preview --refresh --json`` on a stack (through tools/stack.sh, so with the project's
engine set-up): the engine first reads every resource back from where it runs, then diffs it
against the program. Every step other than ``same`` is drift, reported with the resource and the
fields that differ, the live value and the value the program declares.

    venv/bin/python scripts/drift.py STACK [--preview-json FILE] [--summary FILE]

Exit status: 0 no drift, 1 drift found, 2 bad input, 3 the preview failed.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NO_DRIFT, DRIFT, USAGE, FAILED = 0, 1, 2, 3
QUIET_OPS = {"same", "read", "refresh"}
_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]|\[\"([^\"]+)\"\]")


@dataclass(frozen=True)
class Field:
    path: str
    kind: str  # add, delete, update (and -replace variants)
    live: Any
    declared: Any


@dataclass(frozen=True)
class Drift:
    op: str
    type: str
    name: str
    fields: tuple[Field, ...]

    def lines(self) -> list[str]:
        out = [f"  {self.type} {self.name}: {self.op}"]
        if self.op == "create":
            out.append("    missing: it is in the program but not where it runs")
        elif self.op == "delete":
            out.append("    not in the program (removed from the program, still running)")
        for f in self.fields:
            if self.op == CHANGED_OUTSIDE:
                out.append(
                    f"    {f.path}: {f.kind}; `pulumi up` takes it back with "
                    "PULUMI_K8S_ENABLE_PATCH_FORCE=true"
                )
                continue
            out.append(
                f"    {f.path} ({f.kind}): live {_show(f.live)}, program {_show(f.declared)}"
            )
        return out


def drifts(preview: dict[str, Any]) -> list[Drift]:
    """The drifted resources of a ``pulumi preview --json`` digest: its changed steps, and the
    fields another field manager took over (server-side apply conflicts fail the preview)."""
    found = conflicts(preview)
    for step in preview.get("steps") or []:
        op = step.get("op", "")
        if op in QUIET_OPS:
            continue
        urn = step.get("urn", "")
        old = step.get("oldState") or {}
        new = step.get("newState") or {}
        live = old.get("outputs") or old.get("inputs") or {}
        declared = new.get("inputs") or {}
        detailed = step.get("detailedDiff") or {
            key: {"kind": "update"} for key in step.get("diffReasons") or []
        }
        fields = tuple(
            Field(path, str(diff.get("kind", "update")), lookup(live, path), lookup(declared, path))
            for path, diff in sorted(detailed.items())
        )
        kind, name = _type_and_name(urn)
        if kind.startswith("pulumi:providers:") or kind == "pulumi:pulumi:Stack":
            continue
        metadata = declared.get("metadata") or live.get("metadata") or {}
        if isinstance(metadata, dict) and metadata.get("name"):
            name = f"{metadata.get('namespace', '')}/{metadata['name']}".lstrip("/")
        found.append(Drift(op, kind, name, fields))
    return found


CHANGED_OUTSIDE = "changed outside the program"
_CONFLICT_RESOURCE = re.compile(r'"([^"]+)" failed to fully initialize or become live')
_CONFLICT = re.compile(
    r'conflict with "(?P<manager>[^"]+)"(?: with subresource "(?P<sub>[^"]+)")?'
    r" using \S+: (?P<field>\S+)"
)


def conflicts(preview: dict[str, Any]) -> list[Drift]:
    """Fields changed behind the program's back by another field manager (``kubectl scale``,
    ``kubectl edit``, a controller): the Kubernetes provider's server-side apply refuses to take
    them back silently and the preview fails naming them."""
    found = []
    for diagnostic in preview.get("diagnostics") or []:
        message = diagnostic.get("message") or ""
        fields = tuple(
            Field(
                m["field"].lstrip("."),
                f"owned by {m['manager']!r}" + (f" ({m['sub']})" if m["sub"] else ""),
                None,
                None,
            )
            for m in _CONFLICT.finditer(message)
        )
        if not fields:
            continue
        kind, name = _type_and_name(diagnostic.get("urn") or "")
        resource = _CONFLICT_RESOURCE.search(message)
        found.append(Drift(CHANGED_OUTSIDE, kind, resource[1] if resource else name, fields))
    return found


def lookup(obj: Any, path: str) -> Any:
    """``spec.template.spec.containers[0].image`` in a decoded resource; None when absent."""
    for match in _PART.finditer(path):
        key, index, quoted = match.groups()
        if index is not None:
            if not isinstance(obj, list) or int(index) >= len(obj):
                return None
            obj = obj[int(index)]
        else:
            if not isinstance(obj, dict):
                return None
            obj = obj.get(quoted if quoted is not None else key)
    return obj


def report(stack: str, found: list[Drift]) -> str:
    if not found:
        return f"no drift in {stack}: every resource matches the program"
    lines = [
        f"drift in {stack}: {len(found)} resource(s) differ from the program "
        "(pulumi preview --refresh; `pulumi up` would put them back):"
    ]
    for drift in found:
        lines += drift.lines()
    return "\n".join(lines)


def _type_and_name(urn: str) -> tuple[str, str]:
    # urn:pulumi:<stack>::<project>::<parent$...$type>::<name>
    parts = urn.split("::")
    if len(parts) < 4:
        return urn, urn
    return parts[2].rsplit("$", 1)[-1], parts[3]


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, dict) and value.get("4dabf18193072939515e22adb298388d"):
        return "[secret]"
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."


def preview(stack: str) -> dict[str, Any]:
    result = subprocess.run(
        ["bash", str(ROOT / "tools/stack.sh"), "preview", stack, "--refresh", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        digest = json.loads(result.stdout) if result.stdout.strip() else {}
    except ValueError:
        digest = {}
    if result.returncode != 0 and conflicts(digest):
        return digest
    if result.returncode != 0 or not digest:
        errors = [
            d.get("message", "").strip()
            for d in digest.get("diagnostics") or []
            if d.get("severity") == "error"
        ]
        unique = list(dict.fromkeys(e for e in errors if e and e != "error: preview failed"))
        lines = unique[:5] or (result.stderr or result.stdout).strip().splitlines()[-15:]
        raise RuntimeError(f"pulumi preview --refresh failed on {stack}:\n" + "\n".join(lines))
    return digest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/drift.py",
        description="Report drift of a stack: pulumi preview --refresh, every resource and field "
        "that differs between where it runs and the program.",
        epilog="Exit status: 0 no drift, 1 drift found, 2 bad input, 3 the preview failed.",
    )
    parser.add_argument("stack", help="stack to check, e.g. staging")
    parser.add_argument(
        "--preview-json",
        type=Path,
        help="read a saved `pulumi preview --json` instead of running it",
    )
    parser.add_argument("--summary", type=Path, help="also append the report (Markdown) to FILE")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]*", args.stack):
        print(f"drift.py: error: STACK must be a stack name, got {args.stack!r}", file=sys.stderr)
        return USAGE
    try:
        digest = (
            json.loads(args.preview_json.read_text()) if args.preview_json else preview(args.stack)
        )
    except (OSError, ValueError) as exc:
        print(f"drift.py: error: --preview-json: {exc}", file=sys.stderr)
        summarize(args.summary, args.stack, f"no drift check: --preview-json: {exc}")
        return USAGE
    except RuntimeError as exc:
        print(f"drift.py: {exc}", file=sys.stderr)
        summarize(args.summary, args.stack, f"no drift check: {exc}")
        return FAILED
    found = drifts(digest)
    text = report(args.stack, found)
    print(text)
    summarize(args.summary, args.stack, text)
    return DRIFT if found else NO_DRIFT


def summarize(summary: Path | None, stack: str, text: str) -> None:
    """Append ``text`` under the stack's heading to the run summary (Markdown), if any."""
    if summary:
        with summary.open("a", encoding="utf-8") as out:
            out.write(f"### {stack}\n\n```\n{text}\n```\n\n")


if __name__ == "__main__":
    sys.exit(main())
