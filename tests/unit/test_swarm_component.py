"""The ``moontv:swarm:MoonTVSwarm`` component under Pulumi mocks, for each release state."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import pulumi
import pytest

from components import naming, release
from components.swarm import spec as sw
from tests.helpers import both_colours, canary
from tests.program import Run, is_secret, run_program, unwrap

OWNER = "owner-Secret-1234"
STORAGE = "storage-Secret-5678"


def deploy(
    raw_release: dict, options: dict[str, pulumi.ResourceOptions] | None = None, **overrides: Any
) -> Run:
    """Run the component under mocks; ``options`` (if given) collects each child's options."""
    from components.swarm.component import MoonTVSwarm, MoonTVSwarmArgs

    def record(args: pulumi.ResourceTransformationArgs) -> None:
        if options is not None:
            options[args.name] = args.opts

    plan = release.plan(release.parse(raw_release), "v1", 3)
    spec_fields = {f.name for f in dataclasses.fields(sw.SwarmSpec)}
    spec = sw.SwarmSpec(
        stack="moontv-test", image_repository="ghcr.io/moontechlab/lunatv", plan=plan,
        host="moontv.example.org", site_env={"NEXT_PUBLIC_SITE_NAME": "MoonTV"},
        **{k: v for k, v in overrides.items() if k in spec_fields},
    )
    fields: dict[str, Any] = {
        "owner_password": pulumi.Output.secret(OWNER),
        "storage_password": pulumi.Output.secret(STORAGE),
        **{k: v for k, v in overrides.items() if k not in spec_fields},
    }

    def program() -> None:
        MoonTVSwarm("moontv", MoonTVSwarmArgs(spec=spec, **fields),
                    opts=pulumi.ResourceOptions(transformations=[record]))

    return run_program(program)


def of_type(run: Run, typ: str) -> dict[str, dict]:
    """Logical name -> inputs (secrets still wrapped) of every resource of ``typ``."""
    return run.raw(typ)


def services(resources) -> dict[str, dict]:
    return of_type(resources, "docker:index/service:Service")


def app_replicas(resources) -> dict[str, int]:
    return {
        name.removeprefix("moontv-"): inputs["mode"]["replicated"]["replicas"]
        for name, inputs in services(resources).items()
        if inputs["labels"] and {"label": "app.kubernetes.io/component", "value": "app"}
        in inputs["labels"]
    }


def dynamic_config(resources) -> dict:
    import yaml

    configs = of_type(resources, "docker:index/serviceConfig:ServiceConfig")
    return yaml.safe_load(configs["moontv-edge-dynamic"]["dataRaw"])


def weights(resources) -> dict[str, int]:
    entries = dynamic_config(resources)["http"]["services"]["moontv"]["weighted"]["services"]
    return {e["name"]: e["weight"] for e in entries}


STATES = {
    "rolling": ({"strategy": "rolling"}, {"stable": 3}, {"moontv-stable": 100}),
    "canary-0": (canary(0), {"stable": 3, "canary": 3}, {"moontv-stable": 100}),
    "canary-20": (canary(20), {"stable": 3, "canary": 3},
                  {"moontv-stable": 80, "moontv-canary": 20}),
    "canary-20-one-replica": (
        {"strategy": "canary", "canary": {"version": "v2", "weight": 20, "replicas": 1}},
        {"stable": 3, "canary": 1}, {"moontv-stable": 80, "moontv-canary": 20}),
    "canary-100": (canary(100), {"stable": 3, "canary": 3}, {"moontv-canary": 100}),
    "blue-active": (both_colours("blue"), {"blue": 3, "green": 3}, {"moontv-blue": 100}),
    "green-active": (both_colours("green"), {"blue": 3, "green": 3}, {"moontv-green": 100}),
    "scale-down-inactive": (both_colours("green", scaleDownInactive=True), {"blue": 0, "green": 3},
                            {"moontv-green": 100}),
}


