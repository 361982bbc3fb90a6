"""What the deployer identity may do: the RBAC rules of ``moontv-deployer``, derived from kinds.

The app stack deploys as the ServiceAccount ``moontv-deployer`` of its namespace (made by the
admin-run stack in ``deploy/deployer``, see docs/least-privilege.md). Its Role lists, for every
kind the program registers in the namespace, the verbs the Pulumi Kubernetes provider uses on
it, and read verbs for the kinds the provider watches while it waits for a rollout. Nothing is
granted with ``*`` and nothing cluster-scoped is written: the namespace itself belongs to the
admin stack, and the only cluster-scoped grants are the reads the preflight makes.

:data:`DEPLOYED_KINDS` is the union of the namespaced kinds the program registers for every
shipped Kubernetes stack; ``tests/unit/test_deployer.py`` runs the program under mocks for each
stack file and fails when this list and the program disagree. :func:`kinds_for` says which of
them one stack needs, so that the preflight asks only about those. The module is pure: no
Pulumi, no cluster.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from components.settings import MoonTVSettings

SERVICE_ACCOUNT = "moontv-deployer"


@dataclass(frozen=True, order=True)
class Resource:
    """A Kubernetes API resource: its group ("" for core), plural name and scope."""

    group: str
    plural: str
    namespaced: bool = True

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


#: Kind -> API resource, for every kind the program can register or the provider reads.
RESOURCES: dict[str, Resource] = {
    "ConfigMap": Resource("", "configmaps"),
    "Secret": Resource("", "secrets"),
    "Service": Resource("", "services"),
    "ServiceAccount": Resource("", "serviceaccounts"),
    "PersistentVolumeClaim": Resource("", "persistentvolumeclaims"),
    "Namespace": Resource("", "namespaces", namespaced=False),
    "Pod": Resource("", "pods"),
    "Endpoints": Resource("", "endpoints"),
    "Event": Resource("", "events"),
    "Deployment": Resource("apps", "deployments"),
    "StatefulSet": Resource("apps", "statefulsets"),
    "ReplicaSet": Resource("apps", "replicasets"),
    "DaemonSet": Resource("apps", "daemonsets"),
    "CronJob": Resource("batch", "cronjobs"),
    "Job": Resource("batch", "jobs"),
    "HorizontalPodAutoscaler": Resource("autoscaling", "horizontalpodautoscalers"),
    "PodDisruptionBudget": Resource("policy", "poddisruptionbudgets"),
    "NetworkPolicy": Resource("networking.k8s.io", "networkpolicies"),
    "Ingress": Resource("networking.k8s.io", "ingresses"),
    "EndpointSlice": Resource("discovery.k8s.io", "endpointslices"),
    "HTTPRoute": Resource("gateway.networking.k8s.io", "httproutes"),
    "Probe": Resource("monitoring.coreos.com", "probes"),
    "ServiceMonitor": Resource("monitoring.coreos.com", "servicemonitors"),
    "PrometheusRule": Resource("monitoring.coreos.com", "prometheusrules"),
    "AlertmanagerConfig": Resource("monitoring.coreos.com", "alertmanagerconfigs"),
    "ClusterRole": Resource("rbac.authorization.k8s.io", "clusterroles", namespaced=False),
    "ClusterRoleBinding": Resource("rbac.authorization.k8s.io", "clusterrolebindings",
                                   namespaced=False),
    "StorageClass": Resource("storage.k8s.io", "storageclasses", namespaced=False),
    "CustomResourceDefinition": Resource("apiextensions.k8s.io", "customresourcedefinitions",
                                         namespaced=False),
}

#: The namespaced kinds the program registers across the shipped Kubernetes stacks.
DEPLOYED_KINDS = (
    "ConfigMap", "Secret", "Service", "ServiceAccount", "PersistentVolumeClaim", "Deployment",
    "StatefulSet", "CronJob", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy",
    "HTTPRoute", "Probe", "ServiceMonitor", "PrometheusRule", "AlertmanagerConfig",
)
#: What the Pulumi Kubernetes provider does to a kind it manages: read and refresh (get),
#: wait for it (list, watch), create and change it by server-side apply (create, patch) and
#: destroy it (delete). It never replaces a whole object with `update`.
MANAGE_VERBS = ("create", "delete", "get", "list", "patch", "watch")
READ_VERBS = ("get", "list", "watch")
#: Kinds the provider and the rollout checks only read in the namespace: a Deployment's or a
#: StatefulSet's rollout is followed through its ReplicaSets and Pods, a Service's through its
#: Endpoints, and failures are explained with Events.
WATCHED_KINDS = ("Pod", "ReplicaSet", "Endpoints", "EndpointSlice", "Event", "Job")
#: The namespace object itself (`GET /api/v1/namespaces/<ns>` is authorized in that namespace):
#: the preflight and `rollout check` read it, nothing writes it.
NAMESPACE_READ = ("get",)
#: Cluster-scoped reads of the preflight: StorageClasses (is there a default one?) and CRDs
#: (are the Gateway API and Prometheus Operator kinds served?). Read-only.
CLUSTER_READ_KINDS = ("StorageClass", "CustomResourceDefinition")
CLUSTER_READ_VERBS = ("get", "list")


#: Verbs on one named object: on the ``namespaces`` resource the API server authorizes them in
#: that namespace (``GET /api/v1/namespaces/NS`` is a request in NS), so a Role can grant them.
OBJECT_VERBS = ("get", "patch", "update", "delete")


@dataclass(frozen=True, order=True)
class Permission:
    """One verb on one resource (in the stack's namespace unless the resource is cluster-wide)."""

    verb: str
    resource: Resource

    @property
    def cluster_wide(self) -> bool:
        """Whether only a ClusterRole can grant it (else a Role in the namespace can)."""
        return not self.resource.namespaced and not (
            self.resource.plural == "namespaces" and self.verb in OBJECT_VERBS)


def _rules(grants: Iterable[tuple[Iterable[str], tuple[str, ...]]]) -> list[dict[str, object]]:
    """RBAC PolicyRules: one per (API group, verbs), resources sorted."""
    grouped: dict[tuple[str, tuple[str, ...]], set[str]] = {}
    for kinds, verbs in grants:
        for kind in kinds:
            resource = RESOURCES[kind]
            grouped.setdefault((resource.group, tuple(sorted(verbs))), set()).add(resource.plural)
    return [{"apiGroups": [group], "resources": sorted(plurals), "verbs": list(verbs)}
            for (group, verbs), plurals in sorted(grouped.items())]


def role_rules(kinds: Iterable[str] = DEPLOYED_KINDS) -> list[dict[str, object]]:
    """The deployer's Role in its namespace: manage ``kinds``, read what the provider watches,
    get the namespace object."""
    kinds = tuple(kinds)
    outside = [k for k in kinds if not RESOURCES[k].namespaced]
    if outside:
        raise ValueError(f"cluster-scoped kinds cannot be granted by a Role: {outside}")
    return _rules([(kinds, MANAGE_VERBS), (WATCHED_KINDS, READ_VERBS),
                   (("Namespace",), NAMESPACE_READ)])


def cluster_role_rules() -> list[dict[str, object]]:
    """The deployer's read-only ClusterRole: what the preflight reads cluster-wide."""
    return _rules([(CLUSTER_READ_KINDS, CLUSTER_READ_VERBS)])


def kinds_for(config: MoonTVSettings) -> tuple[str, ...]:
    """The kinds the program registers for ``config`` on a cluster (namespaced and not)."""
    storage, monitoring = config.storage, config.monitoring
    kinds = {"ConfigMap", "Secret", "Service", "ServiceAccount", "Deployment", "NetworkPolicy"}
    if config.kubernetes.create_namespace:
        kinds.add("Namespace")
    if not storage.is_hosted:
        kinds.add("StatefulSet")
        if storage.backup.enabled:
            kinds |= {"PersistentVolumeClaim", "CronJob"}
    if config.autoscaling.enabled:
        kinds.add("HorizontalPodAutoscaler")
    if config.autoscaling.enabled or any(t.replicas > 1 for t in config.plan.tracks):
        kinds.add("PodDisruptionBudget")
    kinds.add("HTTPRoute" if config.traffic.provider == "gateway" else "Ingress")
    if monitoring.enabled:
        kinds |= {"Probe", "PrometheusRule", "AlertmanagerConfig"}
        if not storage.is_hosted:
            kinds.add("ServiceMonitor")
        if monitoring.logs.enabled:
            kinds |= {"DaemonSet", "ClusterRole", "ClusterRoleBinding"}
    return tuple(sorted(kinds))


def needed(config: MoonTVSettings) -> tuple[Permission, ...]:
    """Every permission an `up` and `destroy` of ``config`` uses."""
    wanted = {Permission(verb, RESOURCES[kind])
              for kind in kinds_for(config) for verb in MANAGE_VERBS}
    wanted |= {Permission(verb, RESOURCES[kind]) for kind in WATCHED_KINDS for verb in READ_VERBS}
    if not config.kubernetes.create_namespace:
        wanted |= {Permission(verb, RESOURCES["Namespace"]) for verb in NAMESPACE_READ}
    return tuple(sorted(wanted))


def allows(rules: Iterable[dict[str, object]], permission: Permission) -> bool:
    """Whether RBAC ``rules`` (as a SelfSubjectRulesReview returns them) grant ``permission``
    on every object of its resource (rules limited to resourceNames do not count)."""
    resource = permission.resource
    for rule in rules:
        if rule.get("resourceNames"):
            continue
        groups, plurals, verbs = (list(rule.get(k) or []) for k in  # type: ignore[call-overload]
                                  ("apiGroups", "resources", "verbs"))
        if ((resource.group in groups or "*" in groups)
                and (resource.plural in plurals or "*" in plurals)
                and (permission.verb in verbs or "*" in verbs)):
            return True
    return False


def describe_missing(missing: Iterable[Permission], namespace: str) -> list[str]:
    """One sentence per resource the identity lacks verbs on, saying what to add."""
    by_resource: dict[tuple[bool, Resource], list[str]] = {}
    for permission in sorted(missing):
        by_resource.setdefault((permission.cluster_wide, permission.resource), []).append(
            permission.verb)
    lines = []
    for (cluster_wide, resource), verbs in sorted(by_resource.items()):
        where = "cluster-wide" if cluster_wide else f"in {namespace}"
        holder = "ClusterRole" if cluster_wide else "Role"
        grant = (f"add {{apiGroups: [{resource.group!r}], resources: [{resource.plural}], "
                 f"verbs: [{', '.join(verbs)}]}} to its {holder}")
        if resource.plural == "namespaces":  # the namespace is the admin stack's to make
            hint = ("set moontv:kubernetes.createNamespace to false and let deploy/deployer "
                    f"make the namespace, or {grant}")
        else:
            hint = (f"{grant} (deploy/deployer grants what the shipped stacks need: re-run "
                    "it), or deploy with an identity that may")
        lines.append(f"the deployer cannot {', '.join(verbs)} {resource.plural} {where}: {hint}")
    return lines
