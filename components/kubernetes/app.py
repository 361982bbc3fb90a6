"""MoonTV on Kubernetes: namespace, config, one Deployment + Service per release track, the
stable and preview Services, PDBs, HPA, NetworkPolicies, storage and traffic routing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import app_facts, naming
from components.kubernetes import capacity, pod
from components.kubernetes.storage import SCRIPT, SCRIPT_DIR, Storage, StorageArgs, tool_config_map
from components.kubernetes.traffic import SERVICE_PORT, RouteArgs, router_for
from components.passwords import owner_password
from components.release import DEFAULT_SCALE_DOWN_DELAY, Track, image_ref
from components.settings import DnsEgressSettings, MoonTVSettings, Settings

PRE_STOP_SECONDS = 10
GRACE_SECONDS = 40
#: Private and link-local ranges: the app reaches the internet (video sources), not the cluster.
PRIVATE_RANGES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16",
                  "100.64.0.0/10"]
#: Fills the writable emptyDir with the image's /app/public (sw.js, icons, manifest.json) and
#: preserves nothing: the emptyDir root belongs to root, so `cp -a` (times, owner) fails there as
#: uid 1001. Files are written afresh, owned by the app user and writable (start.js rewrites
#: manifest.json); a re-run overwrites. Node is the one tool every MoonTV image has (it runs
#: start.js and storage-tool.js), whatever its base (Alpine's busybox, Debian, distroless).
COPY_PUBLIC_JS = (
    "const fs = require('fs'), path = require('path');"
    " const copy = (from, to) => { for (const name of fs.readdirSync(from)) {"
    " const src = path.join(from, name), dst = path.join(to, name);"
    " if (fs.statSync(src).isDirectory()) { fs.mkdirSync(dst, {recursive: true}); copy(src, dst); }"
    " else fs.writeFileSync(dst, fs.readFileSync(src)); } };"
    " copy(process.argv[1], process.argv[2]);"
)
PUBLIC_SEED = "/seed"
#: Size limits of the app's writable volumes (public holds ~0.6 MB; Next's cache may grow).
VOLUME_SIZES = {"public": "64Mi", "next-cache": "256Mi", "tmp": "64Mi"}
#: Where the init container reads the storage URL (a file of the app Secret).
STORAGE_URL_DIR = "/etc/moontv/storage"


@dataclass(frozen=True)
class MoonTVKubernetesArgs:
    """The stack's validated settings (its groups and secrets are read where they are used)."""

    settings: Settings
    #: Image references to use instead of ``repository:version`` (e.g. a freshly built digest).
    image_overrides: Mapping[str, pulumi.Input[str]] | None = None
    #: The app's Deployments as the cluster runs them (:func:`capacity.gather`); None: unknown.
    live: capacity.Live | None = None


#: How long `up` waits for a Deployment beyond its progress deadline before it gives up.
ROLLOUT_MARGIN_SECONDS = 30


