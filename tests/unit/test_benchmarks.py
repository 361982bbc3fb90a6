"""The bench's parsers: the engine log's phases and a BuildKit plain log's cached steps."""

from __future__ import annotations

import json

from benchmarks.engine import breakdown
from benchmarks.image import parse_steps


def _line(second: float, msg: str) -> str:
    return json.dumps({"time": f"2026-11-29T03:00:{second:09.6f}Z", "level": "INFO", "msg": msg})


def test_given_an_engine_log_then_each_phase_is_timed_from_the_first_line() -> None:
    log = "\n".join(
        [
            _line(1.0, "OTLP receiver started"),
            _line(1.5, "langhost[python].GetRequiredPlugins(root=/p) success: #versions=4"),
            _line(1.6, "langhost[python].Run(pwd=/p, dryrun=true) executing"),
            _line(2.0, "ResourceMonitor.RegisterResource received: t=pulumi:pulumi:Stack"),
            _line(
                2.1,
                "newPlugin(): Launching plugin 'kubernetes' from '/bin/pulumi-resource-kubernetes'",
            ),
            _line(2.2, "Provider[0xa].GetPluginInfo() executing"),
            _line(2.3, "Provider[0xa].Configure() success"),
            "not json: plain stderr of a plugin",
            _line(2.4, "ResourceMonitor.RegisterResource received: t=kubernetes:core/v1:Namespace"),
            _line(
                2.5, "Provider[0xa].Check(urn:pulumi:dev::moontv::kubernetes:core/v1:Namespace::ns)"
            ),
            _line(
                2.7, "Provider[0xa].Diff(urn:pulumi:dev::moontv::kubernetes:core/v1:Namespace::ns)"
            ),
            _line(3.0, "langhost[python].Run(pwd=/p, dryrun=true) success: progerr="),
            _line(3.2, "*** Update(preview=true) complete ***"),
        ]
    )
    b = breakdown(log)
    assert round(b.total, 3) == 2.2
    assert (round(b.plugins_known, 3), round(b.run_start, 3), round(b.run_end, 3)) == (
        0.5,
        0.6,
        2.0,
    )
    assert b.registrations == 2
    assert (round(b.first_register or 0, 3), round(b.last_register or 0, 3)) == (1.0, 1.4)
    assert {k: tuple(round(x, 3) for x in v) for k, v in b.providers.items()} == {
        "kubernetes": (1.1, 1.3, 1.5, 1.7)
    }


def test_given_a_buildkit_log_then_cached_and_built_steps_are_told_apart() -> None:
    log = "\n".join(
        [
            "#5 [base 1/2] FROM moontv.local/node-base:20-trixie",
            "#6 [deps 2/4] COPY package.json pnpm-lock.yaml ./",
            "#6 CACHED",
            "#7 [build 1/2] COPY . .",
            "#7 DONE 0.1s",
            "#8 [internal] load build context",
            "#9 [production 3/8] COPY --from=build /app/scripts ./scripts",
            "#9 CACHED",
        ]
    )
    assert parse_steps(log) == [
        ("deps", "COPY package.json pnpm-lock.yaml ./", True),
        ("build", "COPY . .", False),
        ("production", "COPY --from=build /app/scripts ./scripts", True),
    ]
