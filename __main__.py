"""MoonTV delivery platform: load settings, build the image and the platform, export outputs."""

from __future__ import annotations

import gc
import sys
from datetime import UTC, datetime

import pulumi

from components import settings as settings_module
from components.errors import ConfigError
from components.settings import Settings


def image_overrides(s: Settings) -> dict[str, pulumi.Output[str]]:
    """With ``image.build`` set, the built ``repo@sha256:…`` runs the stable version."""
    c = s.config
    if c.image.build is None:
        return {}
    from components.image import MoonTVImage, MoonTVImageArgs

    image = MoonTVImage("moontv-image", MoonTVImageArgs(
        repository=c.image.repository, settings=c.image.build, environment=c.environment,
        registry_password=s.registry_password))
    pulumi.export("imageRef", image.ref)
    return {c.image.version: image.ref}


def kubernetes(s: Settings, overrides: dict[str, pulumi.Output[str]]) -> pulumi.Output[str]:
    from components.kubernetes import provider
    from components.kubernetes.app import MoonTVKubernetes, MoonTVKubernetesArgs
    from components.monitoring.kubernetes import Monitoring, MonitoringArgs

    c = s.config
    if not c.kubernetes.render_dir:  # a cluster: does it have what the stack needs?
        from components.kubernetes import preflight

        ready = preflight.check(c)
        for warning in ready.warnings:
            pulumi.log.warn(warning)
        if ready.problems:
            raise ConfigError(ready.problems)
    live = None
    if not c.kubernetes.render_dir:  # what runs now sizes the tracks at a release event
        from components.kubernetes import capacity

        live, problem = capacity.read(c.kubernetes, c.namespace, s.stack)
        if problem:
            pulumi.log.warn(problem)
    opts = pulumi.ResourceOptions(providers=[provider("kubernetes", c.kubernetes)])
    app = MoonTVKubernetes("moontv", MoonTVKubernetesArgs(settings=s, image_overrides=overrides,
                                                          live=live), opts=opts)
    if c.monitoring.enabled:
        monitoring = Monitoring("moontv-monitoring", MonitoringArgs(
            namespace=c.namespace, tracks=s.plan.tracks, settings=c.monitoring,
            instance=s.stack, receiver_secrets=s.receiver_secrets,
            storage_selector=app.storage.selector, backup_cronjob=app.storage.backup_cronjob,
            drill_cronjob=app.storage.drill_cronjob),
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[app])))
        pulumi.export("healthQueries", monitoring.health_queries)  # the rollout gate reads them
    return app.namespace


def swarm(s: Settings, overrides: dict[str, pulumi.Output[str]]) -> str:
    import pulumi_docker as docker

    from components.monitoring.swarm import SwarmMonitoring, SwarmMonitoringArgs
    from components.swarm import preflight
    from components.swarm.component import MoonTVSwarm, MoonTVSwarmArgs
    from components.swarm.options import spec_from_settings

    problem = preflight.check()
    if problem is not None:
        raise ConfigError([f"moontv:platform: swarm: {problem}"])
    c = s.config
    provider = docker.Provider("docker")
    spec = spec_from_settings(c, c.swarm)
    stack = MoonTVSwarm("moontv", MoonTVSwarmArgs(
        spec=spec, owner_password=s.owner_password, storage_url=s.storage_url,
        provider=provider, image_overrides=overrides),
        opts=pulumi.ResourceOptions(providers=[provider]))
    if c.monitoring.enabled:
        monitoring = SwarmMonitoring("moontv-monitoring", SwarmMonitoringArgs(
            tracks=s.plan.tracks, settings=c.monitoring, network=stack.network_name,
            receiver_secrets=s.receiver_secrets, provider=provider),
            opts=pulumi.ResourceOptions(providers=[provider]))
        pulumi.export("healthQueries", monitoring.health_queries)
    pulumi.export("previewUrl", stack.preview_url)
    return spec.stack


def lifecycle_warnings(c: settings_module.MoonTVSettings) -> None:
    """Warn (no error) about images of the stack past end of life or below a known fix."""
    from components import image_lifecycle

    for warning in image_lifecycle.warnings(c, datetime.now(UTC).date()):
        pulumi.log.warn(f"image lifecycle: {warning} (components/image_lifecycle.py)")


def main() -> None:
    s = settings_module.load()
    c = s.config
    lifecycle_warnings(c)
    plan = s.plan
    overrides = image_overrides(s)
    target = swarm(s, overrides) if c.platform == "swarm" else kubernetes(s, overrides)
    pulumi.export("namespace", target)
    pulumi.export("url", f"https://{c.traffic.host}")
    pulumi.export("strategy", plan.strategy)
    pulumi.export("activeTrack", plan.primary)
    pulumi.export("previewTrack", plan.preview)
    pulumi.export("weights", plan.weights)
    pulumi.export("versions", {t.name: t.version for t in plan.tracks})
    pulumi.export("ownerUsername", c.owner.username)


if __name__ == "__main__":
    # The SDK modules the program imports hold ~150k objects that live as long as the process:
    # no garbage collection can free them, yet each one walks them all, during the imports and
    # again at interpreter exit (about a second of a rendered stack's preview on 2 busy cores).
    # So: no collection while the program declares its resources, then freeze what exists.
    gc.disable()
    try:
        main()
    except ConfigError as exc:
        # One readable list of every problem, no traceback.
        pulumi.log.error(str(exc))
        sys.exit(1)
    finally:
        gc.freeze()
        gc.enable()
