"""The Kubernetes objects the program declares for each stack, checked under Pulumi mocks."""

from __future__ import annotations

import kubernetes_validate
import pytest

from components import app_facts, settings
from components.errors import ConfigError
from components.kubernetes import capacity, pod, preflight
from tests.conftest import ROOT
from tests.program import RecordingMocks, Resource, Run, manifest, run_stack, stack_config

#: The Kubernetes version the manifests are validated against (strict: unknown fields fail).
KUBERNETES_VERSION = "1.33.0"
CUSTOM_RESOURCE_GROUPS = ("gateway.networking.k8s.io", "monitoring.coreos.com")


def containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec["containers"]


def pod_spec(resource: Resource) -> dict:
    spec = resource.inputs["spec"]
    if resource.kind == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]["spec"]
    return spec["template"]["spec"]


def test_every_kubernetes_object_validates_strictly(stack_run: Run):
    checked = 0
    for resource in stack_run.kubernetes():
        body = manifest(resource)
        if body["apiVersion"].split("/")[0] in CUSTOM_RESOURCE_GROUPS:
            continue
        kubernetes_validate.validate(body, KUBERNETES_VERSION, strict=True)
        checked += 1
    assert checked >= 15


def test_every_workload_runs_restricted(stack_run: Run):
    workloads = stack_run.kind("Deployment") + stack_run.kind("StatefulSet") + stack_run.kind(
        "CronJob")
    assert workloads
    for workload in workloads:
        spec = pod_spec(workload)
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in containers(spec):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["capabilities"] == {"drop": ["ALL"]}, c["name"]
            assert c["resources"]["limits"] and c["resources"]["requests"], c["name"]


def app_deployments(run: Run) -> list[Resource]:
    return [d for d in run.kind("Deployment")
            if d.inputs["metadata"]["labels"].get("app.kubernetes.io/component") == "app"]


def test_app_pods_match_the_runtime_contract(stack_run: Run):
    assert app_deployments(stack_run)
    for deployment in app_deployments(stack_run):
        spec = pod_spec(deployment)
        app = spec["containers"][0]
        env = {e["name"]: e.get("value") for e in app["env"]}
        assert env["HOSTNAME"] == "0.0.0.0" and env["PORT"] == "3000"
        assert spec["securityContext"]["runAsUser"] == 1001
        for probe in ("startupProbe", "readinessProbe"):
            assert app[probe]["httpGet"]["path"] == "/login"
        # liveness: the server answers a static file (no session, no database), not /login
        assert app["livenessProbe"]["httpGet"]["path"] == "/manifest.json"
        mounts = {m["mountPath"] for m in app["volumeMounts"]}
        assert {"/app/public", "/app/.next/cache", "/tmp"} <= mounts
        assert app["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
        assert spec["terminationGracePeriodSeconds"] > 10
        strategy = deployment.inputs["spec"]["strategy"]
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0
        inits = [c["name"] for c in spec["initContainers"]]
        assert inits == ["copy-public", "wait-for-storage"]
        assert spec["topologySpreadConstraints"]


def test_each_track_has_a_deployment_and_service(stack_run: Run):
    weights = stack_run.outputs["weights"]
    for track in weights:
        deployment = stack_run.named("Deployment", f"moontv-{track}")
        service = stack_run.named("Service", f"moontv-{track}")
        labels = deployment.inputs["spec"]["template"]["metadata"]["labels"]
        assert labels["moontv.io/track"] == track
        assert service.inputs["spec"]["selector"].items() <= labels.items()
    primary = stack_run.named("Service", "moontv")
    assert primary.inputs["spec"]["selector"]["moontv.io/track"] == stack_run.outputs[
        "activeTrack"]


def test_network_policies_default_deny_and_allow_only_what_is_needed(stack_run: Run):
    policies = {p.metadata_name: p.inputs["spec"] for p in stack_run.kind("NetworkPolicy")}
    assert policies["moontv-default-deny"] == {"podSelector": {},
                                               "policyTypes": ["Ingress", "Egress"]}
    assert {"moontv-allow-dns", "moontv-allow-gateway-to-app", "moontv-allow-app-egress",
            "moontv-kvrocks-from-app"} <= policies.keys()
    storage = policies["moontv-kvrocks-from-app"]["ingress"][0]
    assert storage["ports"] == [{"protocol": "TCP", "port": 6666}]
    egress = policies["moontv-allow-app-egress"]["egress"]
    internet = egress[0]["to"][0]["ipBlock"]
    assert internet["cidr"] == "0.0.0.0/0" and "10.0.0.0/8" in internet["except"]


def test_every_route_rewrites_api_cron_to_a_404_of_the_app_instead_of_a_500(stack_run: Run):
    for route in stack_run.kind("HTTPRoute"):
        blocked = route.inputs["spec"]["rules"][0]
        assert blocked["matches"] == [{"path": {"type": "PathPrefix", "value": "/api/cron"}}]
        assert blocked["filters"] == [{"type": "URLRewrite", "urlRewrite": {"path": {
            "type": "ReplaceFullPath", "replaceFullPath": app_facts.NOT_FOUND_PATH}}}]
        assert blocked["backendRefs"], "a rule without backends answers 500"


def test_storage_persists_and_waits_before_the_app(stack_run: Run):
    sts = stack_run.named("StatefulSet", "moontv-kvrocks")
    claim = sts.inputs["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"]
    deployment = app_deployments(stack_run)[0]
    spec = pod_spec(deployment)
    wait = spec["initContainers"][1]
    assert wait["command"][-1] == "wait"
    # the storage URL is a file of the app Secret, not an environment variable
    assert wait["env"] == [{"name": "STORAGE_URL_FILE", "value": "/etc/moontv/storage/url"}]
    mount = next(m for m in wait["volumeMounts"] if m["mountPath"] == "/etc/moontv/storage")
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])["secret"]
    assert volume["items"] == [{"key": "KVROCKS_URL", "path": "url"}]
    app_secret = next(c["secretRef"]["name"] for c in spec["containers"][0]["envFrom"]
                      if "secretRef" in c)
    assert volume["secretName"] == app_secret


