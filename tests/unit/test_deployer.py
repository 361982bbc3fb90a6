"""The deployer identity: its Role covers exactly what the program registers, and no more."""

from __future__ import annotations

import functools
import subprocess

import pytest
import yaml

from components import settings
from components.errors import ConfigError
from components.kubernetes import access, preflight
from components.kubernetes.deployer import Deployer, DeployerArgs
from tests.program import ROOT, ready_cluster, run_program, run_stack, stack_config

DEPLOYER_DIR = ROOT / "deploy/deployer"


def kubernetes_stacks() -> list[str]:
    stacks = [p.name.split(".")[1] for p in sorted(ROOT.glob("Pulumi.*.yaml"))]
    return [s for s in stacks if stack_config(s).get("moontv:platform", "kubernetes")
            == "kubernetes"]


@functools.cache
def registered(stack: str) -> frozenset[str]:
    """The Kubernetes kinds the program registers for the shipped ``stack`` under mocks."""
    return frozenset(r.kind for r in run_stack(stack).kubernetes())


def config_of(stack: str, overrides: dict[str, object] | None = None
              ) -> settings.MoonTVSettings:
    config = stack_config(stack, overrides)
    return settings.validate({k.removeprefix("moontv:"): v for k, v in config.items()})


def test_given_every_shipped_stack_then_the_role_manages_exactly_the_namespaced_kinds_registered():
    stacks = kubernetes_stacks()
    assert {"dev", "staging", "testing", "prod", "pr", "node"} <= set(stacks)
    kinds = set().union(*(registered(s) for s in stacks))
    namespaced = {k for k in kinds if access.RESOURCES[k].namespaced}
    assert namespaced == set(access.DEPLOYED_KINDS)
    managed = {(rule_group, plural): tuple(rule["verbs"])
               for rule in access.role_rules() for rule_group in rule["apiGroups"]
               for plural in rule["resources"]
               if tuple(rule["verbs"]) == access.MANAGE_VERBS}
    assert set(managed) == {(access.RESOURCES[k].group, access.RESOURCES[k].plural)
                            for k in namespaced}


def test_given_the_role_then_no_rule_uses_a_wildcard_or_update_and_reads_stay_reads():
    rules = access.role_rules() + access.cluster_role_rules()
    for rule in rules:
        assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"], rule
        assert "update" not in rule["verbs"] and "escalate" not in rule["verbs"], rule
    reads = [r for r in access.role_rules() if tuple(r["verbs"]) != access.MANAGE_VERBS]
    assert {v for r in reads for v in r["verbs"]} <= set(access.READ_VERBS)
    namespace_rule = [r for r in reads if "namespaces" in r["resources"]]
    assert namespace_rule == [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]}]
    assert access.cluster_role_rules() == [
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
         "verbs": ["get", "list"]},
        {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"],
         "verbs": ["get", "list"]},
    ]


@pytest.mark.parametrize("stack", ["staging", "testing", "prod"])
def test_given_a_stack_the_deployer_runs_then_it_registers_nothing_cluster_scoped(stack):
    assert config_of(stack).kubernetes.create_namespace is False
    cluster_scoped = {k for k in registered(stack) if not access.RESOURCES[k].namespaced}
    assert cluster_scoped == set()


EXTERNAL_URL = "redis://db.example.com:6379"
VARIANTS = [
    ("staging", {"moontv:traffic": {"host": "tv.example.com", "provider": "nginx"},
                 "moontv:release": {"strategy": "canary", "affinity": {"enabled": False},
                                    "canary": {"version": "v100.1.2", "weight": 0}}}),
    ("staging", {"moontv:monitoring": {"enabled": False}}),
    ("staging", {"moontv:autoscaling": {"enabled": False}, "moontv:replicas": 3}),
    ("staging", {"moontv:autoscaling": {"enabled": False}, "moontv:replicas": 1}),
    ("staging", {"moontv:storage": {"kind": "external"}}),
    ("staging", {"moontv:storage": {"kind": "kvrocks", "backup": {"enabled": False}}}),
    ("node", {"moontv:monitoring": {
        **stack_config("node")["moontv:monitoring"],
        "logs": {"enabled": True, "endpoint": "http://loki.logging:3100"},
        "traces": {"enabled": True, "endpoint": "http://jaeger.tracing:4317"}}}),
    ("node", {"moontv:kubernetes": {"context": "moontv-node", "createNamespace": False}}),
]


