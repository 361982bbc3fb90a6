"""The Pulumi component ``moontv:swarm:MoonTVSwarm``: MoonTV as Docker Swarm services.

Renders :func:`components.swarm.spec.stack_services` with pulumi-docker: an attachable overlay
network, immutable secrets and configs named after their content, a named volume for the
storage data, one service per release track, the storage service and the Traefik edge.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import pulumi
import pulumi_docker as docker

from components import naming
from components.passwords import kept_password, owner_password
from components.swarm import spec as sw

MIB = sw.MIB


@dataclass(frozen=True, kw_only=True)
class MoonTVSwarmArgs:
    """The stack description plus what is not pure data: secrets, provider, built images.

    ``owner_password`` and ``storage_password`` / ``storage_url`` should be secret Outputs;
    they are only ever written into Swarm secrets.
    """

    spec: sw.SwarmSpec
    owner_password: pulumi.Input[str] | None  # None: generated (components/passwords.py)
    #: kvrocks / redis; None: generated (components/passwords.py)
    storage_password: pulumi.Input[str] | None = None
    storage_url: pulumi.Input[str] | None = None  # external
    provider: docker.Provider | None = None
    #: Image references by version to use instead of ``repository:version`` (e.g. a built digest).
    image_overrides: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        kind = self.spec.storage_kind
        if kind == "external" and self.storage_url is None:
            raise ValueError("storage URL: required when the storage kind is 'external'")


def _labels(values: dict[str, str], cls: Any) -> list[Any]:
    return [cls(label=k, value=v) for k, v in sorted(values.items())]


def _nano(cpus: float) -> int:
    return round(cpus * 1_000_000_000)


class MoonTVSwarm(pulumi.ComponentResource):
    """MoonTV on a Swarm: services per track, storage, secrets, configs and the Traefik edge."""

    network_name: pulumi.Output[str]
    images: dict[str, pulumi.Input[str]]
    service_names: dict[str, pulumi.Output[str]]
    config_names: dict[str, pulumi.Output[str]]
    secret_names: dict[str, pulumi.Output[str]]
    url: str
    preview_url: str | None

    def __init__(
        self, name: str, args: MoonTVSwarmArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("moontv:swarm:MoonTVSwarm", name, None, opts)
        self._args = args
        spec = args.spec
        child = pulumi.ResourceOptions(parent=self, provider=args.provider)
        stack = spec.stack
        # each track's image, resolved once: a built image replaces ``repository:version``
        self.images = {
            track: args.image_overrides.get(version, ref)
            for track, (version, ref) in sw.track_images(spec).items()
        }

        network = docker.Network(
            f"{name}-net",
            name=naming.resource_name(stack, sw.NETWORK),
            driver="overlay",
            attachable=True,
            labels=_labels(naming.labels(stack, "network"), docker.NetworkLabelArgs),
            opts=child,
        )
        volumes = {
            key: docker.Volume(
                f"{name}-{key}",
                name=naming.resource_name(stack, key),
                labels=_labels(naming.labels(stack, key), docker.VolumeLabelArgs),
                # the data outlives `pulumi destroy`; remove it with `docker volume rm` on purpose
                opts=pulumi.ResourceOptions.merge(
                    child, pulumi.ResourceOptions(retain_on_delete=key == sw.STORAGE_DATA)
                ),
            )
            for key in sw.volume_keys(spec)
        }
        # Configs and secrets are named after their content, so a new content is a new object,
        # created before the old one (still used by running services) is deleted. The provider
        # would otherwise replace an explicitly named object delete-first, which Swarm refuses
        # while a service uses it.
        replace_create_first = pulumi.ResourceOptions.merge(
            child, pulumi.ResourceOptions(delete_before_replace=False)
        )
        configs = {
            key: docker.ServiceConfig(
                f"{name}-{key}",
                name=sw.object_name(stack, key, content),
                data_raw=content,
                labels=_labels(naming.labels(stack, key), docker.ServiceConfigLabelArgs),
                opts=replace_create_first,
            )
            for key, content in sw.config_contents(spec).items()
        }
        secrets = self._secrets(name, replace_create_first)

        services: dict[str, docker.Service] = {}
        for svc in sw.stack_services(spec):
            depends = [services[k] for k in svc.depends_on if k in services]
            services[svc.key] = self._service(
                name, svc, network, volumes, configs, secrets,
                pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=depends)),
            )

        self.network_name = network.name
        self.service_names = {k: s.name for k, s in services.items()}
        self.config_names = {k: c.name for k, c in configs.items()}
        self.secret_names = {k: s.name for k, s in secrets.items()}
        self.url = f"http://{spec.host}:{spec.http_port}"
        self.preview_url = (
            f"http://preview.{spec.host}:{spec.http_port}" if spec.plan.preview else None
        )
        self.register_outputs(
            {
                "networkName": self.network_name,
                "serviceNames": self.service_names,
                "configNames": self.config_names,
                "secretNames": self.secret_names,
                "url": self.url,
                "previewUrl": self.preview_url,
                "images": self.images,
                "weights": {t.name: t.weight for t in spec.plan.tracks},
            }
        )

    def _storage_password(self) -> pulumi.Input[str] | None:
        """The storage server's password (none for external storage)."""
        if self._args.spec.storage_kind == "external":
            return None
        return kept_password("moontv-storage-password", 32, self._args.storage_password, self)

    def _secrets(self, name: str, child: pulumi.ResourceOptions) -> dict[str, docker.Secret]:
        args = self._args
        spec = args.spec
        contents = pulumi.Output.all(
            owner_password(args.owner_password, self), self._storage_password(), args.storage_url
        ).apply(lambda v: sw.secret_contents(spec, v[0], v[1], v[2]))
        keys = [sw.OWNER_PASSWORD, sw.STORAGE_URL]
        if spec.storage_kind != "external":
            keys.append(sw.STORAGE_CONFIG)
        secrets = {}
        for key in keys:
            value: pulumi.Output[str] = contents.apply(functools.partial(_pick, key))
            # the name carries a salted scrypt fingerprint of the value, so it can be public
            secret_name = pulumi.Output.unsecret(
                value.apply(functools.partial(sw.secret_name, spec.stack, key))
            )
            data: pulumi.Output[str] = value.apply(_base64)
            secrets[key] = docker.Secret(
                f"{name}-{key}",
                name=secret_name,
                data=pulumi.Output.secret(cast(Any, data)),  # typeshed cannot solve Input[U]
                labels=_labels(naming.labels(spec.stack, key), docker.SecretLabelArgs),
                opts=pulumi.ResourceOptions.merge(
                    child, pulumi.ResourceOptions(additional_secret_outputs=["data"])
                ),
            )
        return secrets

    def _service(
        self,
        name: str,
        svc: sw.ServiceSpec,
        network: docker.Network,
        volumes: dict[str, docker.Volume],
        configs: dict[str, docker.ServiceConfig],
        secrets: dict[str, docker.Secret],
        opts: pulumi.ResourceOptions,
    ) -> docker.Service:
        hc = svc.healthcheck
        container = docker.ServiceTaskSpecContainerSpecArgs(
            image=self.images.get(svc.key, svc.image),
            commands=list(svc.entrypoint) if svc.entrypoint else None,
            args=list(svc.args) if svc.args else None,
            healthcheck=docker.ServiceTaskSpecContainerSpecHealthcheckArgs(
                tests=list(hc.test), interval=hc.interval, timeout=hc.timeout,
                retries=hc.retries, start_period=hc.start_period,
            ),
            secrets=[
                docker.ServiceTaskSpecContainerSpecSecretArgs(
                    secret_id=secrets[ref.key].id, secret_name=secrets[ref.key].name,
                    file_name=ref.target, file_uid=ref.uid, file_gid=ref.gid,
                    file_mode=ref.mode,
                )
                for ref in svc.secrets
            ] or None,
            configs=[
                docker.ServiceTaskSpecContainerSpecConfigArgs(
                    config_id=configs[ref.key].id, config_name=configs[ref.key].name,
                    file_name=ref.target, file_uid=ref.uid, file_gid=ref.gid,
                    file_mode=ref.mode,
                )
                for ref in svc.configs
            ] or None,
            mounts=[_mount(m, volumes) for m in svc.mounts] or None,
            read_only=svc.read_only,
            labels=_labels(dict(svc.labels), docker.ServiceTaskSpecContainerSpecLabelArgs),
            stop_grace_period=svc.stop_grace_period,
        )
        resources = None
        if svc.resources is not None:
            r = svc.resources
            resources = docker.ServiceTaskSpecResourcesArgs(
                limits=docker.ServiceTaskSpecResourcesLimitsArgs(
                    nano_cpus=_nano(r.cpu_limit), memory_bytes=r.memory_limit_mib * MIB
                ),
                reservation=docker.ServiceTaskSpecResourcesReservationArgs(
                    nano_cpus=_nano(r.cpu_reservation),
                    memory_bytes=r.memory_reservation_mib * MIB,
                ),
            )
        rp = svc.restart
        return docker.Service(
            f"{name}-{svc.key}",
            name=naming.resource_name(self._args.spec.stack, svc.key),
            labels=_labels(dict(svc.labels), docker.ServiceLabelArgs),
            mode=docker.ServiceModeArgs(
                replicated=docker.ServiceModeReplicatedArgs(replicas=svc.replicas)
            ),
            task_spec=docker.ServiceTaskSpecArgs(
                container_spec=container,
                networks_advanceds=[
                    docker.ServiceTaskSpecNetworksAdvancedArgs(
                        id=network.id, aliases=[svc.alias]
                    )
                ],
                resources=resources,
                restart_policy=docker.ServiceTaskSpecRestartPolicyArgs(
                    condition=rp.condition, delay=rp.delay, max_attempts=rp.max_attempts,
                    window=rp.window,
                ),
                placement=docker.ServiceTaskSpecPlacementArgs(
                    constraints=list(svc.constraints) or None
                ),
            ),
            update_config=_update(docker.ServiceUpdateConfigArgs, svc.update),
            rollback_config=_update(docker.ServiceRollbackConfigArgs, svc.rollback),
            endpoint_spec=docker.ServiceEndpointSpecArgs(
                mode="dnsrr",
                ports=[
                    docker.ServiceEndpointSpecPortArgs(
                        target_port=target, published_port=published,
                        publish_mode="host", protocol="tcp",
                    )
                    for published, target in svc.published
                ] or None,
            ),
            converge_config=docker.ServiceConvergeConfigArgs(delay="5s", timeout="5m"),
            opts=opts,
        )


def _mount(m: sw.Mount, volumes: dict[str, docker.Volume]) -> Any:
    if m.kind == "tmpfs":
        return docker.ServiceTaskSpecContainerSpecMountArgs(type="tmpfs", target=m.target)
    return docker.ServiceTaskSpecContainerSpecMountArgs(
        type="volume",
        # no source: an anonymous volume per task, filled from the image
        source=volumes[m.volume].name if m.volume else None,
        target=m.target,
        read_only=m.read_only,
    )


def _pick(key: str, contents: dict[str, str]) -> str:
    return contents[key]


def _base64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def _update(cls: Any, policy: sw.UpdatePolicy) -> Any:
    return cls(
        order=policy.order, failure_action=policy.failure_action,
        parallelism=policy.parallelism, delay=policy.delay, monitor=policy.monitor,
        max_failure_ratio=policy.max_failure_ratio,
    )