class MoonTVKubernetes(pulumi.ComponentResource):
    """The whole MoonTV deployment in one namespace."""

    namespace: pulumi.Output[str]
    storage: Storage
    services: dict[str, pulumi.Output[str]]
    deployments: dict[str, k8s.apps.v1.Deployment]

    def __init__(self, name: str, args: MoonTVKubernetesArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("moontv:kubernetes:MoonTV", name, None, opts)
        self._settings = s = args.settings
        self._overrides = args.image_overrides or {}
        c = s.config
        child = pulumi.ResourceOptions(parent=self)
        if c.kubernetes.create_namespace:
            ns = k8s.core.v1.Namespace(
                f"{name}-namespace",
                metadata={"name": c.namespace,
                          "labels": naming.namespace_labels(s.stack)},
                opts=child,
            )
            self.namespace = ns.metadata.name
            inner = pulumi.ResourceOptions(parent=self, depends_on=[ns])
        else:  # made by the admin stack (deploy/deployer): only used here
            self.namespace = pulumi.Output.from_input(c.namespace)
            inner = child
        self._opts = inner
        app_labels = naming.labels(s.stack, "app")

        self.service_account = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata={"name": naming.APP, "namespace": self.namespace, "labels": app_labels},
            automount_service_account_token=False,
            opts=inner,
        )
        storage = self.storage = Storage(
            f"{name}-storage",
            StorageArgs(namespace=self.namespace, instance=s.stack, storage=c.storage,
                        tool_image=self._image(s.plan.tracks[0]),
                        tool_pull_secret=c.image.pull_secret,
                        external_url=s.storage_url,
                        metrics_namespace=_metrics_namespace(c),
                        backup_keys=s.backup_keys or {},
                        offsite_secret_key=s.backup_offsite_secret_key),
            opts=inner,
        )
        self.config_map = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata={"namespace": self.namespace, "labels": app_labels},
            data={**c.site.env(), app_facts.STORAGE_TYPE_ENV: c.storage.app_type},
            opts=inner,
        )
        url_key = app_facts.URL_VARIABLES[c.storage.app_type]
        self.secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata={"namespace": self.namespace, "labels": app_labels},
            string_data={app_facts.USERNAME_ENV: c.owner.username,
                         app_facts.PASSWORD_ENV: owner_password(s.owner_password, self),
                         url_key: storage.url,
                         **({app_facts.UPSTASH_TOKEN_ENV: s.storage_token}
                            if s.storage_token is not None else {})},
            opts=inner,
        )
        self._url_key = url_key
        #: The storage tool speaks the Redis protocol: it cannot wait for Upstash's REST API.
        self._waits = c.storage.app_type != "upstash"
        self._tool = tool_config_map(f"{name}-tool", self.namespace, app_labels, inner)

        self.deployments = {}
        self.services = {}
        bg = c.release.blue_green
        delay = bg.scale_down_delay_seconds if bg is not None else DEFAULT_SCALE_DOWN_DELAY
        self._scales = capacity.decide(s.plan, c.autoscaling, delay, args.live,
                                       datetime.now(UTC))
        for scale in self._scales.values():
            if scale.note:
                pulumi.log.info(scale.note, self)
        # Traffic moves only to Ready capacity: the routes and the host Services wait for the
        # Deployments they point at (the provider awaits each rollout, at the size the track
        # must carry: components/kubernetes/capacity.py), and a track that goes idle (a colour
        # scaled to 0) or loses the traffic changes only once they point elsewhere.
        idle = [t for t in s.plan.tracks
                if t.role == "idle" or self._scales[t.name].after_routes]
        for track in s.plan.tracks:
            if track not in idle:
                self._track(name, track)
        pointed = [*self._stable_services(name), *router_for(c.traffic.provider).declare(
            name,
            RouteArgs(namespace=self.namespace, table=s.plan.routes(c.traffic.host),
                      traffic=c.traffic, labels=naming.labels(s.stack, "traffic")),
            pulumi.ResourceOptions(parent=self, depends_on=list(self.deployments.values())),
        )]
        for track in idle:
            self._track(name, track, after=pointed)
        self._network_policies(name, storage)
        self.register_outputs({
            "namespace": self.namespace,
            "services": self.services,
            "primary": s.plan.primary,
        })

    def _image(self, track: Track) -> pulumi.Input[str]:
        repository = self._settings.config.image.repository
        return self._overrides.get(track.version, image_ref(repository, track.version))

    def _hpa_managed(self, track: Track) -> bool:
        return self._settings.config.autoscaling.enabled and track.role == "primary"

    def _track(self, name: str, track: Track, after: list[pulumi.Resource] | None = None) -> None:
        """The track's Deployment, Service, PDB and HPA; its Deployment waits for ``after``."""
        s, c = self._settings, self._settings.config
        resource = naming.track_name(track.name)
        labels = naming.labels(s.stack, "app", track.version, track.name)
        selector = naming.selector_labels(s.stack, "app", track.name)
        spec: dict[str, Any] = {
            "selector": {"matchLabels": selector},
            "revisionHistoryLimit": 5,
            "progressDeadlineSeconds": c.kubernetes.progress_deadline_seconds,
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": labels}, "spec": self._pod_spec(track, selector)},
        }
        scale = self._scales[track.name]
        if scale.replicas is not None:
            spec["replicas"] = scale.replicas
        annotations = pod.skip_checks("CKV_K8S_40", "container-security-context-user-group-id",
                                      "CKV_K8S_35", *pod.image_checks(self._image(track)))
        if scale.primary_until:
            annotations[capacity.PRIMARY_UNTIL] = scale.primary_until
        if c.autoscaling.enabled:
            annotations[capacity.PATCH_FORCE] = "true"
        timeout = f"{c.kubernetes.progress_deadline_seconds + ROLLOUT_MARGIN_SECONDS}s"
        deployment = k8s.apps.v1.Deployment(
            f"{name}-{track.name}",
            metadata={"name": resource, "namespace": self.namespace, "labels": labels,
                      "annotations": annotations},
            spec=spec,
            # `up` waits for the rollout no longer than its progress deadline (and a margin):
            # a version that never gets Ready fails `up` with the Deployment's reasons.
            opts=pulumi.ResourceOptions.merge(self._opts, pulumi.ResourceOptions(
                custom_timeouts=pulumi.CustomTimeouts(create=timeout, update=timeout),
                depends_on=after or [])),
        )
        self.deployments[track.name] = deployment
        # The Service outlives versions: no version label, so that a version change updates the
        # Deployment alone (a Service update would wait for every endpoint to be Ready).
        service = k8s.core.v1.Service(
            f"{name}-{track.name}-service",
            metadata={"name": resource, "namespace": self.namespace,
                      "labels": naming.labels(s.stack, "app", None, track.name)},
            spec={"selector": selector,
                  "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http"}]},
            opts=self._opts,
        )
        self.services[track.name] = service.metadata.name
        # (a colour that keeps the replicas the HPA gave it keeps its budget too)
        count = scale.replicas if scale.replicas is not None else track.replicas
        min_replicas = c.autoscaling.min_replicas if self._hpa_managed(track) else count
        if min_replicas > 1 or self._hpa_managed(track):
            k8s.policy.v1.PodDisruptionBudget(
                f"{name}-{track.name}-pdb",
                metadata={"name": resource, "namespace": self.namespace, "labels": labels},
                spec={"maxUnavailable": 1, "selector": {"matchLabels": selector}},
                opts=self._opts,
            )
        if self._hpa_managed(track):
            metrics = [_utilization("cpu", c.autoscaling.target_cpu)]
            if c.autoscaling.target_memory:
                metrics.append(_utilization("memory", c.autoscaling.target_memory))
            k8s.autoscaling.v2.HorizontalPodAutoscaler(
                f"{name}-hpa",
                metadata={"name": naming.APP, "namespace": self.namespace, "labels": labels},
                spec={
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                       "name": resource},
                    "minReplicas": c.autoscaling.min_replicas,
                    "maxReplicas": c.autoscaling.max_replicas,
                    "metrics": metrics,
                    **({"behavior": c.autoscaling.behavior.spec()}
                       if c.autoscaling.behavior else {}),
                },
                # it moves to an incoming primary once that one is Ready at its size
                opts=pulumi.ResourceOptions.merge(self._opts, pulumi.ResourceOptions(
                    depends_on=[deployment])),
            )

    def _pod_spec(self, track: Track, selector: dict[str, str]) -> dict[str, Any]:
        c = self._settings.config
        image = self._image(track)
        security = pod.container_security()
        mounts = [{"name": n, "mountPath": p} for n, p in app_facts.WRITABLE_PATHS.items()]
        probe = {"httpGet": {"path": app_facts.PROBE_PATH, "port": "http"}, "timeoutSeconds": 3}
        alive = {"httpGet": {"path": app_facts.LIVENESS_PATH, "port": "http"},
                 "timeoutSeconds": 3}
        return {
            **pod.pod_defaults(uid=app_facts.UID, pull_secret=c.image.pull_secret),
            "serviceAccountName": self.service_account.metadata.name,
            "terminationGracePeriodSeconds": GRACE_SECONDS,
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                                    "labelSelector": {"matchLabels": selector}}},
            ]}},
            "topologySpreadConstraints": [
                {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
                 "labelSelector": {"matchLabels": selector}}
                for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")
            ],
            "initContainers": [
                {   # the image's /app/public, copied to a writable emptyDir (start.js writes it)
                    "name": "copy-public",
                    "image": image,
                    "imagePullPolicy": c.image.pull_policy,
                    "command": ["node", "-e", COPY_PUBLIC_JS, app_facts.WRITABLE_PATHS["public"],
                                PUBLIC_SEED],
                    "resources": _small(),
                    "securityContext": security,
                    "volumeMounts": [{"name": "public", "mountPath": PUBLIC_SEED}],
                },
                *([{   # the app caches a blank config if storage does not answer at first read
                    "name": "wait-for-storage",
                    "image": image,
                    "imagePullPolicy": c.image.pull_policy,
                    "command": ["node", f"{SCRIPT_DIR}/{SCRIPT.name}", "wait"],
                    "env": [{"name": "STORAGE_URL_FILE", "value": f"{STORAGE_URL_DIR}/url"}],
                    "resources": _small(),
                    "securityContext": security,
                    "volumeMounts": [
                        {"name": "tool", "mountPath": SCRIPT_DIR, "readOnly": True},
                        {"name": "storage-url", "mountPath": STORAGE_URL_DIR, "readOnly": True},
                    ],
                }] if self._waits else []),
            ],
            "containers": [{
                "name": "moontv",
                "image": image,
                "imagePullPolicy": c.image.pull_policy,
                "ports": [{"name": "http", "containerPort": app_facts.PORT}],
                # Only what the app reads; the track and version are labels.
                "env": [{"name": k, "value": v} for k, v in app_facts.LISTEN_ENV.items()],
                "envFrom": [{"configMapRef": {"name": self.config_map.metadata.name}},
                            {"secretRef": {"name": self.secret.metadata.name}}],
                "startupProbe": {**probe, "periodSeconds": 5, "failureThreshold": 36},
                "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 3},
                "livenessProbe": {**alive, "periodSeconds": 10, "failureThreshold": 3},
                "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRE_STOP_SECONDS)]}}},
                # the writable volumes count towards the pod's ephemeral storage too
                "resources": pod.with_ephemeral({
                    "requests": c.resources.requests.model_dump(),
                    "limits": c.resources.limits.model_dump(),
                }, request="64Mi", limit="512Mi"),
                "securityContext": security,
                "volumeMounts": mounts,
            }],
            "volumes": [pod.empty_dir(n, VOLUME_SIZES[n]) for n in app_facts.WRITABLE_PATHS] + [
                *([{"name": "tool", "configMap": {"name": self._tool.metadata.name}},
                   {"name": "storage-url", "secret": {
                       "secretName": self.secret.metadata.name, "defaultMode": 0o440,
                       "items": [{"key": self._url_key, "path": "url"}]}}]
                  if self._waits else []),
            ],
        }

    def _stable_services(self, name: str) -> list[pulumi.Resource]:
        """``moontv`` selects the primary track, ``moontv-preview`` the preview track; each
        waits for its track's Deployment to be Ready (a track losing the traffic is Ready: it
        served until now, and it changes only after the Services and routes moved)."""
        s = self._settings
        made: list[pulumi.Resource] = []
        roles = {naming.PRIMARY_SERVICE: s.plan.primary,
                 naming.PREVIEW_SERVICE: s.plan.preview}
        for service, track in roles.items():
            if track is None:
                continue
            svc = k8s.core.v1.Service(
                f"{name}-{service}",
                metadata={"name": service, "namespace": self.namespace,
                          "labels": naming.labels(s.stack, "app")},
                spec={"selector": naming.selector_labels(s.stack, "app", track),
                      "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http"}]},
                opts=pulumi.ResourceOptions.merge(self._opts, pulumi.ResourceOptions(
                    depends_on=[self.deployments[track]] if track in self.deployments else [])),
            )
            self.services[service] = svc.metadata.name
            made.append(svc)
        return made

    def _network_policies(self, name: str, storage: Storage) -> None:
        s, c = self._settings, self._settings.config
        labels = naming.labels(s.stack, "network")
        app = {"matchLabels": {"app.kubernetes.io/name": naming.APP,
                               "app.kubernetes.io/component": "app"}}
        storage_pods = {"matchLabels": {"app.kubernetes.io/name": naming.APP,
                                        "app.kubernetes.io/component": "storage"}}
        dns = [{"protocol": p, "port": 53} for p in ("UDP", "TCP")]
        policies: dict[str, dict[str, Any]] = {
            "default-deny": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
            "allow-dns": {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [{"to": dns_peers(c.network_policy.dns), "ports": dns}],
            },
            "allow-gateway-to-app": {
                "podSelector": app,
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {
                    "kubernetes.io/metadata.name": c.traffic.allowed_namespace}}}],
                    "ports": [{"protocol": "TCP", "port": app_facts.PORT}]}],
            },
            "allow-app-egress": {
                "podSelector": {"matchExpressions": [{
                    "key": "app.kubernetes.io/component", "operator": "In",
                    "values": ["app", "backup"]}]},
                "policyTypes": ["Egress"],
                "egress": [
                    # video sources and Douban on the internet, never the cluster's own ranges
                    {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": PRIVATE_RANGES}}]},
                    *([{"to": [{"podSelector": storage_pods}],
                        "ports": [{"protocol": "TCP", "port": storage.port}]}]
                      if storage.port else []),
                ],
            },
        }
        for policy, spec in policies.items():
            k8s.networking.v1.NetworkPolicy(
                f"{name}-{policy}",
                metadata={"name": naming.resource_name(naming.APP, policy),
                          "namespace": self.namespace, "labels": labels},
                spec=spec,
                opts=self._opts,
            )


def _metrics_namespace(c: MoonTVSettings) -> str | None:
    """Namespace of the Prometheus that scrapes the storage exporter (monitoring on)."""
    return c.monitoring.monitoring_namespace if c.monitoring.enabled else None


def dns_peers(dns: DnsEgressSettings) -> list[dict[str, Any]]:
    """The destinations pods may query on port 53: the DNS namespace's pods and the CIDRs."""
    peers: list[dict[str, Any]] = []
    if dns.namespace:
        peers.append({"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": dns.namespace}}})
    peers += [{"ipBlock": {"cidr": cidr}} for cidr in dns.cidrs]
    return peers


def _utilization(resource: str, target: int) -> dict[str, Any]:
    return {"type": "Resource", "resource": {
        "name": resource, "target": {"type": "Utilization", "averageUtilization": target}}}


def _small() -> dict[str, Any]:
    return pod.with_ephemeral({"requests": {"cpu": "10m", "memory": "32Mi"},
                               "limits": {"cpu": "200m", "memory": "128Mi"}})
