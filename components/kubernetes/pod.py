"""Pod and container defaults shared by every MoonTV workload (Pod Security "restricted")."""

from __future__ import annotations

from typing import Any


def pod_defaults(uid: int, pull_secret: str | None = None) -> dict[str, Any]:
    """Pod-level settings: non-root, seccomp RuntimeDefault, no service account token; the
    ``imagePullSecrets`` of a private repository (``moontv:image.pullSecret``) for pods that run
    the MoonTV image."""
    return {
        **({"imagePullSecrets": [{"name": pull_secret}]} if pull_secret else {}),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": uid,
            "fsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }


def container_security(non_root: bool = True) -> dict[str, Any]:
    """Container-level settings: read-only root, no privilege escalation, no capabilities
    (``non_root=False`` only for an agent that must read root-owned node files)."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": non_root,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


#: Ephemeral storage of a container besides its volumes: its logs (the kubelet keeps up to
#: 5 x 10 MiB) and a read-only root filesystem's nothing.
EPHEMERAL_REQUEST, EPHEMERAL_LIMIT = "16Mi", "128Mi"


def with_ephemeral(resources: dict[str, dict[str, str]], request: str = EPHEMERAL_REQUEST,
                   limit: str = EPHEMERAL_LIMIT) -> dict[str, dict[str, str]]:
    """``resources`` with ephemeral-storage requests and limits: a container that fills the
    node's disk is evicted, not the node's other pods."""
    return {"requests": {**resources["requests"], "ephemeral-storage": request},
            "limits": {**resources["limits"], "ephemeral-storage": limit}}


def empty_dir(name: str, size: str) -> dict[str, Any]:
    """An emptyDir volume the kubelet evicts the pod for when it grows past ``size``."""
    return {"name": name, "emptyDir": {"sizeLimit": size}}


#: Why some workloads do not meet a check of checkov (CKV_…) or kube-score; every one is also
#: listed in docs/manifest-checks.md. :func:`skip_checks` turns them into skip annotations.
SKIP_REASONS: dict[str, str] = {
    "CKV_K8S_40": "runs as the uid its image is built for (MoonTV 1001, Redis 999): its files "
                  "belong to that uid; a uid above 10000 is not a user of the image",
    "container-security-context-user-group-id":
        "runs as the uid/gid its image is built for (MoonTV 1001, Redis 999)",
    "CKV_K8S_35": "MoonTV reads its owner credentials and storage URL only from environment "
                  "variables; every other secret is mounted as a file",
    "CKV_K8S_43": "outside prod the stack deploys release tags; prod pins every image by digest",
    "CKV_K8S_15": "outside prod images are release tags pulled IfNotPresent, so nodes without "
                  "registry access run imported images; prod pins every image by digest",
    "container-image-pull-policy":
        "IfNotPresent: prod images are pinned by digest (immutable); Always would make every "
        "pod start depend on the registry",
    "pod-probes-identical":
        "Kvrocks and Redis are probed by TCP on their port (their images have no shell, and "
        "redis-cli answers an unauthenticated PING differently across versions); liveness "
        "starts later and is slower than readiness",
}


def skip_checks(*checks: str) -> dict[str, str]:
    """Annotations that skip ``checks`` on a workload in place, with the reasons of
    :data:`SKIP_REASONS`: ``checkov.io/skipN: ID=reason`` and ``kube-score/ignore: id,…``."""
    annotations = {}
    checkov = [c for c in checks if c.startswith("CKV")]
    for n, check in enumerate(checkov, 1):
        annotations[f"checkov.io/skip{n}"] = f"{check}={SKIP_REASONS[check]}"
    unknown = [c for c in checks if c not in SKIP_REASONS]
    if unknown:
        raise KeyError(f"no reason recorded for skipping {unknown}")
    kube_score = [c for c in checks if not c.startswith("CKV")]
    if kube_score:
        annotations["kube-score/ignore"] = ",".join(kube_score)
    return annotations


def unpinned(*images: object) -> bool:
    """True when one of ``images`` is a tag rather than a digest (built images, known only
    when deployed, are digests)."""
    return any(isinstance(i, str) and "@sha256:" not in i for i in images)


def image_checks(*images: object) -> tuple[str, ...]:
    """The image checks a workload running ``images`` skips: pull policy always (IfNotPresent
    everywhere), digest and pull policy (checkov) when an image is a tag."""
    return ("container-image-pull-policy",
            *(("CKV_K8S_43", "CKV_K8S_15") if unpinned(*images) else ()))
