"""One place for resource names and labels.

Every resource of the platform, on Kubernetes and on Swarm, takes its name and its labels from
here, so selectors, dashboards and policies can rely on them.
"""

from __future__ import annotations

APP = "moontv"
PART_OF = "moontv"
MANAGED_BY = "pulumi"
TRACK_LABEL = "moontv.io/track"
PRIMARY_SERVICE = "moontv"
PREVIEW_SERVICE = "moontv-preview"


def resource_name(*parts: str) -> str:
    """Join name parts with '-' (``resource_name("moontv", "canary") == "moontv-canary"``)."""
    return "-".join(p for p in parts if p)


def track_name(track: str) -> str:
    """Name of the workload (Deployment / Swarm service) that runs one release track."""
    return resource_name(APP, track)


def selector_labels(instance: str, component: str, track: str | None = None) -> dict[str, str]:
    """Labels that select pods; stable across versions, so a version bump never orphans pods."""
    labels = {
        "app.kubernetes.io/name": APP,
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/component": component,
    }
    if track is not None:
        labels[TRACK_LABEL] = track
    return labels


def labels(
    instance: str, component: str, version: str | None = None, track: str | None = None
) -> dict[str, str]:
    """Full recommended label set for a resource (selector labels plus descriptive ones)."""
    full = selector_labels(instance, component, track)
    full["app.kubernetes.io/part-of"] = PART_OF
    full["app.kubernetes.io/managed-by"] = MANAGED_BY
    if version is not None:
        full["app.kubernetes.io/version"] = label_value(version)
    return full


def namespace_labels(instance: str) -> dict[str, str]:
    """Labels of the app's namespace: ours plus Pod Security ``restricted`` enforced."""
    return {
        **labels(instance, "namespace"),
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }


def label_value(value: str) -> str:
    """Make a string a valid label value (≤63 chars of [A-Za-z0-9_.-], alnum at both ends).

    Versions such as ``v1.2.3@sha256:…`` keep their tag part: digests do not fit in a label.
    """
    tag = value.split("@", 1)[0]
    cleaned = "".join(c if (c.isalnum() or c in "-_.") else "-" for c in tag)[:63]
    return cleaned.strip("-_.") or "unknown"
