"""Stack config validation: every problem reported at once, each naming its key."""

from __future__ import annotations

import base64
import copy
import json
import re
import subprocess
import sys
import typing
from typing import Any

import pulumi
import pydantic
import pytest

from components import app_facts, passwords, settings
from components import release as release_model
from components.errors import ConfigError
from tests.program import (
    OWNER_PASSWORD,
    ROOT,
    RecordingMocks,
    Run,
    language_host_config,
    load_program,
    run_stack,
    stack_config,
)


def raw(stack: str = "dev") -> dict:
    """The ``moontv:*`` keys of a shipped stack file, without the namespace prefix."""
    return {k.split(":", 1)[1]: v for k, v in stack_config(stack).items()}


def with_(base: dict, path: str, value) -> dict:
    """A copy of ``base`` with the dotted ``path`` set to ``value`` (None removes it)."""
    out = copy.deepcopy(base)
    *parents, leaf = path.split(".")
    node = out
    for part in parents:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return out


def problems(config: dict) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        settings.validate(config)
    return exc.value.problems


BAD = [
    # (stack, key path, bad value, expected key in message, expected hint)
    ("dev", "release.canary.weight", 150, "moontv:release.canary.weight", "100"),
    ("dev", "release.canary.weight", -1, "moontv:release.canary.weight", "0"),
    ("dev", "release.canary.weight", "ten", "moontv:release.canary.weight", "integer"),
    ("dev", "release.strategy", "big-bang", "moontv:release.strategy", "canary"),
    ("dev", "replicas", 0, "moontv:replicas", "1"),
    ("dev", "replicas", "three", "moontv:replicas", "integer"),
    ("dev", "environment", "qa", "moontv:environment", "'staging'"),
    ("dev", "platform", "nomad", "moontv:platform", "'swarm'"),
    ("dev", "namespace", "Moon_TV", "moontv:namespace", "a DNS label"),
    ("dev", "image.tag", "bad tag!", "moontv:image.tag", "image tag"),
    ("dev", "image.digest", "sha256:xyz", "moontv:image.digest", "sha256:"),
    ("dev", "image", None, "moontv:image", "required"),
    ("dev", "storage.kind", "mysql", "moontv:storage.kind", "'kvrocks'"),
    ("dev", "storage.size", "5 gigs", "moontv:storage.size", "a size"),
    ("dev", "storage.backup.schedule", "every day", "moontv:storage.backup.schedule", "cron"),
    ("dev", "storage.backup.retention", 0, "moontv:storage.backup.retention", "1"),
    ("dev", "resources.limits.cpu", "lots", "moontv:resources.limits.cpu", "CPU quantity"),
    ("dev", "resources.requests.memory", "1GB", "moontv:resources.requests.memory", "Mi"),
    ("dev", "autoscaling.targetCpu", 150, "moontv:autoscaling.targetCpu", "100"),
    ("dev", "traffic.provider", "traefik", "moontv:traffic.provider", "'gateway'"),
    ("dev", "traffic.host", "Not A Host", "moontv:traffic.host", "a DNS name in lower case"),
    ("dev", "site.searchMaxPage", 0, "moontv:site.searchMaxPage", "an integer 1..50"),
    ("dev", "site.searchMaxPage", 51, "moontv:site.searchMaxPage", "an integer 1..50"),
    ("dev", "site.doubanProxyType", "foo", "moontv:site.doubanProxyType", "'direct'"),
    ("dev", "storage.sise", "5Gi", "moontv:storage.sise", "size"),
    ("dev", "replica", 2, "moontv:replica", "accepted keys:"),
    ("staging", "image.tag", "latest", "moontv:image.tag", "'latest'"),
    ("prod", "release.blueGreen.blue", "v100.1.1", "moontv:release.blueGreen.blue", "digest"),
    ("staging", "release.canary.version", "latest", "moontv:release.canary.version", "'latest'"),
    ("prod", "replicas", 2, "moontv:replicas", "at least 3"),
    ("dev", "image.repository", "GHCR.io/MoonTV", "moontv:image.repository", "lower case"),
    ("dev", "image.repository", "ghcr.io/moontv:v1", "moontv:image.repository", "without tag"),
    ("dev", "image.build", {"context": "../LunaTV", "tags": {"gitSha": "a" * 40},
                            "registry": {"server": "docker.io", "username": "ci"}},
     "moontv:image.build.registry.server", "registry of moontv:image.repository (ghcr.io)"),
    ("staging", "image.build", {"context": "../LunaTV", "tags": {"gitSha": "a" * 40,
                                                                "latest": True}},
     "moontv:image.build.tags", "latest: only allowed"),
]