@pytest.mark.parametrize("state", list(STATES))
def test_given_release_state_then_services_replicas_and_edge_weights_follow(state):
    raw, replicas, expected_weights = STATES[state]
    resources = deploy(raw)
    assert app_replicas(resources) == replicas
    assert weights(resources) == expected_weights
    names = set(services(resources))
    assert {"moontv-kvrocks", "moontv-edge", "moontv-edge-config"} <= names


@pytest.mark.parametrize("state", list(STATES))
def test_given_release_state_then_no_secret_value_appears_outside_swarm_secrets(state):
    resources = deploy(STATES[state][0])
    for r in resources.resources:
        if r.type == "docker:index/secret:Secret":
            continue
        text = json.dumps(r.inputs)
        assert OWNER not in text and STORAGE not in text, f"{r.type} {r.name} leaks a secret"


def test_secret_data_is_a_secret_output_holding_the_value_and_named_by_its_hash():
    resources = deploy(canary(20))
    secrets = of_type(resources, "docker:index/secret:Secret")
    assert set(secrets) == {"moontv-owner-password", "moontv-storage-url",
                            "moontv-storage-config"}
    owner = secrets["moontv-owner-password"]
    assert is_secret(owner["data"])  # still wrapped as a secret when it reaches the engine
    assert base64.b64decode(unwrap(owner["data"])).decode() == OWNER
    assert owner["name"] == sw.secret_name("moontv-test", sw.OWNER_PASSWORD, OWNER)
    storage_url = base64.b64decode(unwrap(secrets["moontv-storage-url"]["data"])).decode()
    assert storage_url == f"redis://:{STORAGE}@moontv-kvrocks:6666"


def test_app_service_mounts_secrets_as_files_and_starts_through_the_wrapper():
    app = services(deploy(canary(20)))["moontv-canary"]
    container = app["taskSpec"]["containerSpec"]
    assert container["commands"] == ["/bin/sh", "/moontv/entrypoint.sh"]
    assert container["args"][-3:] == ["--", "node", "start.js"]
    assert {s["fileName"] for s in container["secrets"]} == {"owner-password", "storage-url"}
    assert all(s["fileMode"] == 0o400 and s["fileUid"] == "1001" for s in container["secrets"])
    assert {c["fileName"] for c in container["configs"]} == {"/moontv/entrypoint.sh",
                                                            "/moontv/site.env"}
    assert "HOSTNAME=0.0.0.0" in container["args"]
    assert container["healthcheck"]["tests"][-1] == sw.login_probe(3000)
    assert app["updateConfig"]["order"] == "start-first"
    assert app["updateConfig"]["failureAction"] == "rollback"
    assert app["rollbackConfig"]["order"] == "start-first"
    assert app["endpointSpec"]["mode"] == "dnsrr"
    assert app["taskSpec"]["networksAdvanceds"][0]["aliases"] == ["moontv-canary"]
    limits = app["taskSpec"]["resources"]["limits"]
    assert limits == {"nanoCpus": 1_000_000_000, "memoryBytes": 768 * 1024 * 1024}


def test_edge_publishes_the_port_in_host_mode_and_storage_has_a_named_volume():
    resources = deploy(canary(20), http_port=8080)
    svc = services(resources)
    ports = svc["moontv-edge"]["endpointSpec"]["ports"]
    assert ports == [{"targetPort": 80, "publishedPort": 8080, "publishMode": "host",
                      "protocol": "tcp"}]
    volumes = of_type(resources, "docker:index/volume:Volume")
    assert volumes["moontv-storage-data"]["name"] == "moontv-test-storage-data"
    mount = svc["moontv-kvrocks"]["taskSpec"]["containerSpec"]["mounts"][0]
    assert mount["source"] == "moontv-test-storage-data"
    assert mount["target"] == "/var/lib/kvrocks"
    network = of_type(resources, "docker:index/network:Network")["moontv-net"]
    assert network["driver"] == "overlay" and network["attachable"] is True


def test_a_weight_change_renames_the_edge_dynamic_config_only():
    def names(resources) -> dict[str, str]:
        configs = of_type(resources, "docker:index/serviceConfig:ServiceConfig")
        return {k: v["name"] for k, v in configs.items()}

    one, two = names(deploy(canary(20))), names(deploy(canary(25)))
    assert {k for k in one if one[k] != two[k]} == {"moontv-edge-dynamic"}


