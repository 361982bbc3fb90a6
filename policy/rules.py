"""MoonTV policy rules as pure functions over plain resource property dicts.

Each resource rule takes ``(resource_type, props)`` and returns the violations as messages
(empty when compliant); stack rules take a list of :class:`Resource`. ``__main__.py`` only
registers them with CrossGuard, so every rule is testable without the Pulumi engine.

Props use the Kubernetes field names (camelCase), as the engine hands them to a policy pack.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Props = Mapping[str, Any]

APP_NAME = "moontv"
APP_NAME_LABEL = "app.kubernetes.io/name"
POD_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "kubernetes:apps/v1:Deployment": ("spec", "template"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template"),
    "kubernetes:apps/v1:ReplicaSet": ("spec", "template"),
    "kubernetes:batch/v1:Job": ("spec", "template"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template"),
    "kubernetes:core/v1:Pod": (),
}
LONG_RUNNING_TYPES = frozenset(
    {
        "kubernetes:apps/v1:Deployment",
        "kubernetes:apps/v1:StatefulSet",
        "kubernetes:apps/v1:DaemonSet",
        "kubernetes:apps/v1:ReplicaSet",
    }
)
REPLICATED_TYPES = frozenset({"kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet"})
SERVICE_TYPE = "kubernetes:core/v1:Service"
CONFIG_MAP_TYPE = "kubernetes:core/v1:ConfigMap"
NETWORK_POLICY_TYPE = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
PDB_TYPE = "kubernetes:policy/v1:PodDisruptionBudget"
HPA_TYPE = "kubernetes:autoscaling/v2:HorizontalPodAutoscaler"
SWARM_SERVICE_TYPE = "docker:index/service:Service"
ALLOWED_ADDED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
SECCOMP_OK = frozenset({"RuntimeDefault", "Localhost"})
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
SECRET_KEY = re.compile(
    r"(pass(word|wd)?|secret|token|api[_-]?key|private[_-]?key|credential|auth)", re.IGNORECASE
)
# A value that *is* a URL with a password (scripts that merely mention one are fine).
URL_WITH_CREDENTIALS = re.compile(r"^\s*[a-z][a-z0-9+.-]*://[^/\s@]*:[^/\s@]+@\S*\s*$", re.I)
PROD_ENVIRONMENTS = frozenset({"prod", "production"})


@dataclass(frozen=True)
class Resource:
    """What a stack rule needs of one resource."""

    type: str
    name: str
    props: Props
    urn: str = ""


@dataclass(frozen=True)
class Violation:
    message: str
    urn: str | None = None


@dataclass(frozen=True)
class Container:
    kind: str  # "container" | "initContainer"
    name: str
    spec: Props
    pod_security: Props = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.kind} {self.name!r}"

    def security(self, key: str) -> Any:
        """A security setting, the container's own value winning over the pod's."""
        own = self.spec.get("securityContext") or {}
        if own.get(key) is not None:
            return own[key]
        return self.pod_security.get(key)


# --- helpers ---------------------------------------------------------------------------------


def _get(props: Props, *path: str) -> Any:
    value: Any = props
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def pod_template(resource_type: str, props: Props) -> Props | None:
    """The pod template (metadata + spec) of a workload, or None for other types."""
    path = POD_TEMPLATE_PATHS.get(resource_type)
    if path is None:
        return None
    template = _get(props, *path) if path else props
    return template if isinstance(template, Mapping) else {}


def containers(resource_type: str, props: Props) -> list[Container]:
    template = pod_template(resource_type, props)
    if template is None:
        return []
    spec = template.get("spec") or {}
    pod_security = spec.get("securityContext") or {}
    found = []
    for kind, key in (("initContainer", "initContainers"), ("container", "containers")):
        for item in spec.get(key) or []:
            found.append(Container(kind, str(item.get("name", "?")), item, pod_security))
    return found


def images(resource_type: str, props: Props) -> list[tuple[str, str]]:
    """(owner label, image) of every container of a workload or Swarm service."""
    if resource_type == SWARM_SERVICE_TYPE:
        image = _get(props, "taskSpec", "containerSpec", "image")
        return [("service image", str(image))] if image else []
    return [(c.label, str(c.spec.get("image"))) for c in containers(resource_type, props)]


def _labels(props: Props) -> Mapping[str, str]:
    return _get(props, "metadata", "labels") or {}


def _namespace(props: Props) -> str:
    return str(_get(props, "metadata", "namespace") or "default")


# --- pod security (PSS restricted) -----------------------------------------------------------


def run_as_non_root(resource_type: str, props: Props) -> list[str]:
    out = []
    for c in containers(resource_type, props):
        user = c.security("runAsUser")
        if user == 0:
            out.append(f"{c.label} runs as uid 0")
        elif c.security("runAsNonRoot") is not True and not (isinstance(user, int) and user > 0):
            out.append(f"{c.label} must set runAsNonRoot: true (or a non-zero runAsUser)")
    return out


def no_privilege_escalation(resource_type: str, props: Props) -> list[str]:
    out = []
    for c in containers(resource_type, props):
        context = c.spec.get("securityContext") or {}
        if context.get("privileged") is True:
            out.append(f"{c.label} is privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            out.append(f"{c.label} must set allowPrivilegeEscalation: false")
    return out


def drop_all_capabilities(resource_type: str, props: Props) -> list[str]:
    out = []
    for c in containers(resource_type, props):
        capabilities = _get(c.spec, "securityContext", "capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            out.append(f"{c.label} must drop ALL capabilities")
        extra = set(capabilities.get("add") or []) - ALLOWED_ADDED_CAPABILITIES
        if extra:
            out.append(f"{c.label} adds capabilities {sorted(extra)} (only NET_BIND_SERVICE)")
    return out


def seccomp_runtime_default(resource_type: str, props: Props) -> list[str]:
    out = []
    for c in containers(resource_type, props):
        profile = c.security("seccompProfile") or {}
        if profile.get("type") not in SECCOMP_OK:
            out.append(
                f"{c.label} needs seccompProfile RuntimeDefault (pod or container), "
                f"got {profile.get('type')!r}"
            )
    return out


def read_only_root_filesystem(resource_type: str, props: Props) -> list[str]:
    return [
        f"{c.label} must set readOnlyRootFilesystem: true"
        for c in containers(resource_type, props)
        if _get(c.spec, "securityContext", "readOnlyRootFilesystem") is not True
    ]


def requests_and_limits(resource_type: str, props: Props) -> list[str]:
    out = []
    for c in containers(resource_type, props):
        resources = c.spec.get("resources") or {}
        for section in ("requests", "limits"):
            missing = [r for r in ("cpu", "memory") if not (resources.get(section) or {}).get(r)]
            if missing:
                out.append(f"{c.label} has no {section} for {', '.join(missing)}")
    return out


def liveness_and_readiness(resource_type: str, props: Props) -> list[str]:
    """Long-running workloads only: a Job's pod runs to completion and has nothing to probe."""
    if resource_type not in LONG_RUNNING_TYPES:
        return []
    out = []
    for c in containers(resource_type, props):
        if c.kind != "container":
            continue
        for probe in ("livenessProbe", "readinessProbe"):
            if not c.spec.get(probe):
                out.append(f"{c.label} has no {probe}")
    return out


