"""The test-image cache key: what counts as an input of the app twin image, and bad arguments."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.integration import images


@pytest.fixture
def fixture_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "app"
    shutil.copytree(
        images.APP_FIXTURE, copy, ignore=shutil.ignore_patterns(".next", "node_modules")
    )
    return copy


def test_given_the_same_sources_then_the_key_is_the_same(fixture_copy: Path) -> None:
    assert images._tree_digest(fixture_copy) == images._tree_digest(images.APP_FIXTURE)


def test_given_a_one_line_source_change_then_the_key_changes(fixture_copy: Path) -> None:
    before = images._tree_digest(fixture_copy)
    app = fixture_copy / "src" / "app" / "page.js"
    app.write_text(app.read_text() + "// changed\n")
    assert images._tree_digest(fixture_copy) != before


def test_given_a_renamed_file_then_the_key_changes(fixture_copy: Path) -> None:
    before = images._tree_digest(fixture_copy)
    (fixture_copy / "public" / "robots.txt").rename(fixture_copy / "public" / "robots2.txt")
    assert images._tree_digest(fixture_copy) != before


def test_given_local_build_outputs_then_the_key_ignores_them(fixture_copy: Path) -> None:
    before = images._tree_digest(fixture_copy)
    (fixture_copy / "node_modules" / "redis").mkdir(parents=True)
    (fixture_copy / "node_modules" / "redis" / "index.js").write_text("x")
    (fixture_copy / ".next").mkdir()
    (fixture_copy / ".next" / "BUILD_ID").write_text("abc")
    assert images._tree_digest(fixture_copy) == before


@pytest.mark.parametrize(
    ("version", "fault", "message"),
    [
        (
            "100.1.2",
            "sometimes",
            "fault must be one of none, errors, flaky, login, got 'sometimes'",
        ),
        ("1.0 beta", "none", "version must be letters, digits, '.', '+' or '-', got '1.0 beta'"),
    ],
)
def test_given_a_bad_variant_then_build_app_says_what_is_accepted(
    version: str, fault: str, message: str
) -> None:
    with pytest.raises(images.ImageBuildError) as err:
        images.build_app("moontv.local/lunatv-twin:test", version, fault)
    assert str(err.value) == message


def test_the_fault_modes_are_the_ones_the_twin_implements() -> None:
    source = (images.APP_FIXTURE / "src" / "middleware.js").read_text()
    for mode in images.FAULTS[1:]:
        assert f"FAULT === '{mode}'" in source