def test_external_storage_has_no_storage_service_volume_or_config_secret():
    resources = deploy(canary(20), storage_kind="external", storage_password=None,
                       storage_url=pulumi.Output.secret("redis://:ext-pass@db:6379"))
    assert "moontv-kvrocks" not in services(resources)
    assert "moontv-storage-data" not in of_type(resources, "docker:index/volume:Volume")
    assert set(of_type(resources, "docker:index/secret:Secret")) == {
        "moontv-owner-password", "moontv-storage-url"}
    for r in resources.resources:
        if r.type != "docker:index/secret:Secret":
            assert "ext-pass" not in json.dumps(r.inputs)


def test_given_external_storage_without_url_then_args_refuse_it():
    from components.swarm.component import MoonTVSwarmArgs

    plan = release.plan(release.parse({}), "v1", 1)
    spec = sw.SwarmSpec(stack="moontv", image_repository="r", plan=plan, host="moontv.test",
                        storage_kind="external")
    with pytest.raises(ValueError, match="storage URL: required"):
        MoonTVSwarmArgs(spec=spec, owner_password="x")


def test_the_component_registers_once_under_its_type_token():
    resources = deploy(canary(20))
    component = [r for r in resources.resources if r.type == "moontv:swarm:MoonTVSwarm"]
    assert [r.name for r in component] == ["moontv"]


def test_given_a_built_image_for_the_stable_version_then_only_stable_tracks_run_it():
    built = "registry.example.org/moontv@sha256:" + "ab" * 32
    resources = deploy(canary(20), image_overrides={"v1": pulumi.Output.from_input(built)})
    images = {name: inputs["taskSpec"]["containerSpec"]["image"]
              for name, inputs in services(resources).items()}
    assert images["moontv-stable"] == built
    assert images["moontv-canary"] == "ghcr.io/moontechlab/lunatv:v2"


# --- what the docker provider does with these inputs ------------------------------------------
# The provider reads durations back in Go's short form ("1m", not "60s"), builds the container
# environment from a map (in random order), replaces explicitly named objects delete-first
# unless told otherwise, and waits at most the stop grace period for removed containers.

DURATIONS = {
    ("taskSpec", "containerSpec", "healthcheck"): ("interval", "timeout", "startPeriod"),
    ("taskSpec", "containerSpec"): ("stopGracePeriod",),
    ("taskSpec", "restartPolicy"): ("delay", "window"),
    ("updateConfig",): ("delay", "monitor"),
    ("rollbackConfig",): ("delay", "monitor"),
}
GO_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3}