def test_given_prod_then_it_is_highly_available_and_digest_pinned(run):
    prod = run("prod")
    primary = prod.named("Deployment", "moontv-blue")
    # the first up moves no traffic: the HPA sizes the primary from the start
    assert "replicas" not in primary.inputs["spec"]
    # once the HPA owns the count (it changed it), no up sets it
    held = {"blue": capacity.LiveDeployment(7, 7, autoscaled=True)}
    again = run("prod", live=capacity.Live(held, "blue")).named("Deployment", "moontv-blue")
    assert "replicas" not in again.inputs["spec"]
    hpa = prod.kind("HorizontalPodAutoscaler")[0].inputs["spec"]
    assert hpa["minReplicas"] >= 3 and hpa["scaleTargetRef"]["name"] == "moontv-blue"
    assert prod.named("PodDisruptionBudget", "moontv-blue").inputs["spec"]["maxUnavailable"] == 1
    image = pod_spec(primary)["containers"][0]["image"]
    assert "@sha256:" in image
    assert prod.kind("CronJob"), "prod backs up its storage"


def test_given_autoscaling_behavior_then_the_hpa_carries_it_and_bad_values_name_the_key(run):
    behavior = {"scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                            "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}]},
                "scaleDown": {"stabilizationWindowSeconds": 30}}
    autoscaling = {"enabled": True, "minReplicas": 2, "maxReplicas": 6, "behavior": behavior}
    staging = run("staging", {"moontv:autoscaling": autoscaling})
    assert staging.kind("HorizontalPodAutoscaler")[0].inputs["spec"]["behavior"] == behavior
    assert "behavior" not in run("staging").kind("HorizontalPodAutoscaler")[0].inputs["spec"]
    bad = {**autoscaling, "behavior": {"scaleDown": {"policies": [
        {"type": "Percent", "value": 50, "periodSeconds": 3600}]}}}
    with pytest.raises(ConfigError) as exc:
        settings.validate({**{k.split(":", 1)[1]: v for k, v in stack_config("staging").items()},
                           "autoscaling": bad})
    assert exc.value.problems == [
        "moontv:autoscaling.behavior.scaleDown.policies.0.periodSeconds: must be an integer "
        "1..1800, got 3600"]


def test_given_dev_then_manifests_are_rendered_without_a_cluster(run):
    dev = run("dev")
    provider = dev.of_type("pulumi:providers:kubernetes")[0]
    assert provider.inputs["renderYamlToDirectory"] == "rendered/dev"


