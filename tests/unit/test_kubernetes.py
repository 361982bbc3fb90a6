"""The Kubernetes objects the program declares for each stack, checked under Pulumi mocks."""

from __future__ import annotations

import kubernetes_validate
import pytest

from tests.program import Resource, Run

#: The Kubernetes version the manifests are validated against (strict: unknown fields fail).
KUBERNETES_VERSION = "1.33.0"
CUSTOM_RESOURCE_GROUPS = ("gateway.networking.k8s.io", "monitoring.coreos.com")


def manifest(resource: Resource) -> dict:
    group_version = resource.type.split(":")[1]
    api_version = group_version.removeprefix("core/")
    body = {"apiVersion": api_version, "kind": resource.kind, **resource.inputs}
    body["metadata"] = {"name": resource.name, **(body.get("metadata") or {})}
    return body


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
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert app[probe]["httpGet"]["path"] == "/login"
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


def test_the_route_never_sends_api_cron_to_the_app(stack_run: Run):
    route = stack_run.named("HTTPRoute", "moontv")
    cron_rules = [r for r in route.inputs["spec"]["rules"]
                  if r["matches"][0]["path"]["value"] == "/api/cron"]
    assert cron_rules and all("backendRefs" not in r for r in cron_rules)


def test_storage_persists_and_waits_before_the_app(stack_run: Run):
    sts = stack_run.named("StatefulSet", "moontv-kvrocks")
    claim = sts.inputs["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"]
    deployment = app_deployments(stack_run)[0]
    wait = pod_spec(deployment)["initContainers"][1]
    assert wait["command"][-1] == "wait"
    assert wait["env"][0]["valueFrom"]["secretKeyRef"]["key"] == "KVROCKS_URL"


def test_given_prod_then_it_is_highly_available_and_digest_pinned(run):
    prod = run("prod")
    primary = prod.named("Deployment", "moontv-blue")
    assert "replicas" not in primary.inputs["spec"]  # the HPA owns the count
    hpa = prod.kind("HorizontalPodAutoscaler")[0].inputs["spec"]
    assert hpa["minReplicas"] >= 3 and hpa["scaleTargetRef"]["name"] == "moontv-blue"
    assert prod.named("PodDisruptionBudget", "moontv-blue").inputs["spec"]["maxUnavailable"] == 1
    image = pod_spec(primary)["containers"][0]["image"]
    assert "@sha256:" in image
    assert prod.kind("CronJob"), "prod backs up its storage"


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