def seconds(duration: str) -> float:
    """A Go duration string (``1m30s``, ``500ms``) in seconds."""
    import re

    parts = re.findall(r"([0-9.]+)(h|ms|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, f"not a Go duration: {duration!r}"
    return sum(float(n) * GO_UNITS[u] for n, u in parts)


def durations(inputs: dict) -> dict[str, str]:
    found = {}
    for path, keys in DURATIONS.items():
        node: Any = inputs
        for step in path:
            node = node.get(step) or {}
        for key in keys:
            if key in node:
                found[".".join((*path, key))] = node[key]
    return found


def test_every_duration_is_sent_in_the_form_the_provider_reads_back():
    for name, inputs in services(deploy(canary(20))).items():
        for field_path, value in durations(inputs).items():
            total = seconds(value)
            whole_minutes = total >= 60 and total % 60 == 0
            assert not (value.endswith("s") and not value.endswith("ms") and total >= 60), (
                f"{name} {field_path}={value!r}: the provider reads it back as minutes")
            assert not (whole_minutes and not value.endswith(("m", "h"))), (name, field_path)
            assert not value.endswith(("m0s", "h0m")), (name, field_path, value)


def test_the_app_restart_window_and_start_period_read_back_unchanged():
    app = services(deploy(canary(20)))["moontv-canary"]
    assert app["taskSpec"]["restartPolicy"]["window"] == "1m"
    assert app["taskSpec"]["containerSpec"]["healthcheck"]["startPeriod"] == "1m"
    for svc in services(deploy(canary(20))).values():
        assert svc["updateConfig"]["maxFailureRatio"] == "0.0"  # the provider writes %.1f


def test_no_service_gives_the_provider_an_environment_map_it_could_reorder():
    for name, inputs in services(deploy(canary(20))).items():
        env = inputs["taskSpec"]["containerSpec"].get("env") or {}
        assert len(env) <= 1, f"{name}: {sorted(env)} would reach Swarm in random order"


def test_the_app_settings_reach_the_task_as_ordered_arguments_of_the_wrapper():
    one = services(deploy(canary(20)))["moontv-canary"]["taskSpec"]["containerSpec"]
    two = services(deploy(canary(20)))["moontv-canary"]["taskSpec"]["containerSpec"]
    assert one["args"] == two["args"]
    args = one["args"]
    separator = args.index("--")
    assert args[separator + 1:] == ["node", "start.js"]
    settings = dict(a.split("=", 1) for a in args[:separator])
    assert settings["HOSTNAME"] == "0.0.0.0" and settings["PORT"] == "3000"
    assert not {"MOONTV_TRACK", "MOONTV_VERSION"} & set(settings)
    service = services(deploy(canary(20)))["moontv-canary"]
    for owner in (service, one):  # the service and its task containers
        labels = {item["label"]: item["value"] for item in owner["labels"]}
        assert labels["app.kubernetes.io/version"] == "v2"
        assert labels[naming.TRACK_LABEL] == "canary"
    assert settings["MOONTV_WAIT_FOR"] == "moontv-kvrocks:6666"


def test_content_named_configs_and_secrets_are_replaced_create_first():
    options: dict[str, pulumi.ResourceOptions] = {}
    resources = deploy(canary(20), options=options)
    kinds = ("docker:index/serviceConfig:ServiceConfig", "docker:index/secret:Secret")
    named = [r.name for r in resources.resources if r.type in kinds]
    assert len(named) == 6
    for name in named:
        assert options[name].delete_before_replace is False, name


def test_stop_grace_periods_outlast_the_measured_shutdown_times():
    overlay_removal_s = 6  # removing a task container on the overlay network
    traefik_shutdown_s = 15  # requestAcceptGraceTimeout 5 s + Traefik's graceTimeOut 10 s
    grace = {name.removeprefix("moontv-"): seconds(inputs["taskSpec"]["containerSpec"][
        "stopGracePeriod"]) for name, inputs in services(deploy(canary(20))).items()}
    assert all(g >= 2 * overlay_removal_s for g in grace.values()), grace
    assert grace["edge"] >= traefik_shutdown_s + 2 * overlay_removal_s, grace


def test_the_app_healthcheck_and_storage_wait_need_only_node():
    app = services(deploy(canary(20)))["moontv-canary"]["taskSpec"]["containerSpec"]
    test = app["healthcheck"]["tests"]
    assert test[:2] == ["CMD", "node"]
    assert "/login" in test[-1]
    configs = of_type(deploy(canary(20)), "docker:index/serviceConfig:ServiceConfig")
    script = configs["moontv-entrypoint"]["dataRaw"]
    assert "nc " not in script and "wget" not in script and "node -e" in script


def test_every_task_runs_with_a_read_only_root_and_the_app_gets_its_writable_paths():
    svcs = services(deploy(canary(20)))
    for name, inputs in svcs.items():
        assert inputs["taskSpec"]["containerSpec"]["readOnly"] is True, name
    mounts = {m["target"]: m for m in svcs["moontv-canary"]["taskSpec"]["containerSpec"]["mounts"]}
    public = mounts["/app/public"]
    # an anonymous volume per task: Docker fills it from the image's /app/public
    assert public["type"] == "volume" and not public.get("source")
    assert not (public.get("volumeOptions") or {}).get("noCopy")
    assert {t for t, m in mounts.items() if m["type"] == "tmpfs"} == {"/tmp", "/app/.next/cache"}
