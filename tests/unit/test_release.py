"""Release strategies and transitions: given a `moontv:release` config, then these tracks."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from components import release as r
from components.errors import ConfigModel, format_errors
from tests.helpers import DIGEST, blue_green, canary


def tracks(cfg: dict[str, Any] | None, replicas: int = 4) -> list[tuple[str, str, int, int, str]]:
    result = r.plan(r.parse(cfg), "v1", replicas)
    return [(t.name, t.version, t.replicas, t.weight, t.role) for t in result.tracks]


def problems(call: Any) -> list[str]:
    with pytest.raises(r.ReleaseError) as info:
        call()
    return info.value.problems


# --- plan ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cfg", "replicas", "expected"),
    [
        (None, 3, [("stable", "v1", 3, 100, "primary")]),
        ({"strategy": "rolling"}, 2, [("stable", "v1", 2, 100, "primary")]),
        # canary: the canary track exists even at weight 0 so the header route reaches it;
        # it runs at full size by default so a weight edit changes the route only
        (canary(0), 4, [("stable", "v1", 4, 100, "primary"), ("canary", "v2", 4, 0, "canary")]),
        (canary(10), 4, [("stable", "v1", 4, 90, "primary"), ("canary", "v2", 4, 10, "canary")]),
        (canary(25), 4, [("stable", "v1", 4, 75, "primary"), ("canary", "v2", 4, 25, "canary")]),
        (canary(50), 4, [("stable", "v1", 4, 50, "primary"), ("canary", "v2", 4, 50, "canary")]),
        (canary(51), 4, [("stable", "v1", 4, 49, "primary"), ("canary", "v2", 4, 51, "canary")]),
        (canary(100), 4, [("stable", "v1", 4, 0, "primary"), ("canary", "v2", 4, 100, "canary")]),
        (
            canary(25, replicas=3),
            4,
            [("stable", "v1", 4, 75, "primary"), ("canary", "v2", 3, 25, "canary")],
        ),
        ({"strategy": "canary"}, 2, [("stable", "v1", 2, 100, "primary")]),
        (
            blue_green("blue", blue="v1", green="v2"),
            3,
            [("blue", "v1", 3, 100, "primary"), ("green", "v2", 3, 0, "preview")],
        ),
        (
            blue_green("green", blue="v1", green="v2", previewReplicas=1),
            3,
            [("green", "v2", 3, 100, "primary"), ("blue", "v1", 1, 0, "preview")],
        ),
        (
            blue_green("blue", blue="v1", green="v2", scaleDownInactive=True),
            3,
            [("blue", "v1", 3, 100, "primary"), ("green", "v2", 0, 0, "idle")],
        ),
        (blue_green("blue", blue="v1"), 3, [("blue", "v1", 3, 100, "primary")]),
    ],
)
def test_given_release_config_then_plan_has_these_tracks(
    cfg: dict[str, Any] | None, replicas: int, expected: list[tuple[str, str, int, int, str]]
) -> None:
    assert tracks(cfg, replicas) == expected


@pytest.mark.parametrize("weight", [0, 25, 50, 100])
def test_given_canary_weight_then_weights_sum_to_100_and_header_forces_a_track(
    weight: int,
) -> None:
    result = r.plan(r.parse(canary(weight, cookie="moontv_canary")), "v1", 2)
    assert sum(t.weight for t in result.tracks) == 100
    assert result.weights == {"stable": 100 - weight, "canary": weight}
    assert (result.primary, result.preview) == ("stable", "canary")
    assert result.header == "x-moontv-canary"
    assert dict(result.header_routes) == {"always": "canary", "never": "stable"}
    assert result.cookie == "moontv_canary"


def test_given_rolling_then_one_primary_track_and_no_preview() -> None:
    result = r.plan(r.parse(None), "v1@" + DIGEST, 2)
    assert (result.strategy, result.primary, result.preview) == ("rolling", "stable", None)
    assert dict(result.header_routes) == {}
    assert [t.version for t in result.tracks] == ["v1@" + DIGEST]


@pytest.mark.parametrize(
    ("cfg", "primary", "preview"),
    [
        (blue_green("blue", blue="v1", green="v2"), "blue", "green"),
        (blue_green("green", blue="v1", green="v2"), "green", "blue"),
        (blue_green("blue", blue="v1", green="v2", scaleDownInactive=True), "blue", None),
        (blue_green("green", green="v2"), "green", None),
    ],
)
def test_given_blue_green_then_active_colour_is_primary(
    cfg: dict[str, Any], primary: str, preview: str | None
) -> None:
    result = r.plan(r.parse(cfg), "ignored", 2)
    assert (result.primary, result.preview) == (primary, preview)
    assert sum(t.weight for t in result.tracks) == 100


def test_given_canary_strategy_without_version_then_only_stable_runs() -> None:
    result = r.plan(r.parse({"strategy": "canary", "canary": {"weight": 0}}), "v1", 2)
    assert [t.name for t in result.tracks] == ["stable"]
    assert result.preview is None
    assert dict(result.header_routes) == {}


@pytest.mark.parametrize(
    ("version", "replicas", "message"),
    [
        ("bad tag", 2, "stable version: must be an image tag"),
        ("v1@sha256:123", 2, "stable version: must be an image tag"),
        ("v1", -1, "replicas: must be an integer >= 0, got -1"),
    ],
)
def test_given_bad_plan_arguments_then_release_error(
    version: str, replicas: int, message: str
) -> None:
    assert message in problems(lambda: r.plan(r.parse(None), version, replicas))[0]


# --- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        (canary(150), ["moontv:release.canary.weight: must be an integer 0..100, got 150"]),
        (canary(101), ["moontv:release.canary.weight: must be an integer 0..100, got 101"]),
        (canary(-1), ["moontv:release.canary.weight: must be an integer 0..100, got -1"]),
        (canary("ten"), ['moontv:release.canary.weight: must be an integer 0..100, got "ten"']),
        (canary(True), ["moontv:release.canary.weight: must be an integer 0..100, got true"]),
        (canary(2.5), ["moontv:release.canary.weight: must be an integer 0..100, got 2.5"]),
        (
            {"strategy": "canary", "canary": {"weight": 20}},
            [
                (
                    "moontv:release.canary.weight: must be 0 while moontv:release.canary.version "
                    "is unset (no canary to send traffic to), got 20"
                )
            ],
        ),
        (
            {"strategy": "linear"},
            [
                (
                    "moontv:release.strategy: must be one of 'rolling', 'blue-green' or 'canary', "
                    'got "linear"'
                )
            ],
        ),
        (
            {"strategy": "canary", "weight": 5},
            [
                (
                    "moontv:release.weight: unknown key; accepted keys: "
                    "strategy, canary, blueGreen, affinity, lastDecision"
                )
            ],
        ),
        (
            blue_green(blue="v1", scale_down_inactive=True),
            [
                (
                    "moontv:release.blueGreen.scale_down_inactive: unknown key; accepted keys: "
                    "blue, green, active, scaleDownInactive, previewReplicas, "
                    "scaleDownDelaySeconds, mirror"
                )
            ],
        ),
        (
            {"strategy": "blue-green"},
            [
                (
                    "moontv:release.blueGreen: is required when strategy is blue-green "
                    "(set blueGreen.blue and/or blueGreen.green, and blueGreen.active)"
                )
            ],
        ),
        (
            blue_green("green", blue="v1"),
            [
                (
                    "moontv:release.blueGreen.green: is required: green is the active colour "
                    "(blueGreen.active)"
                )
            ],
        ),
        (
            blue_green("purple", blue="v1"),
            ["moontv:release.blueGreen.active: must be one of 'blue' or 'green', got \"purple\""],
        ),
        (
            blue_green(blue="v1", previewReplicas=0),
            ["moontv:release.blueGreen.previewReplicas: must be an integer 1..50, got 0"],
        ),
        (
            canary(0, header="x-other"),
            [("moontv:release.canary.header: must be one of 'x-moontv-canary', got \"x-other\"")],
        ),
        (
            canary(0, cookie="a b"),
            [
                (
                    "moontv:release.canary.cookie: must be a cookie name: 1 to 64 letters, "
                    "digits, '_' or '-', got \"a b\""
                )
            ],
        ),
        ("canary", ['moontv:release: must be an object, got "canary"']),
    ],
)
def test_given_invalid_release_config_then_every_problem_names_key_value_and_accepted(
    cfg: Any, expected: list[str]
) -> None:
    assert problems(lambda: r.parse(cfg)) == expected


def test_given_several_problems_then_all_are_reported_at_once() -> None:
    cfg = {"strategy": "x", "canary": {"weight": 101, "version": "no spaces"}, "extra": 1}
    reported = problems(lambda: r.parse(cfg))
    assert [line.split(":", 2)[1] for line in reported] == [
        "release.strategy",
        "release.canary.version",
        "release.canary.weight",
        "release.extra",
    ]


@pytest.mark.parametrize(
    ("version", "allow_latest", "ok"),
    [
        ("v1.2.3", False, True),
        ("1.2.3-rc.1_build", False, True),
        ("_x", False, True),
        ("a" * 128, False, True),
        ("a" * 129, False, False),
        ("-v1", False, False),
        (".v1", False, False),
        ("v1/evil", False, False),
        ("v1@" + DIGEST, False, True),
        ("v1@sha256:" + "AB" * 32, False, False),
        ("v1@sha256:" + "ab" * 31, False, False),
        ("v1@" + DIGEST + "x", False, False),
        ("latest", False, False),
        ("latest", True, True),
        ("latest@" + DIGEST, False, True),
        (42, False, True),
        (True, False, False),
        (["v1"], False, False),
    ],
)
def test_version_strings(version: Any, allow_latest: bool, ok: bool) -> None:
    cfg = {"strategy": "canary", "canary": {"version": version}}
    if ok:
        assert r.parse(cfg, allow_latest=allow_latest).canary.version == str(version)  # type: ignore[union-attr]
    else:
        (line,) = problems(lambda: r.parse(cfg, allow_latest=allow_latest))
        assert line.startswith("moontv:release.canary.version: must")


def test_given_latest_refused_then_message_says_how_to_fix() -> None:
    (line,) = problems(lambda: r.parse(canary(0) | {"canary": {"version": "latest"}}))
    assert line == (
        "moontv:release.canary.version: must not be the mutable tag 'latest' in this "
        'environment; use a version tag or pin it with @sha256:<64 hex>, got "latest"'
    )


def test_given_a_numeric_tag_from_path_config_then_it_is_a_string() -> None:
    assert tracks(canary(10) | {"canary": {"version": 42, "weight": 10}}, 2)[1][1] == "42"


def test_given_numeric_strings_from_config_then_they_are_integers() -> None:
    settings = r.parse({"strategy": "canary", "canary": {"version": "v2", "weight": "25"}})
    assert settings.canary is not None and settings.canary.weight == 25


def test_release_settings_are_frozen() -> None:
    settings = r.parse(canary(10))
    with pytest.raises(pydantic.ValidationError):
        settings.strategy = "rolling"


def test_version_helpers_round_trip() -> None:
    assert r.split_version(r.join_version("v1", DIGEST)) == ("v1", DIGEST)
    assert r.split_version("v1") == ("v1", None)
    assert r.version_problem("v1@" + DIGEST, allow_latest=False, with_digest=False) is not None


# --- format_errors is generic ------------------------------------------------------------------


class _Inner(ConfigModel):
    pass_word: str
    count: int = 1


class _Outer(ConfigModel):
    inner: _Inner
    name: str = "x"


def test_format_errors_with_namespace_prefix_and_redaction() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        _Outer.model_validate({"inner": {"passWord": 5, "count": "many", "other": 1}, "name": 3})
    lines = format_errors(info.value, "moontv:", model=_Outer, redact=["inner.passWord"])
    assert lines == [
        "moontv:inner.passWord: must be a string, got <redacted>",
        'moontv:inner.count: must be an integer, got "many"',
        "moontv:inner.other: unknown key; accepted keys: passWord, count",
        "moontv:name: must be a string, got 3",
    ]


def test_format_errors_reports_missing_keys_without_a_value() -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        _Outer.model_validate({})
    assert format_errors(info.value, "moontv:app") == ["moontv:app.inner: is required"]


# --- transitions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("weight", [0, 1, 25, 50, 99, 100, "50"])
def test_given_canary_when_weight_set_then_config_holds_it(weight: Any) -> None:
    new = r.set_weight(canary(10), weight)
    assert new == canary(int(weight))
    assert r.plan(r.parse(new), "v1", 2).weights["canary"] == int(weight)


def test_transitions_do_not_modify_their_input() -> None:
    cfg = canary(10)
    r.set_weight(cfg, 30)
    r.promote(cfg, {"tag": "v1"})
    r.abort(cfg)
    assert cfg == canary(10)


@pytest.mark.parametrize(
    ("cfg", "weight", "message"),
    [
        (canary(10), 101, "moontv:release.canary.weight: must be an integer 0..100, got 101"),
        (canary(10), -1, "moontv:release.canary.weight: must be an integer 0..100, got -1"),
        (canary(10), "ten", 'moontv:release.canary.weight: must be an integer 0..100, got "ten"'),
        (
            {"strategy": "canary"},
            10,
            (
                "moontv:release.canary.version: set-weight needs a canary; "
                "set moontv:release.canary.version first"
            ),
        ),
        (
            None,
            10,
            'moontv:release.strategy: set-weight needs strategy canary, got "rolling"',
        ),
        (
            blue_green(blue="v1"),
            10,
            'moontv:release.strategy: set-weight needs strategy canary, got "blue-green"',
        ),
        (
            {"strategy": "bogus"},
            10,
            (
                "moontv:release.strategy: must be one of 'rolling', 'blue-green' or 'canary', "
                'got "bogus"'
            ),
        ),
    ],
)
def test_given_invalid_set_weight_then_release_error(cfg: Any, weight: Any, message: str) -> None:
    assert problems(lambda: r.set_weight(cfg, weight)) == [message]


@pytest.mark.parametrize(
    ("version", "image", "new_image"),
    [
        ("v2", {"repository": "moontv", "tag": "v1"}, {"repository": "moontv", "tag": "v2"}),
        ("v2", {"tag": "v1", "digest": DIGEST}, {"tag": "v2"}),
        ("v2@" + DIGEST, {"tag": "v1"}, {"tag": "v2", "digest": DIGEST}),
    ],
)
def test_given_canary_when_promoted_then_canary_version_becomes_the_image(
    version: str, image: dict[str, Any], new_image: dict[str, Any]
) -> None:
    cfg = {"strategy": "canary", "canary": {"version": version, "weight": 50, "cookie": "c"}}
    result = r.promote(cfg, image)
    assert result.image == new_image
    previous = r.join_version(image["tag"], image.get("digest"))
    assert result.release == {
        "strategy": "canary",
        "canary": {"weight": 0, "cookie": "c", "previous": previous},
    }
    assert result.summary == f"image version is now {version}"
    promoted = r.plan(
        r.parse(result.release), r.join_version(new_image["tag"], new_image.get("digest")), 2
    )
    assert [(t.name, t.version, t.weight) for t in promoted.tracks] == [("stable", version, 100)]


def test_given_blue_green_when_promoted_then_preview_colour_becomes_active() -> None:
    result = r.promote(blue_green("blue", blue="v1", green="v2"), {"tag": "v1"})
    assert result.release == blue_green("green", blue="v1", green="v2")
    assert result.image == {"tag": "v1"}
    assert r.plan(r.parse(result.release), "v1", 2).primary == "green"


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        (canary(50), canary(0)),
        (canary(0), canary(0)),
        (blue_green("green", blue="v1", green="v2"), blue_green("blue", blue="v1", green="v2")),
        (blue_green("blue", blue="v1", green="v2"), blue_green("green", blue="v1", green="v2")),
    ],
)
def test_rollback(cfg: dict[str, Any], expected: dict[str, Any]) -> None:
    assert r.rollback(cfg) == expected


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        (canary(50), {"strategy": "canary", "canary": {"weight": 0}}),
        (blue_green("blue", blue="v1", green="v2"), blue_green("blue", blue="v1")),
    ],
)
def test_abort_drops_the_release_candidate(cfg: dict[str, Any], expected: dict[str, Any]) -> None:
    new = r.abort(cfg)
    assert new == expected
    assert len(r.plan(r.parse(new), "v1", 2).tracks) == 1


@pytest.mark.parametrize(
    ("cfg", "colour", "expected"),
    [
        (blue_green("blue", blue="v1", green="v2"), "green", "green"),
        (blue_green("blue", blue="v1", green="v2"), "blue", "blue"),
    ],
)
def test_switch(cfg: dict[str, Any], colour: str, expected: str) -> None:
    assert r.switch(cfg, colour)["blueGreen"]["active"] == expected


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: r.switch(blue_green("blue", blue="v1"), "green"),
            (
                "moontv:release.blueGreen.green: cannot switch to green, it has no version; "
                "set moontv:release.blueGreen.green first"
            ),
        ),
        (
            lambda: r.switch(blue_green("blue", blue="v1", green="v2"), "red"),
            "moontv:release.blueGreen.active: must be 'blue' or 'green', got \"red\"",
        ),
        (
            lambda: r.switch(canary(10), "green"),
            'moontv:release.strategy: switch needs strategy blue-green, got "canary"',
        ),
        (
            lambda: r.promote({"strategy": "canary"}, {"tag": "v1"}),
            (
                "moontv:release.canary.version: promote needs a canary; "
                "set moontv:release.canary.version first"
            ),
        ),
        (
            lambda: r.promote(blue_green("blue", blue="v1"), {"tag": "v1"}),
            (
                "moontv:release.blueGreen.green: cannot switch to green, it has no version; "
                "set moontv:release.blueGreen.green first"
            ),
        ),
        (
            lambda: r.promote(None, {"tag": "v1"}),
            ('moontv:release.strategy: promote needs strategy canary or blue-green, got "rolling"'),
        ),
        (
            lambda: r.rollback({"strategy": "rolling"}),
            (
                "moontv:release.strategy: rollback needs strategy canary or blue-green, "
                'got "rolling"'
            ),
        ),
        (
            lambda: r.rollback({"strategy": "canary"}),
            (
                "moontv:release.canary.version: rollback needs a canary; "
                "set moontv:release.canary.version first"
            ),
        ),
        (
            lambda: r.abort(blue_green("blue", blue="v1")),
            (
                "moontv:release.blueGreen.green: nothing to abort, the inactive colour has no "
                "version"
            ),
        ),
        (
            lambda: r.abort({"strategy": "canary", "canary": {}}),
            (
                "moontv:release.canary.version: abort needs a canary; "
                "set moontv:release.canary.version first"
            ),
        ),
    ],
)
def test_given_invalid_transition_then_release_error(call: Any, message: str) -> None:
    assert problems(call) == [message]


def test_record_stores_the_decision() -> None:
    new = r.record(canary(10), "rollback", "success 0.5 < 0.99", "2026-01-01T00:00:00Z")
    settings = r.parse(new)
    assert settings.last_decision == r.Decision.model_validate(
        {"action": "rollback", "reason": "success 0.5 < 0.99", "at": "2026-01-01T00:00:00Z"}
    )
    assert problems(lambda: r.record(canary(10), "explode", "x", "t"))[0].startswith(  # type: ignore[arg-type]
        "moontv:release.lastDecision.action: must be one of"
    )


@pytest.mark.parametrize(
    ("cfg", "version", "expected"),
    [
        (
            {"strategy": "canary"},
            "v3",
            {"strategy": "canary", "canary": {"version": "v3", "weight": 0}},
        ),
        (canary(0), "v3", {"strategy": "canary", "canary": {"version": "v3", "weight": 0}}),
        (canary(30), "v2", canary(0)),
        (
            blue_green("blue", blue="v1", green="v2"),
            "v3",
            blue_green("blue", blue="v1", green="v3"),
        ),
        (blue_green("green", green="v2"), "v3", blue_green("green", green="v2", blue="v3")),
    ],
)
def test_given_strategy_when_staged_then_candidate_deployed_without_default_traffic(
    cfg: dict[str, Any], version: str, expected: dict[str, Any]
) -> None:
    new = r.stage(cfg, version)
    assert new == expected
    primary = r.plan(r.parse(new), "v1", 2)
    assert primary.weights[primary.primary] == 100


@pytest.mark.parametrize(
    ("cfg", "version", "message"),
    [
        (
            canary(30),
            "v3",
            (
                "moontv:release.canary.version: v2 takes 30% of traffic; promote, roll back or "
                "abort it before staging another version"
            ),
        ),
        (
            canary(0),
            "not a tag!",
            "moontv:release.canary.version: must be an image tag",
        ),
        (
            None,
            "v3",
            'moontv:release.strategy: stage needs strategy canary or blue-green, got "rolling"',
        ),
    ],
)
def test_given_invalid_stage_then_release_error(cfg: Any, version: str, message: str) -> None:
    (line,) = problems(lambda: r.stage(cfg, version))
    assert line.startswith(message)
