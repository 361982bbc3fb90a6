"""Build (and optionally push) the MoonTV image with ``pulumi_docker_build``.

``ImageBuildSettings`` is the ``moontv:image.build`` config object (camelCase keys)::

    moontv:image.build:
      context: https://github.com/MoonTechLab/LunaTV.git#<40-hex commit>   # or a local path
      dockerfile: docker/Dockerfile
      platforms: [linux/amd64, linux/arm64]
      push: true
      load: false                                  # also load it into the local Docker engine
      builder: default      # a buildx builder by name (`docker buildx ls`); see below
      exec: true            # build with the docker-buildx CLI plugin instead of the embedded client
      registry: {server: ghcr.io, username: moontv-ci}
      cacheFrom: ghcr.io/org/moontv:buildcache
      cacheTo: ghcr.io/org/moontv:buildcache      # exported with mode=max
      inlineCache: false
      buildArgs: {BASE_IMAGE: "node:20-alpine@sha256:…"}
      tags: {gitRef: refs/tags/v1.2.3, gitSha: <commit>, pr: 12, latest: false}

Without ``builder`` the provider uses a builder it can drive, or creates a docker-container one
(which pulls ``moby/buildkit``). The Docker engine's built-in ``default`` builder needs
``exec: true`` and a ``docker-buildx`` CLI plugin (``make toolchain`` builds one).

The registry password is not part of that object: it is the secret config value
``moontv:registryPassword``, read by ``settings.py`` as a secret Output and handed to
``MoonTVImageArgs.registry_password``. Tags follow ``components/tags.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

import pulumi
import pulumi_docker_build as docker_build
from pydantic import Field, field_validator, model_validator

from components.errors import ConfigModel, config_error
from components.tags import TagInputs, TagPolicyError, image_tags

DEFAULT_PLATFORMS = ("linux/amd64", "linux/arm64")
SUPPORTED_PLATFORMS = tuple(p.value for p in docker_build.Platform if p.value.startswith("linux/"))
_GIT_PREFIXES = ("https://", "git@", "ssh://", "git://")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
# registry host[:port]/path, lower case, no tag and no digest.
_REPOSITORY = re.compile(r"^[a-z0-9]+([.-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-]+[a-z0-9]+)*)+$")
_CACHE_REF = re.compile(
    r"^[a-z0-9]+([.-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9._-]+)+:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"
)

CacheRef = Annotated[str, Field(pattern=_CACHE_REF.pattern)]


class RegistrySettings(ConfigModel):
    """Registry to log in to for pushing and for the registry cache."""

    server: str = Field(pattern=r"^[a-z0-9]+([.-][a-z0-9]+)*(:[0-9]+)?$")
    username: str = Field(min_length=1)


class TagSettings(ConfigModel):
    """What the build is made from; see ``components.tags``."""

    git_ref: str | None = None
    git_sha: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{7,64}$")
    pr: int | None = Field(default=None, ge=1)
    latest: bool = False


class ImageBuildSettings(ConfigModel):
    """The ``moontv:image.build`` object."""

    context: str = Field(min_length=1)
    dockerfile: str = "docker/Dockerfile"
    target: str = "production"
    platforms: tuple[str, ...] = DEFAULT_PLATFORMS
    push: bool = False
    #: Also load the image into the local Docker engine (``docker`` export).
    load: bool = False
    builder: str | None = Field(default=None, min_length=1)
    exec: bool = False
    registry: RegistrySettings | None = None
    cache_from: CacheRef | None = None
    cache_to: CacheRef | None = None
    inline_cache: bool = False
    build_args: dict[str, str] = Field(default_factory=dict)
    tags: TagSettings = TagSettings()

    @field_validator("context")
    @classmethod
    def _pinned_context(cls, value: str) -> str:
        if value.startswith("http://"):
            raise config_error("must use https:// for a git URL", got=value)
        if value.startswith(_GIT_PREFIXES):
            ref = value.partition("#")[2].split(":", 1)[0]
            if not _COMMIT.match(ref):
                raise config_error(
                    "a git URL must pin a full 40-hex commit after '#' "
                    "(https://host/org/repo.git#<commit>[:subdir])",
                    got=value,
                )
        return value

    @field_validator("platforms")
    @classmethod
    def _known_platforms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise config_error("must list at least one platform", got=list(value))
        for index, platform in enumerate(value):
            if platform not in SUPPORTED_PLATFORMS:
                raise config_error(
                    f"must be one of {', '.join(SUPPORTED_PLATFORMS)}", index, got=platform
                )
        if len(set(value)) != len(value):
            raise config_error("must not repeat a platform", got=list(value))
        return value

    @model_validator(mode="after")
    def _source_known(self) -> ImageBuildSettings:
        if self.source_sha is None:
            raise config_error(
                "required when context is a local path (the commit the image is built from)",
                "tags",
                "gitSha",
            )
        return self

    @property
    def is_git_context(self) -> bool:
        return self.context.startswith(_GIT_PREFIXES)

    @property
    def source_sha(self) -> str | None:
        """The commit built: ``tags.gitSha``, else the commit pinned in a git context."""
        if self.tags.git_sha:
            return self.tags.git_sha
        if self.is_git_context:
            return self.context.partition("#")[2].split(":", 1)[0]
        return None


@dataclass(frozen=True)
class MoonTVImageArgs:
    """``repository`` is ``moontv:image.repository``; ``environment`` the stack's environment."""

    repository: str
    settings: ImageBuildSettings
    environment: str
    registry_password: pulumi.Input[str] | None = None

    def __post_init__(self) -> None:
        if not _REPOSITORY.match(self.repository):
            raise ValueError(
                "moontv:image.repository: must be <registry host>/<path> in lower case, "
                f"without tag or digest, got {self.repository!r}"
            )
        registry = self.settings.registry
        if registry is not None and self.repository.split("/", 1)[0] != registry.server:
            raise ValueError(
                f"moontv:image.build.registry.server: must be the registry of "
                f"moontv:image.repository ({self.repository.split('/', 1)[0]}), "
                f"got {registry.server!r}"
            )

    def tags(self) -> tuple[str, ...]:
        """Tags of this build (policy of ``components.tags``)."""
        sha = self.settings.source_sha
        assert sha is not None  # guaranteed by ImageBuildSettings validation
        try:
            return image_tags(
                TagInputs(
                    sha=sha,
                    ref=self.settings.tags.git_ref,
                    pr_number=self.settings.tags.pr,
                    environment=self.environment,
                    latest=self.settings.tags.latest,
                )
            )
        except TagPolicyError as err:
            raise ValueError(f"moontv:image.build.tags: {err}") from None


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
