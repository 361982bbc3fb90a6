"""Build (and optionally push) the MoonTV image with ``pulumi_docker_build``.

What to build is the validated ``moontv:image`` object (``components/image_settings.py``); the
registry password is the secret config value ``moontv:registryPassword``, read by
``settings.py`` as a secret Output. Tags follow ``components/tags.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_docker_build as docker_build

from components.image_settings import ImageBuildSettings, RegistrySettings


@dataclass(frozen=True)
class MoonTVImageArgs:
    """``repository`` is ``moontv:image.repository``; ``environment`` the stack's environment.

    Both settings are validated by ``components/settings.py`` (repository shape, registry host,
    tag policy) before any resource is registered.
    """

    repository: str
    settings: ImageBuildSettings
    environment: str
    registry_password: pulumi.Input[str] | None = None

    def tags(self) -> tuple[str, ...]:
        """Tags of this build (policy of ``components.tags``)."""
        return self.settings.image_tags(self.environment)


class MoonTVImage(pulumi.ComponentResource):
    """The MoonTV image built from ``docker/Dockerfile``; ``ref`` is ``repository@sha256:…``."""

    tags: tuple[str, ...]
    digest: pulumi.Output[str]
    ref: pulumi.Output[str]

    def __init__(
        self, name: str, args: MoonTVImageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("moontv:image:MoonTVImage", name, None, opts)
        settings = args.settings
        self.tags = tuple(f"{args.repository}:{tag}" for tag in args.tags())
        build_args = {
            "VERSION": args.tags()[0],
            "REVISION": settings.source_sha or "",
            **settings.build_args,
        }
        image = docker_build.Image(
            name,
            docker_build.ImageArgs(
                push=settings.push,
                load=settings.load,
                builder=docker_build.BuilderConfigArgs(name=settings.builder)
                if settings.builder
                else None,
                exec_=settings.exec,
                tags=list(self.tags),
                context=docker_build.BuildContextArgs(location=settings.context),
                dockerfile=docker_build.DockerfileArgs(location=settings.dockerfile),
                target=settings.target,
                platforms=[docker_build.Platform(p) for p in settings.platforms],
                build_args=build_args,
                registries=_registries(settings.registry, args.registry_password),
                cache_from=_cache_from(settings),
                cache_to=_cache_to(settings),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.digest = image.digest
        repository, first_tag = args.repository, self.tags[0]
        # Without an export (neither push nor load) there is no digest: the first tag names it.
        self.ref = image.digest.apply(
            lambda digest: f"{repository}@{digest}" if digest else first_tag
        )
        self.register_outputs({"tags": list(self.tags), "digest": self.digest, "ref": self.ref})


def _registries(
    registry: RegistrySettings | None, password: pulumi.Input[str] | None
) -> list[docker_build.RegistryArgs] | None:
    if registry is None:
        return None
    secret = pulumi.Output.secret(password) if password is not None else None
    return [
        docker_build.RegistryArgs(
            address=registry.server, username=registry.username, password=secret
        )
    ]


def _cache_from(settings: ImageBuildSettings) -> list[docker_build.CacheFromArgs] | None:
    if settings.cache_from is None:
        return None
    return [
        docker_build.CacheFromArgs(
            registry=docker_build.CacheFromRegistryArgs(ref=settings.cache_from)
        )
    ]


def _cache_to(settings: ImageBuildSettings) -> list[docker_build.CacheToArgs] | None:
    exports: list[Any] = []
    if settings.cache_to is not None:
        exports.append(
            docker_build.CacheToArgs(
                registry=docker_build.CacheToRegistryArgs(
                    ref=settings.cache_to, mode=docker_build.CacheMode.MAX
                )
            )
        )
    if settings.inline_cache:
        exports.append(docker_build.CacheToArgs(inline=docker_build.CacheToInlineArgs()))  # type: ignore[no-untyped-call]
    return exports or None
