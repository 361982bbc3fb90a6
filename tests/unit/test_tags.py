"""Table tests for the image tag policy (components/tags.py)."""

from __future__ import annotations

import pytest

from components.tags import TagInputs, TagPolicyError, image_tags, main, sanitise, semver_tags

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("v1.2.3", ("1.2.3", "1.2", "1")),
        ("1.2.3", ("1.2.3", "1.2", "1")),
        ("v10.0.7", ("10.0.7", "10.0", "10")),
        ("v0.4.1", ("0.4.1", "0.4")),
        ("v1.2.3-rc.1", ("1.2.3-rc.1",)),
        ("v1.2.3+build.5", ("1.2.3", "1.2", "1")),
        ("v1.2", ()),
        ("v01.2.3", ()),
        ("release-7", ()),
    ],
)
def test_semver_tags(version: str, expected: tuple[str, ...]) -> None:
    assert semver_tags(version) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("main", "main"),
        ("feature/Login-Page", "feature-login-page"),
        ("fix//weird__name!!", "fix-weird__name"),
        ("-.leading", "leading"),
        ("x" * 200, "x" * 128),
    ],
)
def test_sanitise(raw: str, expected: str) -> None:
    assert sanitise(raw) == expected


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        (
            TagInputs(sha=SHA, ref="refs/tags/v1.2.3", environment="prod"),
            ("1.2.3", "1.2", "1", "sha-0123456", "prod"),
        ),
        (
            TagInputs(sha=SHA, ref="refs/heads/main", environment="staging"),
            ("main", "sha-0123456", "staging"),
        ),
        (
            TagInputs(sha=SHA, ref="refs/heads/feature/Canary_Header"),
            ("feature-canary_header", "sha-0123456"),
        ),
        (
            TagInputs(sha=SHA, ref="refs/pull/42/merge", pr_number=42),
            ("pr-42", "sha-0123456"),
        ),
        (
            TagInputs(sha=SHA, ref="refs/heads/main", environment="dev", latest=True),
            ("main", "sha-0123456", "dev", "latest"),
        ),
        (
            TagInputs(sha=SHA, ref="refs/heads/latest", environment="staging"),
            ("branch-latest", "sha-0123456", "staging"),
        ),
        (
            TagInputs(sha=SHA, ref="refs/tags/nightly"),
            ("nightly", "sha-0123456"),
        ),
        (
            TagInputs(sha=SHA.upper(), ref="refs/heads/dev", environment="dev"),
            ("dev", "sha-0123456"),
        ),
        (TagInputs(sha=SHA), ("sha-0123456",)),
    ],
)
def test_image_tags(inputs: TagInputs, expected: tuple[str, ...]) -> None:
    assert image_tags(inputs) == expected


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (TagInputs(sha=SHA, environment="prod", latest=True), "latest: only allowed"),
        (TagInputs(sha=SHA, environment="staging", latest=True), "latest: only allowed"),
        (TagInputs(sha=SHA, latest=True), "latest: only allowed"),
        (TagInputs(sha=SHA, environment="latest"), "environment: 'latest'"),
        (TagInputs(sha="xyz"), "sha: must be 7 to 64 hex"),
        (TagInputs(sha=SHA, pr_number=0), "pr: must be a positive"),
        (TagInputs(sha=SHA, ref="main"), "ref: expected refs/tags/"),
        (TagInputs(sha=SHA, ref="refs/heads/!!!"), "ref: no usable characters"),
        (TagInputs(sha=SHA, environment="///"), "environment: no usable characters"),
    ],
)
def test_image_tags_rejects(inputs: TagInputs, message: str) -> None:
    with pytest.raises(TagPolicyError, match=message):
        image_tags(inputs)


def test_given_no_dev_environment_then_no_input_yields_latest() -> None:
    for ref in ("refs/heads/main", "refs/tags/v2.0.0", "refs/heads/latest", None):
        for env in ("staging", "prod", None):
            assert "latest" not in image_tags(TagInputs(sha=SHA, ref=ref, environment=env))


def test_cli_prints_repository_qualified_tags(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--sha", SHA, "--ref", "refs/tags/v3.1.0", "--repository", "ghcr.io/o/moontv"])
    assert code == 0
    assert capsys.readouterr().out.splitlines() == [
        "ghcr.io/o/moontv:3.1.0",
        "ghcr.io/o/moontv:3.1",
        "ghcr.io/o/moontv:3",
        "ghcr.io/o/moontv:sha-0123456",
    ]


def test_cli_reports_policy_errors_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--sha", SHA, "--environment", "prod", "--latest"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith("error: latest: only allowed for environment dev")
    assert "Traceback" not in captured.err