def test_given_redis_storage_then_aof_is_on_and_the_app_gets_redis_url(run):
    r = run("dev", {"moontv:storage": {"kind": "redis"}})
    conf = r.named("StatefulSet", "moontv-redis")
    assert conf.inputs["spec"]["template"]["spec"]["containers"][0]["command"][0] == "redis-server"
    config_secrets = [s for s in r.kind("Secret") if "redis.conf" in s.inputs["stringData"]]
    assert "appendonly yes" in config_secrets[0].inputs["stringData"]["redis.conf"]
    app_secret = [s for s in r.kind("Secret") if "REDIS_URL" in s.inputs.get("stringData", {})]
    assert app_secret[0].inputs["stringData"]["REDIS_URL"].startswith("redis://:")
    config = [c for c in r.kind("ConfigMap") if "NEXT_PUBLIC_STORAGE_TYPE" in c.inputs["data"]]
    assert config[0].inputs["data"]["NEXT_PUBLIC_STORAGE_TYPE"] == "redis"


def test_given_external_storage_then_no_storage_workload_is_declared(run):
    r = run("dev", {"moontv:storage": {"kind": "external", "externalType": "redis"}},
            secrets={"moontv:storageUrl": "redis://:pw-x@db.example.com:6379"})
    assert not r.kind("StatefulSet") and not r.kind("CronJob")
    app_secret = [s for s in r.kind("Secret") if "REDIS_URL" in s.inputs.get("stringData", {})]
    assert app_secret[0].inputs["stringData"]["REDIS_URL"] == "redis://:pw-x@db.example.com:6379"


def test_given_backup_enabled_then_a_cronjob_keeps_timestamped_snapshots(run):
    r = run("dev", {"moontv:storage": {"kind": "kvrocks",
                                        "backup": {"schedule": "0 4 * * *", "retention": 5}}})
    job = r.named("CronJob", "moontv-kvrocks-backup").inputs["spec"]
    assert job["schedule"] == "0 4 * * *" and job["concurrencyPolicy"] == "Forbid"
    container = job["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][-2:] == ["backup", "/backup"]
    assert {"name": "BACKUP_RETENTION", "value": "5"} in container["env"]
    assert r.named("PersistentVolumeClaim", "moontv-kvrocks-backup")


@pytest.mark.parametrize("provider", ["gateway", "nginx"])
def test_given_a_provider_then_only_its_routing_objects_exist(run, provider):
    r = run("dev", {"moontv:traffic": {"host": "tv.example.com", "provider": provider}})
    assert bool(r.kind("HTTPRoute")) == (provider == "gateway")
    assert bool(r.kind("Ingress")) == (provider == "nginx")


def test_given_monitoring_then_prometheus_scrapes_the_storage_exporter(run):
    staging = run("staging")
    service = staging.named("Service", "moontv-kvrocks").inputs["spec"]
    assert {"name": "metrics", "port": 9121, "targetPort": "metrics"} in service["ports"]
    monitors = [m for m in staging.kind("ServiceMonitor")]
    assert monitors, "a ServiceMonitor for the storage exporter"
    selector = monitors[0].inputs["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["selector"].items()
    policy = staging.named("NetworkPolicy", "moontv-kvrocks-from-app").inputs["spec"]["ingress"]
    assert any(rule["ports"] == [{"protocol": "TCP", "port": 9121}] for rule in policy)
    dev = run("dev")  # monitoring off: no exporter traffic admitted
    policy = dev.named("NetworkPolicy", "moontv-kvrocks-from-app").inputs["spec"]["ingress"]
    assert len(policy) == 1


def test_given_monitoring_then_every_probe_targets_a_port_its_service_exposes(stack_run: Run):
    probes = [r for r in stack_run.resources if r.inputs.get("kind") == "Probe"]
    if stack_run.outputs.get("namespace") == "moontv-dev":
        assert not probes  # dev has no monitoring
        return
    assert probes
    for probe in probes:
        (url,) = probe.inputs["spec"]["targets"]["staticConfig"]["static"]
        host, port = url.removeprefix("http://").split("/", 1)[0].split(":")
        service = stack_run.named("Service", host.split(".")[0])
        assert int(port) in [p["port"] for p in service.inputs["spec"]["ports"]], url


def test_copy_public_copies_with_node_and_preserves_no_attributes(stack_run: Run):
    for deployment in app_deployments(stack_run):
        spec = pod_spec(deployment)
        copy = spec["initContainers"][0]
        assert copy["name"] == "copy-public"
        assert copy["command"][:2] == ["node", "-e"], copy["command"]
        assert copy["command"][3:] == ["/app/public", "/seed"]
        assert "cp -a" not in " ".join(copy["command"])
        assert {"name": "public", "mountPath": "/seed"} in copy["volumeMounts"]
        app_mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
        assert app_mounts["public"] == "/app/public"


def dns_rule(run: Run) -> dict:
    policy = run.named("NetworkPolicy", "moontv-allow-dns").inputs["spec"]
    assert policy["podSelector"] == {} and policy["policyTypes"] == ["Egress"]
    (rule,) = policy["egress"]
    assert rule["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    return rule


def test_given_no_dns_setting_then_dns_reaches_kube_system_pods_and_any_address(run):
    rule = dns_rule(run("dev"))
    assert rule["to"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}},
        {"ipBlock": {"cidr": "0.0.0.0/0"}},
    ]


def test_given_a_node_local_dns_cache_then_only_its_address_is_allowed(run):
    rule = dns_rule(run("dev", {"moontv:networkPolicy": {
        "dns": {"namespace": None, "cidrs": ["169.254.20.10/32", "10.96.0.10/32"]}}}))
    assert rule["to"] == [{"ipBlock": {"cidr": "169.254.20.10/32"}},
                          {"ipBlock": {"cidr": "10.96.0.10/32"}}]


def test_given_dns_pods_elsewhere_then_that_namespace_is_allowed(run):
    rule = dns_rule(run("dev", {"moontv:networkPolicy": {
        "dns": {"namespace": "dns-system", "cidrs": []}}}))
    assert rule["to"] == [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "dns-system"}}}]