@pytest.mark.parametrize(("stack", "path", "value", "key", "hint"), BAD,
                         ids=[f"{b[0]}-{b[1]}={b[2]!r}" for b in BAD])
def test_given_a_bad_value_then_the_error_names_the_key_and_what_is_accepted(
        stack, path, value, key, hint):
    found = problems(with_(raw(stack), path, value))
    matching = [p for p in found if p.startswith(key + ":")]
    assert matching, f"no problem names {key}: {found}"
    assert any(hint in p for p in matching), matching


def test_given_a_malformed_repository_with_image_build_then_it_is_refused_before_any_resource(run):
    build = {"context": "../LunaTV", "tags": {"gitSha": "a" * 40}, "load": True}
    image = {"repository": "Example/MoonTV", "tag": "v100.1.2", "build": build}
    with pytest.raises(ConfigError) as exc:
        run("dev", {"moontv:image": image})
    assert [p.split(":")[1] for p in exc.value.problems] == ["image.repository"]


def test_given_cross_key_conflicts_then_each_is_reported():
    config = with_(raw(), "autoscaling", {"minReplicas": 5, "maxReplicas": 2})
    assert any("moontv:autoscaling" in p and "maxReplicas" in p for p in problems(config))
    config = with_(raw(), "traffic.tls", {"secretName": "a", "issuer": "b"})
    assert any(p.startswith("moontv:traffic.tls") for p in problems(config))
    config = with_(raw(), "kubernetes.context", "prod")
    assert any(p.startswith("moontv:kubernetes") for p in problems(config))
    config = with_(with_(raw("prod"), "release.strategy", "rolling"), "image.digest", None)
    assert any(p.startswith("moontv:image.digest: prod requires") for p in problems(config))
    config = with_(raw(), "storage.kind", "external")
    assert any(p.startswith("moontv:storageUrl: required") for p in problems(config))


def test_given_several_bad_keys_then_all_are_reported_at_once():
    config = with_(with_(with_(raw(), "replicas", 0), "storage.kind", "mysql"),
                   "release.canary.weight", 150)
    found = problems(config)
    for key in ("moontv:replicas", "moontv:storage.kind", "moontv:release.canary.weight"):
        assert any(p.startswith(key + ":") for p in found), (key, found)
    assert len(found) == 3


def test_given_a_bad_secret_value_then_the_error_never_echoes_it():
    config = with_(raw(), "ownerPassword", ["s3cr3t-value"])
    found = problems(config)
    assert any(p.startswith("moontv:ownerPassword") for p in found)
    assert not any("s3cr3t-value" in p for p in found)


def test_given_the_shipped_stack_files_then_they_validate():
    for stack in ("dev", "staging", "prod"):
        model = settings.validate(raw(stack))
        assert model.environment == stack


def test_given_a_secret_key_set_without_secret_then_the_program_refuses_it():
    with pytest.raises(ConfigError) as exc:
        run_stack("dev", overrides={"moontv:ownerPassword": OWNER_PASSWORD})
    expected = ("moontv:ownerPassword: must be set as a secret "
                "(pulumi config set --secret moontv:ownerPassword …)")
    assert exc.value.problems == [expected]


def test_given_defaults_then_storage_is_kvrocks_and_traffic_is_gateway():
    model = settings.validate({"environment": "dev", "image": {"tag": "v1"},
                               "kubernetes": {"renderDir": "rendered/dev"}})
    assert model.storage.kind == "kvrocks"
    assert model.traffic.provider == "gateway"
    assert model.image.version == "v1"
    assert model.plan.strategy == "rolling"


# --- purity: settings read config and build data, nothing else ---------------------------------


