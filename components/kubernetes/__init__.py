"""MoonTV on Kubernetes."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components.settings import KubernetesSettings


def provider(name: str, target: KubernetesSettings) -> k8s.Provider:
    """A provider for a kubeconfig context, or one that renders YAML to ``renderDir``.

    Rendered Secrets hold their values in plain text (base64): the render directory of a
    stack with real secrets must be treated as secret itself.
    """
    if target.render_dir:
        pulumi.log.warn(
            f"rendering manifests to {target.render_dir}: rendered Secrets contain plain-text "
            "values (base64); keep that directory out of version control"
        )
        return k8s.Provider(name, render_yaml_to_directory=target.render_dir)
    return k8s.Provider(name, context=target.context, kubeconfig=target.kubeconfig)
