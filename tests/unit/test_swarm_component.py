"""The ``moontv:swarm:MoonTVSwarm`` component under Pulumi mocks, for each release state."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import pulumi
import pytest

from components import release
from components.swarm import spec as sw

OWNER = "owner-Secret-1234"
STORAGE = "storage-Secret-5678"
SECRET_SIG = "4dabf18193072939515e22adb298388d"


class Recorder(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        self.resources.append(args)
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        return {}


def plain(value: Any) -> Any:
    """Inputs with secret wrappers removed (to search them for leaked values)."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) is not None and "value" in value:
            return plain(value["value"])
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def deploy(raw_release: dict, **overrides: Any) -> list[pulumi.runtime.MockResourceArgs]:
    from components.swarm.component import MoonTVSwarm, MoonTVSwarmArgs

    recorder = Recorder()
    pulumi.runtime.set_mocks(recorder, project="moontv", stack="test", preview=False)
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

    @pulumi.runtime.test
    def program() -> pulumi.Output:
        component = MoonTVSwarm("moontv", MoonTVSwarmArgs(spec=spec, **fields))
        return pulumi.Output.all(
            *component.service_names.values(), *component.secret_names.values(),
            *component.config_names.values(), component.network_name,
        )

    program()
    return recorder.resources


def of_type(resources, typ: str) -> dict[str, dict]:
    return {r.name: r.inputs for r in resources if r.typ == typ}


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


CANARY = {"strategy": "canary", "canary": {"version": "v2"}}


def canary(weight: int) -> dict:
    return {"strategy": "canary", "canary": {"version": "v2", "weight": weight}}


def blue_green(active: str, scale_down: bool = False) -> dict:
    return {"strategy": "blue-green",
            "blueGreen": {"blue": "v1", "green": "v2", "active": active,
                          "scaleDownInactive": scale_down}}


STATES = {
    "rolling": ({"strategy": "rolling"}, {"stable": 3}, {"moontv-stable": 100}),
    "canary-0": (canary(0), {"stable": 3, "canary": 3}, {"moontv-stable": 100}),
    "canary-20": (canary(20), {"stable": 3, "canary": 3},
                  {"moontv-stable": 80, "moontv-canary": 20}),
    "canary-20-one-replica": (
        {"strategy": "canary", "canary": {"version": "v2", "weight": 20, "replicas": 1}},
        {"stable": 3, "canary": 1}, {"moontv-stable": 80, "moontv-canary": 20}),
    "canary-100": (canary(100), {"stable": 3, "canary": 3}, {"moontv-canary": 100}),
    "blue-active": (blue_green("blue"), {"blue": 3, "green": 3}, {"moontv-blue": 100}),
    "green-active": (blue_green("green"), {"blue": 3, "green": 3}, {"moontv-green": 100}),
    "scale-down-inactive": (blue_green("green", True), {"blue": 0, "green": 3},
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
    for r in resources:
        if r.typ == "docker:index/secret:Secret":
            continue
        text = json.dumps(plain(r.inputs))
        assert OWNER not in text and STORAGE not in text, f"{r.typ} {r.name} leaks a secret"


def test_secret_data_is_a_secret_output_holding_the_value_and_named_by_its_hash():
    resources = deploy(canary(20))
    secrets = of_type(resources, "docker:index/secret:Secret")
    assert set(secrets) == {"moontv-owner-password", "moontv-storage-url",
                            "moontv-storage-config"}
    owner = secrets["moontv-owner-password"]
    assert owner["data"][SECRET_SIG]  # still wrapped as a secret when it reaches the engine
    assert base64.b64decode(plain(owner["data"])).decode() == OWNER
    assert owner["name"] == sw.secret_name("moontv-test", sw.OWNER_PASSWORD, OWNER)
    storage_url = base64.b64decode(plain(secrets["moontv-storage-url"]["data"])).decode()
    assert storage_url == f"redis://:{STORAGE}@moontv-kvrocks:6666"


def test_app_service_mounts_secrets_as_files_and_starts_through_the_wrapper():
    app = services(deploy(canary(20)))["moontv-canary"]
    container = app["taskSpec"]["containerSpec"]
    assert container["commands"] == ["/bin/sh", "/moontv/entrypoint.sh"]
    assert container["args"] == ["node", "start.js"]
    assert {s["fileName"] for s in container["secrets"]} == {"owner-password", "storage-url"}
    assert all(s["fileMode"] == 0o400 and s["fileUid"] == "1001" for s in container["secrets"])
    assert {c["fileName"] for c in container["configs"]} == {"/moontv/entrypoint.sh",
                                                            "/moontv/site.env"}
    assert container["env"]["HOSTNAME"] == "0.0.0.0"
    assert container["healthcheck"]["tests"][-1] == "http://127.0.0.1:3000/login"
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
    for r in resources:
        if r.typ != "docker:index/secret:Secret":
            assert "ext-pass" not in json.dumps(plain(r.inputs))


def test_given_external_storage_without_url_then_args_refuse_it():
    from components.swarm.component import MoonTVSwarmArgs

    plan = release.plan(release.parse({}), "v1", 1)
    spec = sw.SwarmSpec(stack="moontv", image_repository="r", plan=plan, host="moontv.test",
                        storage_kind="external")
    with pytest.raises(ValueError, match="storage URL: required"):
        MoonTVSwarmArgs(spec=spec, owner_password="x")


def test_the_component_registers_once_under_its_type_token():
    resources = deploy(canary(20))
    component = [r for r in resources if r.typ == "moontv:swarm:MoonTVSwarm"]
    assert [r.name for r in component] == ["moontv"]


def test_given_a_built_image_for_the_stable_version_then_only_stable_tracks_run_it():
    built = "registry.example.org/moontv@sha256:" + "ab" * 32
    resources = deploy(canary(20), image_overrides={"v1": pulumi.Output.from_input(built)})
    images = {name: inputs["taskSpec"]["containerSpec"]["image"]
              for name, inputs in services(resources).items()}
    assert images["moontv-stable"] == built
    assert images["moontv-canary"] == "ghcr.io/moontechlab/lunatv:v2"