def test_given_settings_imported_alone_then_no_resource_module_is_loaded():
    code = ("import sys, components.settings; "
            "print('\\n'.join(m for m in sys.modules if m.startswith(('pulumi_', 'components'))))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, check=True)
    loaded = set(result.stdout.split())
    assert loaded <= {"components", "components.settings", "components.errors",
                      "components.release", "components.image_settings", "components.tags",
                      "components.app_facts", "components.naming", "components.quantity",
                      "components._kubernetes_quantity", "components.image_defaults",
                      "components.monitoring", "components.monitoring.model"}, loaded


def test_given_no_owner_password_when_settings_load_then_no_resource_is_registered():
    run = Run()
    pulumi.runtime.set_mocks(RecordingMocks(run), project="moontv", stack="dev", preview=False)
    loaded: list[settings.Settings] = []

    @pulumi.runtime.test
    def go():
        loaded.append(settings.load())

    with language_host_config(stack_config("dev"), []):
        go()
    assert run.resources == []
    assert loaded[0].owner_password is None  # the platform component generates it


def test_given_no_owner_password_then_the_platform_generates_one_for_the_secret(run):
    result = run("dev")
    [password] = [r for r in result.of_type(passwords.TYPE) if r.name == "owner-password"]
    assert password.inputs["length"] == passwords.OWNER_PASSWORD_LENGTH
    [secret] = [r for r in result.kind("Secret") if "PASSWORD" in r.inputs["stringData"]]
    assert secret.inputs["stringData"]["PASSWORD"] in result.secrets


def test_given_a_stack_when_the_program_runs_then_the_release_plan_is_computed_once(monkeypatch):
    calls = []
    original = release_model.plan

    def counting(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(release_model, "plan", counting)
    run_stack("staging")
    assert len(calls) == 1


def test_given_a_misspelt_top_level_key_in_the_stack_file_then_the_program_refuses_it():
    with pytest.raises(ConfigError) as exc:
        run_stack("dev", overrides={"moontv:replica": 2})
    assert exc.value.problems[0].startswith("moontv:replica: unknown key; accepted keys:")


def test_given_pulumi_runtime_then_the_config_api_settings_rely_on_still_behaves(monkeypatch):
    # pulumi.Config can neither list the keys of a namespace nor tell a secret value apart;
    # settings.py uses these two functions exported by pulumi.runtime for that.
    assert {"get_config_env", "is_config_secret"} <= set(pulumi.runtime.__all__)
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"moontv:replica": "2"}))
    assert pulumi.runtime.get_config_env() == {"moontv:replica": "2"}
    assert "replica" in settings.config_keys()
    pulumi.runtime.set_all_config({"moontv:ownerPassword": "x"}, ["moontv:ownerPassword"])
    assert pulumi.runtime.is_config_secret("moontv:ownerPassword")
    assert not pulumi.runtime.is_config_secret("moontv:replicas")


def _fields(model: type[pydantic.BaseModel], seen: set[type]) -> list[tuple[str, Any]]:
    """Every (key path, field) of ``model`` and the models nested in it."""
    if model in seen:
        return []
    seen.add(model)
    found = []
    for name, info in model.model_fields.items():
        key = f"{model.__name__}.{info.alias or name}"
        found.append((key, info))
        for nested in _models_in(info.annotation):
            found.extend(_fields(nested, seen))
    return found