@pytest.mark.parametrize("stack", sorted({"dev", "pr", "node", "staging", "testing", "prod"}))
def test_given_a_shipped_stack_then_the_preflight_knows_every_kind_it_registers(stack):
    assert set(access.kinds_for(config_of(stack))) == registered(stack)


@pytest.mark.parametrize(("stack", "overrides"), VARIANTS,
                         ids=[f"{v[0]}-{i}" for i, v in enumerate(VARIANTS)])
def test_given_a_variant_then_the_preflight_knows_every_kind_it_registers(stack, overrides):
    external = overrides.get("moontv:storage", {}).get("kind") == "external"
    secrets = {"moontv:storageUrl": EXTERNAL_URL} if external else None
    run = run_stack(stack, overrides, secrets=secrets)
    config = config_of(stack, {**overrides, **(secrets or {})})
    assert set(access.kinds_for(config)) == {r.kind for r in run.kubernetes()}


def test_given_the_deployer_component_then_it_makes_the_identity_and_nothing_else():
    run = run_program(lambda: Deployer("d", DeployerArgs(namespace="moontv-staging",
                                                         instance="staging")))
    kinds = sorted(r.kind for r in run.kubernetes())
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Namespace", "Role", "RoleBinding",
                     "ServiceAccount"]
    ns = run.named("Namespace", "moontv-staging")
    assert ns.inputs["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    account = run.named("ServiceAccount", "moontv-deployer")
    assert account.inputs["automountServiceAccountToken"] is False
    assert run.named("Role", "moontv-deployer").inputs["rules"] == access.role_rules()
    subject = {"kind": "ServiceAccount", "name": "moontv-deployer", "namespace": "moontv-staging"}
    binding = run.named("RoleBinding", "moontv-deployer").inputs
    assert binding["subjects"] == [subject] and binding["roleRef"]["kind"] == "Role"
    cluster = run.named("ClusterRole", "moontv-deployer-moontv-staging").inputs
    assert cluster["rules"] == access.cluster_role_rules()
    cluster_binding = run.named("ClusterRoleBinding", "moontv-deployer-moontv-staging").inputs
    assert cluster_binding["subjects"] == [subject]
    assert cluster_binding["roleRef"]["name"] == "moontv-deployer-moontv-staging"


@pytest.mark.parametrize("stack", ["staging", "testing", "prod"])
def test_given_each_deployer_stack_file_then_it_targets_its_app_stack(stack):
    app = config_of(stack)
    raw = yaml.safe_load((DEPLOYER_DIR / f"Pulumi.{stack}.yaml").read_text())["config"]
    deployer = settings.validate_deployer(
        {k.removeprefix("moontv-deployer:"): v for k, v in raw.items()})
    assert deployer.namespace == app.namespace
    assert deployer.kubernetes.context == app.kubernetes.context


def test_given_a_bad_deployer_config_then_each_key_is_named():
    with pytest.raises(ConfigError) as exc:
        settings.validate_deployer({"namespace": "Moon_TV", "kubernetes": {"contxt": "x"}})
    keys = sorted(p.split(": ", 1)[0] for p in exc.value.problems)
    assert keys == ["moontv-deployer:kubernetes.contxt", "moontv-deployer:namespace"], exc.value


RULES = access.role_rules()
HTTPROUTES = access.RESOURCES["HTTPRoute"]


@pytest.mark.parametrize(("rules", "verb", "allowed"), [
    (RULES, "patch", True),
    (RULES, "update", False),
    ([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}], "patch", True),
    ([{"apiGroups": ["gateway.networking.k8s.io"], "resources": ["httproutes"],
       "verbs": ["patch"], "resourceNames": ["moontv"]}], "patch", False),
    ([{"apiGroups": [""], "resources": ["httproutes"], "verbs": ["patch"]}], "patch", False),
])
def test_given_rules_then_a_permission_is_granted_only_by_a_matching_rule(rules, verb, allowed):
    assert access.allows(rules, access.Permission(verb, HTTPROUTES)) is allowed


