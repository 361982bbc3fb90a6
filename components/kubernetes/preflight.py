"""Before deploying to a cluster: does it have what the stack needs?

A cluster without a default StorageClass (or without the class named in ``storage.storageClass``)
leaves the storage PVC Pending, and ``up`` waits ten minutes on the StatefulSet before failing; a
cluster without the Prometheus Operator (or Gateway API) CRDs answers ``no matches for kind``
after half the resources exist. :func:`check` asks the cluster once, before any resource is
registered, and returns one message per missing thing, each naming the key and what to do.
It also asks what the deploying identity may do in the stack's namespace (one
SelfSubjectRulesReview, plus a SelfSubjectAccessReview per cluster-scoped verb) and names every
verb the stack would use but may not (``components/kubernetes/access.py``), so a deployer without
a permission stops before the first resource rather than half way through an `up`.

:func:`needs` (what the stack needs) and :func:`diagnose` (what is missing) are pure; only
:func:`gather` talks to the cluster (the ``kubernetes`` client, with the stack's kubeconfig and
context), so the messages are tested without a cluster. Render mode (``renderDir``) never calls
it. When the cluster cannot be asked (unreachable, or the account may not list StorageClasses)
the check is skipped with a warning: the Kubernetes provider then reports its own error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.kubernetes import access
from components.settings import KubernetesSettings, MoonTVSettings

DEFAULT_CLASS_ANNOTATIONS = ("storageclass.kubernetes.io/is-default-class",
                             "storageclass.beta.kubernetes.io/is-default-class")
MONITORING_V1 = "monitoring.coreos.com/v1"
MONITORING_V1ALPHA1 = "monitoring.coreos.com/v1alpha1"
GATEWAY_V1 = "gateway.networking.k8s.io/v1"
PROMETHEUS_OPERATOR_HINT = (
    "install the Prometheus Operator with its CRDs (e.g. the kube-prometheus-stack chart, or "
    "`kubectl apply --server-side -f` the CRDs in prometheus-operator's "
    "example/prometheus-operator-crd/), or set monitoring.mode to install"
)
GATEWAY_API_HINT = (
    "install the Gateway API standard CRDs (kubectl apply --server-side -f "
    "gateway-api's config/crd/standard/) and a Gateway controller, or set traffic.provider "
    "to nginx"
)
TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class ApiNeed:
    """Custom resource kinds that one setting needs the cluster to serve."""

    key: str  # the config key that asks for them
    value: str  # its value
    hint: str  # what to install
    kinds: Mapping[str, tuple[str, ...]]  # API group/version -> kinds


@dataclass(frozen=True)
class Needs:
    """What a stack needs from its cluster."""

    #: True when the stack creates PVCs (persistent Kvrocks/Redis storage, or backups).
    volumes: bool = False
    #: ``storage.storageClass``, or None for the cluster's default class.
    storage_class: str | None = None
    apis: tuple[ApiNeed, ...] = ()
    #: The stack's namespace and every permission its `up` and `destroy` use there.
    namespace: str = ""
    permissions: tuple[access.Permission, ...] = ()
    #: True when the stack does not create its namespace (it must exist).
    existing_namespace: bool = False

    @property
    def group_versions(self) -> list[str]:
        return sorted({gv for api in self.apis for gv in api.kinds})


@dataclass(frozen=True)
class StorageClass:
    name: str
    default: bool
    binding_mode: str = "Immediate"


@dataclass(frozen=True)
class ClusterFacts:
    """What the cluster has; None where it could not be read (then that check is skipped)."""

    storage_classes: tuple[StorageClass, ...] | None
    #: group/version -> kinds it serves (empty when the group/version is not served).
    served: Mapping[str, frozenset[str]]
    #: Why something could not be read (shown as warnings).
    unknown: tuple[str, ...] = ()
    #: The permissions of ``Needs.permissions`` the identity lacks.
    denied: tuple[access.Permission, ...] = ()
    #: Whether the namespace exists (None: not asked, or could not be read).
    namespace_exists: bool | None = None


def needs(config: MoonTVSettings) -> Needs:
    """What ``config`` needs from the cluster it deploys to."""
    storage = config.storage
    volumes = not storage.is_hosted and (storage.persistent or storage.backup.enabled)
    apis = []
    m = config.monitoring
    if m.enabled and m.mode == "existing":
        apis.append(ApiNeed("monitoring.mode", "existing", PROMETHEUS_OPERATOR_HINT, {
            MONITORING_V1: ("Probe", *(("ServiceMonitor",) if storage.kind != "external" else ()),
                            "PrometheusRule"),
            MONITORING_V1ALPHA1: ("AlertmanagerConfig",),
        }))
    if config.traffic.provider == "gateway":
        apis.append(ApiNeed("traffic.provider", "gateway", GATEWAY_API_HINT,
                            {GATEWAY_V1: ("HTTPRoute",)}))
    return Needs(volumes=volumes, storage_class=config.storage.storage_class, apis=tuple(apis),
                 namespace=config.namespace, permissions=access.needed(config),
                 existing_namespace=not config.kubernetes.create_namespace)


def diagnose(need: Needs, facts: ClusterFacts, prefix: str = "moontv:") -> list[str]:
    """One message per thing the cluster lacks (empty: ready)."""
    problems: list[str] = []
    if need.volumes and facts.storage_classes is not None:
        problem = _storage_problem(need.storage_class, facts.storage_classes)
        if problem:
            problems.append(f"{prefix}storage.storageClass: {problem}")
    for api in need.apis:
        absent = [f"{', '.join(missing)} ({gv})" for gv, kinds in api.kinds.items()
                  if (missing := [k for k in kinds if k not in facts.served.get(gv, ())])]
        if absent:
            problems.append(
                f"{prefix}{api.key}: {api.value!r} needs custom resource kinds the cluster "
                f"does not serve: {'; '.join(absent)}; {api.hint}"
            )
    if need.existing_namespace and facts.namespace_exists is False:
        problems.append(
            f"{prefix}kubernetes.createNamespace: false, but namespace {need.namespace!r} does "
            "not exist: an admin makes it with its deployer identity (pulumi -C deploy/deployer "
            "up, docs/least-privilege.md), or set createNamespace to true")
    problems += [f"{prefix}kubernetes: {line}"
                 for line in access.describe_missing(facts.denied, need.namespace)]
    return problems


def _storage_problem(wanted: str | None, classes: tuple[StorageClass, ...]) -> str | None:
    names = ", ".join(sorted(c.name for c in classes)) or "none"
    if wanted is not None:
        if any(c.name == wanted for c in classes):
            return None
        return (f"StorageClass {wanted!r} does not exist in the cluster (it has: {names}); the "
                "storage PVCs would stay Pending. Set storage.storageClass to an existing class "
                "or create this one")
    if any(c.default for c in classes):
        return None
    if not classes:
        return ("the cluster has no StorageClass, so the storage PVCs would stay Pending: "
                "install a volume provisioner (or create a StorageClass for static "
                "PersistentVolumes) and set storage.storageClass to it")
    return (f"the cluster has no default StorageClass (it has: {names}), so the storage PVCs "
            "would stay Pending: set storage.storageClass to one of them, or mark one default "
            "(kubectl annotate storageclass NAME "
            "storageclass.kubernetes.io/is-default-class=true)")


def api_client(target: KubernetesSettings) -> Any:
    """A ``kubernetes`` API client for the stack's kubeconfig (a path or its content) and
    context, the way the Pulumi Kubernetes provider reads them."""
    import yaml
    from kubernetes import config as kube_config

    kubeconfig = target.kubeconfig
    if kubeconfig and "\n" not in kubeconfig and Path(kubeconfig).expanduser().exists():
        return kube_config.new_client_from_config(
            config_file=str(Path(kubeconfig).expanduser()), context=target.context)
    if kubeconfig:
        return kube_config.new_client_from_config_dict(yaml.safe_load(kubeconfig),
                                                       context=target.context)
    return kube_config.new_client_from_config(context=target.context)


def gather(target: KubernetesSettings, need: Needs) -> ClusterFacts:
    """Ask the cluster of ``target`` for its StorageClasses and the kinds ``need`` names."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    unknown: list[str] = []
    api = api_client(target)
    classes: tuple[StorageClass, ...] | None = None
    if need.volumes:
        try:
            listed = client.StorageV1Api(api).list_storage_class(
                _request_timeout=TIMEOUT_SECONDS)
            classes = tuple(_storage_class(item) for item in listed.items)
        except ApiException as exc:
            unknown.append(f"cannot list StorageClasses (HTTP {exc.status} {exc.reason})")
    served: dict[str, frozenset[str]] = {}
    for group_version in need.group_versions:
        group, version = group_version.split("/")
        try:
            resources = client.CustomObjectsApi(api).get_api_resources(
                group, version, _request_timeout=TIMEOUT_SECONDS)
            served[group_version] = frozenset(r.kind for r in resources.resources)
        except ApiException as exc:
            if exc.status != 404:
                raise
            served[group_version] = frozenset()
    denied, exists = _access(api, need, unknown)
    return ClusterFacts(storage_classes=classes, served=served, unknown=tuple(unknown),
                        denied=denied, namespace_exists=exists)