def _models_in(annotation: Any) -> list[type[pydantic.BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _metadata(annotation: Any) -> list[Any]:
    """Constraints inside ``annotation`` (``Annotated[...]``, also within ``X | None``)."""
    found = list(getattr(annotation, "__metadata__", ()))
    return found + [m for arg in typing.get_args(annotation) for m in _metadata(arg)]


def patterns_without_words(model: type[pydantic.BaseModel]) -> list[str]:
    return [
        key for key, info in _fields(model, set())
        if any(getattr(m, "pattern", None) for m in info.metadata + _metadata(info.annotation))
    ]


def test_given_every_settings_model_then_no_field_is_checked_by_a_pattern_without_words():
    class Bare(pydantic.BaseModel):
        name: typing.Annotated[str, pydantic.StringConstraints(pattern="^a$")] | None = None

    assert patterns_without_words(Bare) == ["Bare.name"]  # the check sees a raw pattern
    # Use components.errors.matching(pattern, words) instead.
    assert patterns_without_words(settings.MoonTVSettings) == []


# --- contradictions: keys something would ignore, limits, references, bounds -------------------

SWARM = {"platform": "swarm", "kubernetes": None, "traffic.provider": None,
         "traffic.gateway": None}
GATEWAY = {"traffic.gateway": {"name": "public", "namespace": "gateway-system"}}

CONTRADICTIONS = [
    # (stack, {key path: value, None removes it}, key named, words in the message)
    ("dev", {**SWARM, "kubernetes.context": "prod"}, "moontv:kubernetes",
     "not read on the swarm platform"),
    ("dev", {**SWARM, "autoscaling.enabled": True}, "moontv:autoscaling", "swarm platform"),
    ("dev", {**SWARM, "traffic.provider": "nginx"}, "moontv:traffic.provider", "swarm platform"),
    ("dev", {**SWARM, "traffic.tls.secretName": "tls"}, "moontv:traffic.tls", "swarm platform"),
    ("dev", {**SWARM, "storage.backup.retention": 3}, "moontv:storage.backup", "swarm platform"),
    ("dev", {**SWARM, "networkPolicy.dns.cidrs": []}, "moontv:networkPolicy", "swarm platform"),
    ("dev", {"swarm.httpPort": 8080}, "moontv:swarm", "not read on the kubernetes platform"),
    ("staging", {"monitoring.images.prometheus": "prom/prometheus:v3"},
     "moontv:monitoring.images.prometheus", "not read on the kubernetes platform"),
    ("dev", {**SWARM, "monitoring.logs": {"enabled": False}}, "moontv:monitoring.logs",
     "not read on the swarm platform"),
    ("dev", {"monitoring.probeInterval": "30s"}, "moontv:monitoring.probeInterval",
     "only when monitoring.enabled is true"),
    ("dev", {"release.canary.weight": 0}, "moontv:release.canary",
     "read only by strategy canary, not rolling"),
    ("staging", {"release.blueGreen": {"blue": "v100.1.1"}}, "moontv:release.blueGreen",
     "read only by strategy blue-green, not canary"),
    ("prod", {"release.canary": {"weight": 0}}, "moontv:release.canary",
     "read only by strategy canary, not blue-green"),
    ("dev", {"traffic.ingressClass": "nginx"}, "moontv:traffic.ingressClass",
     "not read by the gateway traffic provider"),
    ("dev", {"traffic.tls.secretName": "moontv-tls"}, "moontv:traffic.tls.secretName",
     "not read by the gateway traffic provider"),
    ("dev", {"traffic.provider": "nginx", "traffic.gateway.name": "public"},
     "moontv:traffic.gateway", "not read by the nginx traffic provider"),
    ("staging", {"traffic.tls.issuer": "letsencrypt"}, "moontv:traffic.tls.issuer",
     "does not own"),
    ("dev", {"resources.limits.cpu": "50m"}, "moontv:resources.limits.cpu",
     "must not be below resources.requests.cpu (100m)"),
    ("dev", {"resources.limits.memory": "128Mi"}, "moontv:resources.limits.memory",
     "must not be below resources.requests.memory (256Mi)"),
    ("dev", {"resources.requests.memory": "2Gi"}, "moontv:resources.limits.memory",
     "must not be below resources.requests.memory (2Gi)"),
    ("staging", {"traffic.gateway": None}, "moontv:traffic.gateway.name",
     "required on a cluster stack with the gateway provider"),
    ("staging", {"traffic.gateway.namespace": None}, "moontv:traffic.gateway.namespace",
     "required on a cluster stack"),
    ("dev", {"kubernetes": {"context": "dev"}}, "moontv:traffic.gateway.name",
     "'moontv-gateway' rarely exists"),
    ("staging", {"release.canary.replicas": 51}, "moontv:release.canary.replicas",
     "an integer 1..50"),
    ("prod", {"release.blueGreen.previewReplicas": 1000},
     "moontv:release.blueGreen.previewReplicas", "an integer 1..50"),
    ("dev", {"replicas": 51}, "moontv:replicas", "an integer 1..50"),
    ("staging", {"autoscaling.maxReplicas": 101}, "moontv:autoscaling.maxReplicas",
     "an integer 1..100"),
    ("staging", {"monitoring.thresholds.restarts": 1000}, "moontv:monitoring.thresholds.restarts",
     "must be <= 100"),
    ("dev", {"autoscaling.minReplicas": 2}, "moontv:autoscaling.minReplicas",
     "only when autoscaling.enabled is true"),
    ("dev", {"storage.backup.retention": 3}, "moontv:storage.backup.retention",
     "only when storage.backup.enabled is true"),
    ("dev", {"storage.redisImage": "redis:7"}, "moontv:storage.redisImage",
     "not read with storage.kind kvrocks"),
    ("dev", {"storageUrl": "redis://db:6379"}, "moontv:storageUrl",
     "not read with storage.kind kvrocks"),
    ("dev", {"storage.kind": "external", "storageUrl": "redis://db:6379", "storage.size": "1Gi"},
     "moontv:storage.size", "not read with storage.kind external"),
    ("dev", {"image.repository": "ghcr.io/MoonTechLab/LunaTV"}, "moontv:image.repository",
     "in lower case"),
    ("dev", {"traffic.host": "TV.example.com"}, "moontv:traffic.host",
     "a DNS name in lower case: letters, digits, '-' and '.'"),
]


def with_all(base: dict, changes: dict) -> dict:
    for path, value in changes.items():
        base = with_(base, path, value)
    return base


@pytest.mark.parametrize(("stack", "changes", "key", "words"), CONTRADICTIONS,
                         ids=[f"{c[0]}-{c[2].split(':')[1]}-{i}"
                              for i, c in enumerate(CONTRADICTIONS)])
def test_given_a_contradiction_then_the_key_is_named_and_the_reason_given_in_words(
        stack, changes, key, words):
    found = problems(with_all(raw(stack), changes))
    matching = [p for p in found if p.startswith(key + ":")]
    assert any(words in p for p in matching), found
    for problem in found:  # what is accepted is said in words, never as a regular expression
        assert not any(token in problem for token in ("^", "]{", "[a-z", "\\", "$\"")), problem


def test_given_every_shipped_stack_file_then_it_passes_every_check():
    stacks = [path.name.split(".")[1] for path in sorted(ROOT.glob("Pulumi.*.yaml"))]
    assert {"dev", "staging", "prod", "swarm"} <= set(stacks)
    for stack in stacks:
        config = stack_config(stack)
        settings.validate({k.split(":", 1)[1]: v for k, v in config.items()
                           if k.startswith(settings.PREFIX)})


def test_given_several_contradictions_then_all_are_reported_at_once():
    config = with_all(raw("staging"), {
        "traffic.ingressClass": "nginx", "release.blueGreen": {"blue": "v100.1.1"},
        "resources.limits.cpu": "10m", "traffic.gateway": None,
    })
    found = problems(config)
    keys = sorted(p.split(": ", 1)[0] for p in found)
    assert keys == ["moontv:release.blueGreen", "moontv:resources.limits.cpu",
                    "moontv:traffic.gateway.name", "moontv:traffic.gateway.namespace",
                    "moontv:traffic.ingressClass"], found


def test_given_one_resource_field_then_the_others_keep_their_documented_defaults():
    model = settings.validate(with_(raw(), "resources", {"requests": {"cpu": "200m"}}))
    assert model.resources.requests.cpu == "200m"
    assert model.resources.requests.memory == "256Mi"
    assert (model.resources.limits.cpu, model.resources.limits.memory) == ("1", "768Mi")


def test_given_a_contradiction_when_the_program_runs_then_no_resource_is_registered():
    run = Run()
    pulumi.runtime.set_mocks(RecordingMocks(run), project="moontv", stack="staging",
                             preview=False)
    config = stack_config("staging", {"moontv:swarm": {"httpPort": 8080}})
    program = load_program()

    @pulumi.runtime.test
    def go():
        program.main()

    with language_host_config(config, []), pytest.raises(ConfigError) as exc:
        go()
    assert exc.value.problems == [
        "moontv:swarm: is not read on the kubernetes platform: remove it"]
    assert run.resources == []


# --- placeholder digests: `up` refuses them, `preview` warns ------------------------------------

PROD_PLACEHOLDERS = ["moontv:image.digest", "moontv:storage.kvrocksImage",
                     "moontv:storage.exporterImage", "moontv:release.blueGreen.blue",
                     "moontv:monitoring.images.blackboxExporter"]


@pytest.mark.parametrize(("digits", "placeholder"), [
    ("0" * 64, True), ("f" * 64, True), ("deadbeef" * 8, True), ("0123456789abcdef" * 4, True),
    ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", False),
])
def test_given_a_digest_then_only_a_repeating_pattern_is_a_placeholder(digits, placeholder):
    assert settings.is_placeholder_digest(digits) is placeholder


def test_given_the_shipped_prod_file_when_up_runs_then_it_fails_first_naming_each_key():
    run = Run()
    pulumi.runtime.set_mocks(RecordingMocks(run), project="moontv", stack="prod", preview=False)
    program = load_program()

    @pulumi.runtime.test
    def go():
        program.main()

    with language_host_config(stack_config("prod"), []), pytest.raises(ConfigError) as exc:
        go()
    assert [p.split(": ", 1)[0] for p in exc.value.problems] == PROD_PLACEHOLDERS
    assert all("placeholder digest" in p and "imagetools inspect" in p
               for p in exc.value.problems)
    assert run.resources == []


def test_given_the_shipped_prod_file_when_previewed_then_each_placeholder_is_a_warning(caplog):
    with caplog.at_level("WARNING"):
        result = run_stack("prod", preview=True)
    warned = [r.getMessage() for r in caplog.records if "placeholder digest" in r.getMessage()]
    assert [w.split(": ", 1)[0] for w in warned] == PROD_PLACEHOLDERS
    assert all(w.endswith("(`up` refuses it)") for w in warned)
    assert result.kind("Deployment")  # the preview still shows what would be deployed


def test_given_the_prod_file_then_it_says_how_to_fill_the_digests():
    text = (ROOT / "Pulumi.prod.yaml").read_text()
    assert "placeholder" in text and "docker buildx imagetools inspect" in text


# --- what the app reads is all the program sets -------------------------------------------------

def test_given_each_stack_then_the_app_container_gets_only_variables_the_app_reads(stack_run):
    app = [c for d in stack_run.kind("Deployment")
           for c in d.inputs["spec"]["template"]["spec"]["containers"] if c["name"] == "moontv"]
    assert app
    names = {e["name"] for c in app for e in c.get("env", [])}
    sources = {ref.get("configMapRef", ref.get("secretRef"))["name"]
               for c in app for ref in c.get("envFrom", [])}
    for kind, field in (("ConfigMap", "data"), ("Secret", "stringData")):
        for resource in stack_run.kind(kind):
            # auto-named objects: the mocks name them <resource name>-<8 hex>
            if {resource.metadata_name, resource.name} & {n.rsplit("-", 1)[0] for n in sources}:
                names |= set(resource.inputs.get(field) or {})
    assert {"PASSWORD", "NEXT_PUBLIC_STORAGE_TYPE", "HOSTNAME"} <= names  # all sources seen
    assert names - app_facts.READ_ENV == set()
    assert "MOONTV_TRACK" not in names and "DOCKER_ENV" not in names


# --- TLS: the app's cookie has no Secure flag, so HTTP never serves it ---------------------------

@pytest.mark.parametrize(("tls", "redirect"), [
    ({"secretName": "moontv-tls"}, True), ({"issuer": "letsencrypt"}, True), ({}, False)])
def test_given_nginx_with_tls_then_every_ingress_forces_https(run, tls, redirect):
    traffic = {"host": "tv.example.com", "provider": "nginx", "tls": tls}
    ingresses = run("dev", {"moontv:traffic": traffic}).kind("Ingress")
    assert ingresses
    forced = [i.inputs["metadata"]["annotations"].get(
        "nginx.ingress.kubernetes.io/force-ssl-redirect") for i in ingresses]
    assert forced == (["true"] * len(ingresses) if redirect else [None] * len(ingresses))


# --- Upstash -------------------------------------------------------------------------------------

UPSTASH_URL = "https://eu1-moontv.upstash.io"
UPSTASH_TOKEN = "upstash-Secret-Token-5150"


def test_given_upstash_then_the_app_gets_its_url_and_token_as_secrets_and_no_server_runs(run):
    result = run("dev", {"moontv:storage": {"kind": "upstash"}},
                 secrets={"moontv:storageUrl": UPSTASH_URL, "moontv:storageToken": UPSTASH_TOKEN})
    [config] = [c for c in result.kind("ConfigMap") if "NEXT_PUBLIC_STORAGE_TYPE" in
                (c.inputs.get("data") or {})]
    assert config.inputs["data"]["NEXT_PUBLIC_STORAGE_TYPE"] == "upstash"
    [secret] = [s for s in result.kind("Secret") if "PASSWORD" in s.inputs["stringData"]]
    assert secret.inputs["stringData"]["UPSTASH_URL"] == UPSTASH_URL
    assert secret.inputs["stringData"]["UPSTASH_TOKEN"] == UPSTASH_TOKEN
    assert not {"KVROCKS_URL", "REDIS_URL"} & set(secret.inputs["stringData"])
    assert result.kind("StatefulSet") == [] and result.kind("CronJob") == []
    for deployment in result.kind("Deployment"):
        init = deployment.inputs["spec"]["template"]["spec"]["initContainers"]
        assert [c["name"] for c in init] == ["copy-public"]  # the tool speaks Redis, not REST
    plain = [r for r in result.resources if r.kind != "Secret" and r.type != passwords.TYPE]
    assert UPSTASH_TOKEN not in json.dumps([r.inputs for r in plain], default=str)


@pytest.mark.parametrize(("changes", "key", "words"), [
    ({"storage.kind": "upstash", "storageUrl": UPSTASH_URL}, "moontv:storageToken",
     "required when storage.kind is 'upstash'"),
    ({"storage.kind": "upstash", "storageUrl": "redis://db:6379", "storageToken": "t"},
     "moontv:storageUrl", "REST URL (https://"),
    ({"storage.kind": "upstash", "storageToken": "t"}, "moontv:storageUrl", "REST URL"),
    ({"storageToken": "t"}, "moontv:storageToken", "not read with storage.kind kvrocks"),
    ({"storage.kind": "upstash", "storageUrl": UPSTASH_URL, "storageToken": "t",
      "storage.backup.retention": 3}, "moontv:storage.backup",
     "not read with storage.kind upstash"),
    ({**SWARM, "storage.kind": "upstash", "storageUrl": UPSTASH_URL, "storageToken": "t"},
     "moontv:storage.kind", "kubernetes platform only"),
])
def test_given_bad_upstash_settings_then_the_key_is_named_and_no_secret_shown(changes, key, words):
    found = problems(with_all(raw(), changes))
    assert any(p.startswith(key + ":") and words in p for p in found), found
    assert not any("redis://db" in p for p in found)


# --- the README's configuration reference stays true ---------------------------------------------

README = (ROOT / "README.md").read_text()
REFERENCE = README.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]


def test_given_the_readme_then_every_top_level_key_is_in_the_configuration_reference():
    keys = [f.alias or n for n, f in settings.MoonTVSettings.model_fields.items()]
    missing = [k for k in keys if f"`{k}" not in REFERENCE]
    assert missing == []


def test_given_the_readme_then_it_lists_exactly_the_kubernetes_only_keys():
    paragraph = REFERENCE.split("Kubernetes-only keys are refused:", 1)[1].split("All of", 1)[0]
    kubernetes_only, swarm_only = paragraph.split("(and on Kubernetes", 1)
    assert re.findall(r"`([A-Za-z.]+)`", kubernetes_only) == list(settings.KUBERNETES_ONLY)
    assert re.findall(r"`([A-Za-z.]+)`", swarm_only) == list(settings.SWARM_ONLY)


def test_given_bad_values_and_contradictions_then_one_run_reports_both():
    config = with_all(raw("staging"), {
        "site.searchMaxPage": 99, "replica": 2, "traffic.ingressClass": "nginx",
        "resources.limits.cpu": "10m",
    })
    keys = sorted(p.split(": ", 1)[0] for p in problems(config))
    assert keys == ["moontv:replica", "moontv:resources.limits.cpu", "moontv:site.searchMaxPage",
                    "moontv:traffic.ingressClass"]


def test_given_a_bad_value_then_rules_about_its_section_are_not_guessed():
    # storage.kind is invalid: whether redisImage is read cannot be known, so only kind is named
    config = with_all(raw(), {"storage.kind": "mysql", "storage.redisImage": "redis:7"})
    assert [p.split(": ", 1)[0] for p in problems(config)] == ["moontv:storage.kind"]


def test_given_swarm_then_its_component_generates_the_owner_and_storage_passwords(monkeypatch):
    from components.swarm import preflight

    monkeypatch.setattr(preflight, "check", lambda env=None: None)
    result = run_stack("swarm")
    generated = sorted(r.name for r in result.of_type(passwords.TYPE))
    assert generated == ["moontv-storage-password", "owner-password"]
    contents = " ".join(base64.b64decode(r.inputs["data"]).decode()
                        for r in result.of_type("docker:index/secret:Secret"))
    assert all(value in contents for value in result.secrets)  # both reach the Swarm secrets


# --- weak owner password, ephemeral storage, custom Douban proxies ------------------------------

STRONG = "Vq8-ztJ3-rW1e-Lk9p"  # 18 characters, not a common password


@pytest.mark.parametrize("stack", ["staging", "testing", "prod"])
@pytest.mark.parametrize(("password", "words"), [
    ("1234", "at least 16 characters"),
    ("x" * 15, "at least 16 characters"),
    ("PasswordPassword", "must not be a common password"),
    ("correcthorsebatterystaple", "must not be a common password"),
])
def test_given_a_weak_owner_password_outside_dev_then_it_is_refused_without_showing_it(
        stack, password, words):
    found = problems(with_(raw(stack), "ownerPassword", password))
    matching = [p for p in found if p.startswith("moontv:ownerPassword:")]
    assert len(matching) == 1 and words in matching[0], found
    assert "openssl rand" in matching[0]
    assert not any(password in p for p in found), found


@pytest.mark.parametrize(("stack", "password"), [
    ("staging", "x" * 16), ("prod", STRONG), ("dev", "1234"), ("pr", "passwordpassword"),
])
def test_given_a_long_uncommon_password_or_a_dev_or_review_stack_then_the_password_passes(
        stack, password):
    try:
        settings.validate(with_(raw(stack), "ownerPassword", password))
    except ConfigError as exc:
        assert not [p for p in exc.problems if p.startswith("moontv:ownerPassword")], exc


@pytest.mark.parametrize("stack", ["staging", "testing", "prod"])
def test_given_storage_not_persistent_outside_dev_and_review_then_it_is_refused(stack):
    found = problems(with_(raw(stack), "storage.persistent", False))
    assert [p for p in found if p.startswith("moontv:storage.persistent:")] == [
        "moontv:storage.persistent: false is accepted only in dev and review stacks: in "
        f"{raw(stack)['environment']} the data would live in an emptyDir that is lost with the "
        "pod; set true (a PVC of storage.size) or remove the key"], found


@pytest.mark.parametrize("stack", ["dev", "pr"])
def test_given_storage_not_persistent_in_dev_or_review_then_it_is_accepted(stack):
    model = settings.validate(with_(raw(stack), "storage.persistent", False))
    assert model.storage.persistent is False


@pytest.mark.parametrize(("kind", "changes", "words"), [
    ("doubanProxy", {"site.doubanProxyType": "custom"}, "required when site.doubanProxyType"),
    ("doubanImageProxy", {"site.doubanImageProxyType": "custom"},
     "required when site.doubanImageProxyType"),
    ("doubanProxy", {"site.doubanProxyType": "custom", "site.doubanProxy": "proxy.example.com"},
     "must be an http:// or https:// URL of your proxy, got 'proxy.example.com'"),
    ("doubanImageProxy", {"site.doubanImageProxyType": "custom",
                          "site.doubanImageProxy": "ftp://img.example.com/"},
     "must be an http:// or https:// URL"),
    ("doubanProxy", {"site.doubanProxy": "https://proxy.example.com/"},
     "is read only when site.doubanProxyType is 'custom', not 'cmliussss-cdn-tencent'"),
])
def test_given_a_custom_douban_proxy_without_a_url_then_the_url_key_is_named(kind, changes, words):
    found = problems(with_all(raw("staging"), changes))
    assert [p for p in found if p.startswith(f"moontv:site.{kind}:") and words in p], found


def test_given_custom_douban_proxies_with_urls_then_the_app_gets_them():
    model = settings.validate(with_all(raw("staging"), {
        "site.doubanProxyType": "custom", "site.doubanProxy": "https://douban.example.com/?u=",
        "site.doubanImageProxyType": "custom", "site.doubanImageProxy": "http://img.example.com",
    }))
    env = model.site.env()
    assert env["NEXT_PUBLIC_DOUBAN_PROXY"] == "https://douban.example.com/?u="
    assert env["NEXT_PUBLIC_DOUBAN_IMAGE_PROXY"] == "http://img.example.com"


def test_given_the_three_holes_at_once_then_one_run_names_each_key():
    found = problems(with_all(raw("prod"), {
        "ownerPassword": "1234", "storage.persistent": False, "site.doubanProxyType": "custom"}))
    keys = {p.split(": ", 1)[0] for p in found}
    assert {"moontv:ownerPassword", "moontv:storage.persistent", "moontv:site.doubanProxy"} <= keys


def test_given_a_private_package_then_image_pull_secret_is_a_secret_name_on_kubernetes_only():
    bad = problems(with_(raw("staging"), "image.pullSecret", "GHCR_pull"))
    assert [p for p in bad if p.startswith("moontv:image.pullSecret:")] == [
        p for p in bad if "Kubernetes Secret name" in p
    ] and bad
    swarm = problems(with_(raw("swarm"), "image.pullSecret", "ghcr-pull"))
    assert any(
        p.startswith("moontv:image.pullSecret") and "not read on the swarm platform" in p
        for p in swarm
    ), swarm
    assert settings.validate(with_(raw("staging"), "image.pullSecret", "ghcr-pull"))


def test_given_autoscaling_then_a_colour_scaled_to_0_is_refused_naming_both_keys():
    testing = raw("testing")
    release = {"strategy": "blue-green", "blueGreen": {
        "active": "blue", "blue": "v100.1.1", "green": "v100.1.2", "scaleDownInactive": True}}
    found = problems({**testing, "release": release})
    assert [p for p in found if "scaleDownInactive" in p] == [
        "moontv:release.blueGreen.scaleDownInactive: cannot be true while "
        "moontv:autoscaling.enabled is: a switch hands the colour at 0 replicas to the "
        "HorizontalPodAutoscaler, which never scales a Deployment up from 0, so the switch would "
        "move traffic to no pod; set scaleDownInactive false (the inactive colour keeps "
        "previewReplicas) or turn autoscaling off"]
    settings.validate({**testing, "release": release, "autoscaling": {"enabled": False}})