@pytest.mark.parametrize(("dns", "expected"), [
    ({"cidrs": ["169.254.20.10"]}, None),  # a bare address is a /32 network: accepted
    ({"cidrs": ["10.0.0.1/8"]},
     "moontv:networkPolicy.dns.cidrs.0: must be an IPv4 or IPv6 network in CIDR notation"),
    ({"cidrs": ["node-local"]},
     "moontv:networkPolicy.dns.cidrs.0: must be an IPv4 or IPv6 network in CIDR notation"),
    ({"cidrs": "169.254.20.10/32"}, "moontv:networkPolicy.dns.cidrs: must be a list"),
    ({"namespace": None, "cidrs": []},
     "moontv:networkPolicy.dns: needs a namespace or at least one CIDR"),
    ({"servers": ["1.1.1.1/32"]}, "moontv:networkPolicy.dns.servers: unknown key"),
])
def test_given_a_bad_dns_setting_then_the_key_and_what_is_accepted_are_named(dns, expected):
    raw = {"environment": "dev", "image": {"tag": "latest"}, "networkPolicy": {"dns": dns},
           "kubernetes": {"renderDir": "rendered/dev"}}
    if expected is None:
        settings.validate(raw)
        return
    with pytest.raises(ConfigError) as exc:
        settings.validate(raw)
    assert len(exc.value.problems) == 1 and exc.value.problems[0].startswith(expected), (
        exc.value.problems)


def test_the_backup_claim_is_not_awaited_before_its_first_consumer(stack_run: Run):
    claims = stack_run.kind("PersistentVolumeClaim")
    if not stack_run.kind("CronJob"):
        assert not claims
        return
    (claim,) = claims
    assert claim.inputs["metadata"]["annotations"] == {"pulumi.com/skipAwait": "true"}
    job = pod_spec(stack_run.kind("CronJob")[0])
    volumes = {v["name"]: v for v in job["volumes"]}
    assert volumes["backup"]["persistentVolumeClaim"]["claimName"] == claim.metadata_name


# --- preflight: what the cluster must have, asked before any resource --------------------------

EVERY_KIND = {
    preflight.MONITORING_V1: frozenset({"Probe", "ServiceMonitor", "PrometheusRule",
                                        "PodMonitor"}),
    preflight.MONITORING_V1ALPHA1: frozenset({"AlertmanagerConfig"}),
    preflight.GATEWAY_V1: frozenset({"HTTPRoute", "Gateway"}),
}
STANDARD = preflight.StorageClass("standard", default=True)
LOCAL = preflight.StorageClass("local", default=False, binding_mode="WaitForFirstConsumer")


def facts(classes=(STANDARD,), served=None) -> preflight.ClusterFacts:
    return preflight.ClusterFacts(storage_classes=tuple(classes),
                                  served=EVERY_KIND if served is None else served)


def staging(overrides: dict | None = None) -> settings.MoonTVSettings:
    """The validated settings of the staging stack file with ``overrides``."""
    config = stack_config("staging", overrides)
    return settings.validate({k.removeprefix("moontv:"): v for k, v in config.items()})


def staging_needs(**storage) -> preflight.Needs:
    return preflight.needs(staging({"moontv:storage": {"kind": "kvrocks", **storage}}))


