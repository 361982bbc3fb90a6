"""Before deploying to a cluster: does it have what the stack needs?

A cluster without a default StorageClass (or without the class named in ``storage.storageClass``)
leaves the storage PVC Pending, and ``up`` waits ten minutes on the StatefulSet before failing; a
cluster without the Prometheus Operator (or Gateway API) CRDs answers ``no matches for kind``
after half the resources exist. :func:`check` asks the cluster once, before any resource is
registered, and returns one message per missing thing, each naming the key and what to do.

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
    return Needs(volumes=volumes, storage_class=config.storage.storage_class, apis=tuple(apis))


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


def _api_client(target: KubernetesSettings) -> Any:
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
    api = _api_client(target)
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
    return ClusterFacts(storage_classes=classes, served=served, unknown=tuple(unknown))


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