def test_given_a_missing_verb_then_the_message_names_it_and_says_what_to_add():
    missing = [access.Permission("patch", HTTPROUTES), access.Permission("delete", HTTPROUTES)]
    assert access.describe_missing(missing, "moontv-node") == [
        "the deployer cannot delete, patch httproutes in moontv-node: add {apiGroups: "
        "['gateway.networking.k8s.io'], resources: [httproutes], verbs: [delete, patch]} to its "
        "Role (deploy/deployer grants what the shipped stacks need: re-run it), or deploy with "
        "an identity that may"]


def test_given_the_kubeconfig_script_then_help_says_how_to_use_and_rotate_it():
    result = subprocess.run(["bash", str(ROOT / "tools/deployer-kubeconfig.sh"), "--help"],
                            capture_output=True, text=True, check=False, timeout=30)
    assert result.returncode == 0, result.stderr
    for words in ("--namespace", "--duration", "kubectl create token", "rotate"):
        assert words in result.stdout, words


# --- preflight: a missing permission is named before any resource is registered -----------------

def denied_cluster(*missing: access.Permission):
    def ask(target, need):
        facts = ready_cluster(target, need)
        return preflight.ClusterFacts(storage_classes=facts.storage_classes, served=facts.served,
                                      denied=tuple(missing), namespace_exists=True)
    return ask


def test_given_staging_then_the_preflight_asks_for_every_verb_and_nothing_cluster_scoped():
    need = preflight.needs(config_of("staging"))
    assert need.namespace == "moontv-staging" and need.existing_namespace
    asked = {(p.verb, str(p.resource)) for p in need.permissions}
    assert ("patch", "httproutes.gateway.networking.k8s.io") in asked
    assert ("get", "namespaces") in asked
    assert not [p for p in need.permissions if p.cluster_wide]
    owning = preflight.needs(config_of("node"))  # creates its namespace: asks for that too
    assert access.Permission("create", access.RESOURCES["Namespace"]) in owning.permissions


def test_given_a_deployer_without_patch_on_httproutes_when_up_runs_then_it_stops_naming_it():
    missing = access.Permission("patch", access.RESOURCES["HTTPRoute"])
    with pytest.raises(ConfigError) as exc:
        run_stack("staging", cluster=denied_cluster(missing))
    assert exc.value.problems == [
        "moontv:kubernetes: the deployer cannot patch httproutes in moontv-staging: add "
        "{apiGroups: ['gateway.networking.k8s.io'], resources: [httproutes], verbs: [patch]} to "
        "its Role (deploy/deployer grants what the shipped stacks need: re-run it), or deploy "
        "with an identity that may"]


def test_given_no_namespace_for_a_stack_that_does_not_create_it_then_preflight_names_who_makes_it():
    def ask(target, need):
        facts = ready_cluster(target, need)
        return preflight.ClusterFacts(storage_classes=facts.storage_classes, served=facts.served,
                                      namespace_exists=False)
    with pytest.raises(ConfigError) as exc:
        run_stack("prod", cluster=ask)
    assert [p.split(": ", 1)[0] for p in exc.value.problems] == [
        "moontv:kubernetes.createNamespace"]
    assert "pulumi -C deploy/deployer up" in exc.value.problems[0]