def test_given_a_default_storage_class_and_every_crd_then_nothing_is_missing():
    assert preflight.diagnose(staging_needs(), facts()) == []
    assert preflight.diagnose(staging_needs(storageClass="local"), facts([STANDARD, LOCAL])) == []


def test_given_no_default_storage_class_then_the_key_and_the_classes_are_named():
    (problem,) = preflight.diagnose(staging_needs(), facts([LOCAL]))
    assert problem.startswith("moontv:storage.storageClass: the cluster has no default "
                              "StorageClass (it has: local)")
    assert "is-default-class=true" in problem


def test_given_no_storage_class_at_all_then_a_provisioner_is_asked_for():
    (problem,) = preflight.diagnose(staging_needs(), facts([]))
    assert "the cluster has no StorageClass" in problem and "provisioner" in problem


def test_given_a_named_storage_class_that_does_not_exist_then_it_is_named():
    (problem,) = preflight.diagnose(staging_needs(storageClass="fast-ssd"), facts())
    assert problem.startswith("moontv:storage.storageClass: StorageClass 'fast-ssd' does not "
                              "exist in the cluster (it has: standard)")


def test_given_external_storage_then_no_storage_class_is_needed():
    config = staging({"moontv:storage": {"kind": "external"},
                      "moontv:storageUrl": "redis://:x@db:6379"})
    need = preflight.needs(config)
    assert not need.volumes
    assert preflight.diagnose(need, facts([])) == []
    kinds = {k for api in need.apis for ks in api.kinds.values() for k in ks}
    assert "ServiceMonitor" not in kinds  # no storage exporter to scrape


def test_given_monitoring_existing_without_the_operator_crds_then_each_kind_is_named():
    served = {preflight.GATEWAY_V1: EVERY_KIND[preflight.GATEWAY_V1]}
    (problem,) = preflight.diagnose(staging_needs(), facts(served=served))
    assert problem.startswith("moontv:monitoring.mode: 'existing' needs custom resource kinds "
                              "the cluster does not serve: Probe, ServiceMonitor, PrometheusRule "
                              "(monitoring.coreos.com/v1); AlertmanagerConfig "
                              "(monitoring.coreos.com/v1alpha1); install the Prometheus Operator")


def test_given_monitoring_install_then_its_chart_brings_the_crds():
    config = staging({"moontv:monitoring": {"enabled": True, "mode": "install"}})
    served = {preflight.GATEWAY_V1: EVERY_KIND[preflight.GATEWAY_V1]}
    assert preflight.diagnose(preflight.needs(config), facts(served=served)) == []


def test_given_the_gateway_provider_without_gateway_api_crds_then_it_is_named():
    served = {k: v for k, v in EVERY_KIND.items() if k != preflight.GATEWAY_V1}
    (problem,) = preflight.diagnose(staging_needs(), facts(served=served))
    assert problem.startswith("moontv:traffic.provider: 'gateway' needs custom resource kinds "
                              "the cluster does not serve: HTTPRoute "
                              "(gateway.networking.k8s.io/v1)")


def test_given_an_unreachable_cluster_then_up_goes_on_with_a_warning():
    def unreachable(target, need):
        raise OSError("connection refused")

    result = preflight.check(staging(), ask=unreachable)
    assert result.problems == []
    assert result.warnings and "connection refused" in result.warnings[0]


def test_given_a_cluster_that_lacks_things_then_up_fails_before_any_resource(monkeypatch):
    created = []
    record = RecordingMocks.new_resource

    def spy(self, args):
        created.append(args.typ)
        return record(self, args)

    monkeypatch.setattr(RecordingMocks, "new_resource", spy)
    asked = []

    def bare_cluster(target, need):
        asked.append(target.context)
        return facts([LOCAL], served={})

    with pytest.raises(ConfigError) as exc:
        run_stack("staging", cluster=bare_cluster)
    assert asked == ["staging"]
    assert [p.split(":")[1] for p in exc.value.problems] == [
        "storage.storageClass", "monitoring.mode", "traffic.provider"]
    assert not [t for t in created if t.startswith("kubernetes:")], created


def test_given_render_mode_then_no_cluster_is_asked():
    def no_cluster(target, need):
        raise AssertionError("render mode must not ask a cluster")

    dev = run_stack("dev", cluster=no_cluster)
    assert dev.kind("Deployment")


def workloads(run: Run) -> list[Resource]:
    return run.kind("Deployment") + run.kind("StatefulSet") + run.kind("CronJob")


