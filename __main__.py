"""MoonTV delivery platform: load settings, build the platform component, export outputs."""

from __future__ import annotations

import sys

import pulumi

from components import settings as settings_module
from components.errors import ConfigError


def main() -> None:
    from components.kubernetes import provider
    from components.kubernetes.app import MoonTVKubernetes, MoonTVKubernetesArgs

    s = settings_module.load()
    c = s.config
    plan = s.plan
    k8s_provider = provider("kubernetes", c.kubernetes)
    app = MoonTVKubernetes(
        "moontv",
        MoonTVKubernetesArgs(
            namespace=c.namespace, instance=s.stack, repository=c.image.repository,
            pull_policy=c.image.pull_policy, plan=plan, site=c.site,
            owner_username=c.owner.username, owner_password=s.owner_password,
            replicas=c.replicas, resources=c.resources, autoscaling=c.autoscaling,
            storage=c.storage, traffic=c.traffic, storage_url=s.storage_url,
        ),
        opts=pulumi.ResourceOptions(providers=[k8s_provider]),
    )
    pulumi.export("namespace", app.namespace)
    pulumi.export("url", f"https://{c.traffic.host}")
    pulumi.export("strategy", plan.strategy)
    pulumi.export("activeTrack", plan.primary)
    pulumi.export("previewTrack", plan.preview)
    pulumi.export("weights", {t.name: t.weight for t in plan.tracks})
    pulumi.export("versions", {t.name: t.version for t in plan.tracks})
    pulumi.export("ownerUsername", c.owner.username)


if __name__ == "__main__":
    try:
        main()
    except ConfigError as exc:
        # One readable list of every problem, no traceback.
        pulumi.log.error(str(exc))
        sys.exit(1)
