"""Image tag policy (pure: no Pulumi, no I/O).

From what is being built (a git ref, the commit, the pull request, the target environment)
derive the image tags, the same way in CI and in the Pulumi program:

* release tag ``v1.2.3``          -> ``1.2.3``, ``1.2``, ``1`` (no ``1``/``1.2`` floating tags for
  pre-releases such as ``v1.2.3-rc.1``, and no bare major for ``0.x``)
* every build                     -> ``sha-<first 7 hex of the commit>``
* branch ``feature/Login``        -> ``feature-login`` (sanitised to Docker's tag grammar)
* pull request 42                 -> ``pr-42``
* environment ``staging``         -> ``staging``
* ``latest``                      -> only when asked for *and* the environment is ``dev``.

``python -m components.tags --help`` prints the tags for CI.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass

LATEST = "latest"
LATEST_ENVIRONMENTS = frozenset({"dev"})
SHORT_SHA_LENGTH = 7
MAX_TAG_LENGTH = 128

_SEMVER = re.compile(
    r"^v?(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
    r"(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)
_SHA = re.compile(r"^[0-9a-fA-F]{7,64}$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


class TagPolicyError(ValueError):
    """An input the tag policy cannot accept; the message names the input."""


@dataclass(frozen=True)
class TagInputs:
    """What a build is made from.

    ``ref`` is a git ref (``refs/tags/v1.2.3``, ``refs/heads/main``, ``refs/pull/7/merge``) or
    None; ``sha`` the commit; ``environment`` the stack the image is for, if any.
    """

    sha: str
    ref: str | None = None
    pr_number: int | None = None
    environment: str | None = None
    latest: bool = False


def sanitise(value: str) -> str:
    """Map a free string (branch, environment) into Docker's tag grammar, lower case."""
    cleaned = re.sub(r"[^a-z0-9_.-]+", "-", value.lower())
    cleaned = re.sub(r"-{2,}", "-", cleaned).strip("-.")
    return cleaned[:MAX_TAG_LENGTH].rstrip("-.")


def semver_tags(version: str) -> tuple[str, ...]:
    """``v1.2.3`` -> (1.2.3, 1.2, 1); pre-releases only get their full version; () if no semver."""
    match = _SEMVER.match(version)
    if match is None:
        return ()
    major, minor, patch = match.group("major", "minor", "patch")
    full = f"{major}.{minor}.{patch}"
    if match.group("pre"):
        return (f"{full}-{match.group('pre')}",)
    if major == "0":
        return (full, f"{major}.{minor}")
    return (full, f"{major}.{minor}", major)


def image_tags(inputs: TagInputs) -> tuple[str, ...]:
    """All tags for one build, most specific first, without duplicates."""
    if not _SHA.match(inputs.sha):
        raise TagPolicyError(f"sha: must be 7 to 64 hex characters, got {inputs.sha!r}")
    if inputs.pr_number is not None and inputs.pr_number < 1:
        raise TagPolicyError(f"pr: must be a positive integer, got {inputs.pr_number}")
    environment = sanitise(inputs.environment) if inputs.environment else None
    if inputs.environment is not None and not environment:
        raise TagPolicyError(f"environment: no usable characters in {inputs.environment!r}")
    if environment == LATEST:
        raise TagPolicyError("environment: 'latest' is not an environment name")
    if inputs.latest and environment not in LATEST_ENVIRONMENTS:
        allowed = ", ".join(sorted(LATEST_ENVIRONMENTS))
        raise TagPolicyError(
            f"latest: only allowed for environment {allowed}, got environment {environment!r}"
        )

    tags: list[str] = []
    tags.extend(_ref_tags(inputs.ref))
    if inputs.pr_number is not None:
        tags.append(f"pr-{inputs.pr_number}")
    tags.append(f"sha-{inputs.sha[:SHORT_SHA_LENGTH].lower()}")
    if environment:
        tags.append(environment)
    if inputs.latest:
        tags.append(LATEST)
    unique = tuple(dict.fromkeys(tags))
    for tag in unique:
        if not _TAG.match(tag):
            raise TagPolicyError(f"tag {tag!r} is not a valid Docker tag")
    return unique


def _ref_tags(ref: str | None) -> tuple[str, ...]:
    if not ref:
        return ()
    if ref.startswith("refs/tags/"):
        name = ref.removeprefix("refs/tags/")
        return semver_tags(name) or _named(name, "tag", ref)
    if ref.startswith("refs/heads/"):
        return _named(ref.removeprefix("refs/heads/"), "branch", ref)
    if ref.startswith("refs/pull/"):
        return ()  # pull requests are tagged from their number
    raise TagPolicyError(
        f"ref: expected refs/tags/..., refs/heads/... or refs/pull/..., got {ref!r}"
    )


def _named(name: str, kind: str, ref: str) -> tuple[str, ...]:
    tag = sanitise(name)
    if not tag:
        raise TagPolicyError(f"ref: no usable characters in {kind} name of {ref!r}")
    if tag == LATEST:
        tag = f"{kind}-{LATEST}"  # a branch named 'latest' must not mint the latest tag
    return (tag,)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m components.tags",
        description="Print the image tags for a build, one per line (the project's tag policy).",
    )
    parser.add_argument("--sha", required=True, help="commit SHA (7 to 64 hex characters)")
    parser.add_argument("--ref", help="git ref, e.g. refs/tags/v1.2.3 or refs/heads/main")
    parser.add_argument("--pr", type=int, help="pull request number")
    parser.add_argument("--environment", help="target environment (stack), e.g. staging")
    parser.add_argument("--latest", action="store_true", help="also tag 'latest' (dev only)")
    parser.add_argument(
        "--repository", help="prefix every tag with this repository, e.g. ghcr.io/org/moontv"
    )
    args = parser.parse_args(argv)
    try:
        tags = image_tags(
            TagInputs(
                sha=args.sha,
                ref=args.ref,
                pr_number=args.pr,
                environment=args.environment,
                latest=args.latest,
            )
        )
    except TagPolicyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for tag in tags:
        print(f"{args.repository}:{tag}" if args.repository else tag)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