def test_every_container_bounds_its_ephemeral_storage_and_every_empty_dir_its_size(
        stack_run: Run):
    for workload in workloads(stack_run):
        spec = pod_spec(workload)
        for c in containers(spec):
            resources = c["resources"]
            assert resources["requests"].get("ephemeral-storage"), (workload.name, c["name"])
            assert resources["limits"].get("ephemeral-storage"), (workload.name, c["name"])
        for volume in spec.get("volumes", []):
            if "emptyDir" in volume:
                assert volume["emptyDir"].get("sizeLimit"), (workload.name, volume["name"])


def test_every_cronjob_has_a_starting_deadline(stack_run: Run):
    for job in stack_run.kind("CronJob"):
        assert job.inputs["spec"]["startingDeadlineSeconds"] > 0, job.name


def handler(probe: dict) -> dict:
    """What a probe checks, without its timing."""
    return {k: v for k, v in probe.items() if k in ("httpGet", "tcpSocket", "exec", "grpc")}


def test_liveness_differs_from_readiness_unless_skipped_with_a_reason(stack_run: Run):
    for workload in workloads(stack_run):
        skipped = (workload.inputs["metadata"].get("annotations") or {}).get(
            "kube-score/ignore", "")
        for c in containers(pod_spec(workload)):
            if "livenessProbe" in c and "readinessProbe" in c:
                same = handler(c["livenessProbe"]) == handler(c["readinessProbe"])
                assert not same or "pod-probes-identical" in skipped.split(","), (
                    workload.name, c["name"])


def test_every_skipped_check_has_its_reason_in_the_docs():
    docs = (ROOT / "docs" / "manifest-checks.md").read_text()
    for check, reason in pod.SKIP_REASONS.items():
        assert f"`{check}`" in docs, check
        assert reason, check


def test_skip_annotations_name_checkov_ids_with_reasons_and_kube_score_tests():
    annotations = pod.skip_checks("CKV_K8S_40", "container-image-pull-policy", "CKV_K8S_35")
    assert annotations == {
        "checkov.io/skip1": f"CKV_K8S_40={pod.SKIP_REASONS['CKV_K8S_40']}",
        "checkov.io/skip2": f"CKV_K8S_35={pod.SKIP_REASONS['CKV_K8S_35']}",
        "kube-score/ignore": "container-image-pull-policy",
    }
    with pytest.raises(KeyError):
        pod.skip_checks("CKV_K8S_1")
    assert pod.image_checks("redis:7.4.2-alpine") == (
        "container-image-pull-policy", "CKV_K8S_43", "CKV_K8S_15")
    assert pod.image_checks("redis:7.4.2-alpine@sha256:" + "a" * 64) == (
        "container-image-pull-policy",)


def test_given_storage_in_an_empty_dir_without_backups_then_no_storage_class_is_needed():
    review = {"moontv:environment": "review"}  # an emptyDir is accepted in dev and review only
    config = staging({**review, "moontv:storage": {"kind": "redis", "persistent": False,
                                                   "backup": {"enabled": False}}})
    need = preflight.needs(config)
    assert not need.volumes and preflight.diagnose(need, facts([])) == []
    with_backups = staging({**review, "moontv:storage": {"kind": "redis", "persistent": False}})
    assert preflight.needs(with_backups).volumes  # the backup PVC


def test_given_a_pull_secret_then_every_pod_running_the_moontv_image_lists_it(run):
    image = {"repository": "ghcr.io/acme/moontv", "tag": "v100.1.2", "pullSecret": "ghcr-pull"}
    r = run("staging", {"moontv:image": image})
    uses_app_image = []
    for resource in r.kind("Deployment") + r.kind("CronJob") + r.kind("Job"):
        spec = resource.inputs["spec"]
        spec = spec.get("jobTemplate", {}).get("spec", spec)
        template = spec["template"]["spec"]
        images = [c["image"] for c in template.get("containers", []) + template.get(
            "initContainers", [])]
        if any(str(i).startswith("ghcr.io/acme/moontv") for i in images):
            uses_app_image.append(resource.name)
            assert template.get("imagePullSecrets") == [{"name": "ghcr-pull"}], resource.name
    assert "moontv-stable" in uses_app_image and len(uses_app_image) >= 3, uses_app_image
    plain = run("staging")
    assert all(
        "imagePullSecrets" not in d.inputs["spec"]["template"]["spec"]
        for d in plain.kind("Deployment")
    )
