"""Pod and container defaults shared by every MoonTV workload (Pod Security "restricted")."""

from __future__ import annotations

from typing import Any


def pod_defaults(uid: int) -> dict[str, Any]:
    """Pod-level settings: non-root, seccomp RuntimeDefault, no service account token."""
    return {
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