# --- images ----------------------------------------------------------------------------------


def image_tag(image: str) -> str | None:
    """The tag of an image reference (None when it has no tag)."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def no_latest_tag(resource_type: str, props: Props) -> list[str]:
    out = []
    for owner, image in images(resource_type, props):
        tag = image_tag(image)
        if tag == "latest":
            out.append(f"{owner} uses the moving tag 'latest': {image}")
        elif tag is None and not DIGEST.search(image):
            out.append(f"{owner} has no tag (implies 'latest'): {image}")
    return out


def digest_pinned(resource_type: str, props: Props) -> list[str]:
    return [
        f"{owner} must be pinned by digest (name:tag@sha256:<64 hex>): {image}"
        for owner, image in images(resource_type, props)
        if not DIGEST.search(image)
    ]


def digests_required(pack_config: Mapping[str, Any], environment: str | None) -> bool:
    """Digest pinning applies when the pack config says so, else in a prod environment."""
    explicit = pack_config.get("requireDigests")
    if explicit is not None:
        return bool(explicit)
    return environment in PROD_ENVIRONMENTS


# --- services and config maps ----------------------------------------------------------------


def app_service_not_exposed(resource_type: str, props: Props) -> list[str]:
    if resource_type != SERVICE_TYPE or _labels(props).get(APP_NAME_LABEL) != APP_NAME:
        return []
    kind = _get(props, "spec", "type") or "ClusterIP"
    if kind in ("NodePort", "LoadBalancer"):
        return [f"app Service is {kind}: expose MoonTV only through the gateway/ingress"]
    return []


def no_secrets_in_config_map(resource_type: str, props: Props) -> list[str]:
    if resource_type != CONFIG_MAP_TYPE:
        return []
    out = []
    for section in ("data", "binaryData"):
        for key, value in (props.get(section) or {}).items():
            if SECRET_KEY.search(key):
                out.append(f"ConfigMap key {key!r} looks secret: put it in a Secret")
            elif isinstance(value, str) and URL_WITH_CREDENTIALS.search(value):
                out.append(f"ConfigMap key {key!r} holds a URL with credentials")
            elif isinstance(value, str) and re.search(r"^\s*requirepass\s+\S", value, re.M):
                out.append(f"ConfigMap key {key!r} sets a password (requirepass)")
    return out


# --- stack rules -----------------------------------------------------------------------------


def _workloads(resources: Iterable[Resource]) -> Iterator[Resource]:
    return (r for r in resources if r.type in POD_TEMPLATE_PATHS)


def network_policy_per_namespace(resources: Sequence[Resource]) -> list[Violation]:
    """Every namespace that runs a workload has at least one NetworkPolicy."""
    covered = {_namespace(r.props) for r in resources if r.type == NETWORK_POLICY_TYPE}
    out = []
    for workload in _workloads(resources):
        namespace = _namespace(workload.props)
        if namespace not in covered:
            out.append(
                Violation(
                    f"{workload.name}: namespace {namespace!r} has no NetworkPolicy",
                    workload.urn or None,
                )
            )
    return out


def _selects(selector: Props, labels: Mapping[str, str]) -> bool:
    match_labels = selector.get("matchLabels") or {}
    if not match_labels and not selector.get("matchExpressions"):
        return False
    if any(labels.get(k) != v for k, v in match_labels.items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = expression.get("values") or []
        present = key in labels
        ok = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }.get(operator, False)
        if not ok:
            return False
    return True


def _min_replicas(workload: Resource, resources: Sequence[Resource]) -> int:
    """Replicas a workload keeps at least: spec.replicas, raised by an HPA's minReplicas."""
    replicas = _get(workload.props, "spec", "replicas")
    count = replicas if isinstance(replicas, int) else 1
    name = _get(workload.props, "metadata", "name") or workload.name
    for hpa in resources:
        target = _get(hpa.props, "spec", "scaleTargetRef") or {}
        if (
            hpa.type == HPA_TYPE
            and target.get("name") == name
            and _namespace(hpa.props) == _namespace(workload.props)
        ):
            minimum = _get(hpa.props, "spec", "minReplicas")
            count = max(count, minimum if isinstance(minimum, int) else 1)
    return count


def pdb_for_replicated_workloads(resources: Sequence[Resource]) -> list[Violation]:
    """Deployments/StatefulSets that keep more than one replica are covered by a PDB."""
    pdbs = [r for r in resources if r.type == PDB_TYPE]
    out = []
    for workload in resources:
        if workload.type not in REPLICATED_TYPES:
            continue
        replicas = _min_replicas(workload, resources)
        if replicas <= 1:
            continue
        labels = _get(workload.props, "spec", "template", "metadata", "labels") or {}
        namespace = _namespace(workload.props)
        if not any(
            _namespace(pdb.props) == namespace
            and _selects(_get(pdb.props, "spec", "selector") or {}, labels)
            for pdb in pdbs
        ):
            out.append(
                Violation(
                    f"{workload.name}: {replicas} replicas but no PodDisruptionBudget selects them",
                    workload.urn or None,
                )
            )
    return out