def _access(api: Any, need: Needs, unknown: list[str]
            ) -> tuple[tuple[access.Permission, ...], bool | None]:
    """The permissions of ``need`` the identity lacks, and whether the namespace exists."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    auth = client.AuthorizationV1Api(api)
    namespaced = [p for p in need.permissions if not p.cluster_wide]
    denied: list[access.Permission] = []
    try:
        review = auth.create_self_subject_rules_review(
            client.V1SelfSubjectRulesReview(
                spec=client.V1SelfSubjectRulesReviewSpec(namespace=need.namespace)),
            _request_timeout=TIMEOUT_SECONDS)
        rules = [{"apiGroups": r.api_groups, "resources": r.resources, "verbs": r.verbs,
                  "resourceNames": r.resource_names} for r in review.status.resource_rules or ()]
        denied = [p for p in namespaced if not access.allows(rules, p)]
        # A webhook authorizer's rules are not listed: ask about each of those one by one.
        unsure = denied if review.status.incomplete else []
        cluster = [p for p in need.permissions if p.cluster_wide]
        denied = [p for p in denied if p not in unsure]
        denied += [p for p in unsure + cluster if not _may(auth, p, need.namespace)]
    except ApiException as exc:
        unknown.append(f"what the deploying identity may do (HTTP {exc.status} {exc.reason})")
    exists: bool | None = None
    if need.existing_namespace:
        try:
            client.CoreV1Api(api).read_namespace(need.namespace, _request_timeout=TIMEOUT_SECONDS)
            exists = True
        except ApiException as exc:
            exists = False if exc.status == 404 else None
    return tuple(sorted(denied)), exists


def _may(auth: Any, permission: access.Permission, namespace: str) -> bool:
    from kubernetes import client

    resource = permission.resource
    own = resource.plural == "namespaces" and not permission.cluster_wide
    review = auth.create_self_subject_access_review(
        client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(
                verb=permission.verb, group=resource.group, resource=resource.plural,
                namespace=None if permission.cluster_wide else namespace,
                name=namespace if own else None))),
        _request_timeout=TIMEOUT_SECONDS)
    return bool(review.status.allowed)


def _storage_class(item: Any) -> StorageClass:
    annotations = item.metadata.annotations or {}
    default = any(annotations.get(a) == "true" for a in DEFAULT_CLASS_ANNOTATIONS)
    return StorageClass(name=item.metadata.name, default=default,
                        binding_mode=item.volume_binding_mode or "Immediate")


@dataclass(frozen=True)
class Result:
    problems: list[str]
    warnings: list[str]


def check(config: MoonTVSettings,
          ask: Callable[[KubernetesSettings, Needs], ClusterFacts] | None = None) -> Result:
    """What the stack's cluster lacks (``problems``), and what could not be checked."""
    need = needs(config)
    try:
        facts = (ask or gather)(config.kubernetes, need)
    except Exception as exc:  # unreachable, bad kubeconfig, TLS: the provider will say more
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Result([], [f"could not ask the cluster what it has before deploying ({detail}); "
                           "missing StorageClasses or CRDs will show up as resources that "
                           "never become ready"])
    return Result(diagnose(need, facts),
                  [f"not checked before deploying: {u}" for u in facts.unknown])
