"""The ``moontv:image`` config object, ``image.build`` included (pure: no Pulumi import).

``components/settings.py`` validates these models with the rest of the stack; the component
that builds the image (``components/image.py``) only consumes them. ``image.build``::

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
      buildArgs: {BASE_IMAGE: "node:24.22.3-alpine@sha256:…"}
      tags: {gitRef: refs/tags/v1.2.3, gitSha: <commit>, pr: 12, latest: false}

Without ``builder`` the provider uses a builder it can drive, or creates a docker-container one
(which pulls ``moby/buildkit``). The Docker engine's built-in ``default`` builder needs
``exec: true`` and a ``docker-buildx`` CLI plugin (``make toolchain`` builds one).

The registry password is not part of that object: it is the secret config value
``moontv:registryPassword``. Tags follow ``components/tags.py``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from components import release as release_model
from components.errors import ConfigModel, config_error, int_range, matching
from components.tags import TagInputs, image_tags

DEFAULT_REPOSITORY = "ghcr.io/moontechlab/lunatv"
#: LunaTV releases whose tag ``check pre`` accepts for DEFAULT_REPOSITORY (besides ``latest``),
#: newest first: GitHub releases of MoonTechLab/LunaTV that were published and built. Refreshed
#: 2026-12-06 from what upstream published, not from its CHANGELOG: 100.1.4 (CHANGELOG,
#: 2026-08-18) has no GitHub release yet (the release mirror's newest is v100.1.3), so it is not
#: here; the v100.0.x and v2-v4 releases are dropped because no image tag for them could be
#: confirmed. Note that upstream's image workflow (docker-image.yml at 41c798f) tags a release
#: build as ``latest`` unless it is dispatched with a tag, so a tag listed here can still be
#: missing from the registry: ``check pre``'s images-exist asks the registry where it can.
#: How to refresh: docs/runbooks/daily-operations.md ("Upstream releases").
UPSTREAM_RELEASES = ("v100.1.3", "v100.1.2", "v100.1.1", "v100.1.0")
#: The version ``/api/server-config`` reports for a release tag, where it is not the tag without
#: its ``v``: the v100.1.1 image compiles in 100.1.0 (measured on the image built from the tag).
#: ``rollout check post`` expects these; ``--expect-version`` covers any other build.
REPORTED_VERSIONS = {"v100.1.1": "100.1.0"}
DEFAULT_PLATFORMS = ("linux/amd64", "linux/arm64")
#: The Linux platforms of ``pulumi_docker_build.Platform`` (a unit test keeps them in step).
SUPPORTED_PLATFORMS = (
    "linux/386", "linux/amd64", "linux/arm", "linux/arm64", "linux/mips64", "linux/mips64le",
    "linux/ppc64le", "linux/riscv64", "linux/s390x",
)
_GIT_PREFIXES = ("https://", "git@", "ssh://", "git://")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_HOST = r"[a-z0-9]+([.-][a-z0-9]+)*(:[0-9]+)?"
_COMPONENT = r"[a-z0-9]+([._-]+[a-z0-9]+)*"

Repository = Annotated[str, matching(
    rf"^({_HOST}/)?{_COMPONENT}(/{_COMPONENT})*$",
    "an image repository in lower case, [registry host[:port]/]path, without tag or digest "
    "(e.g. ghcr.io/moontechlab/lunatv)",
)]
CacheRef = Annotated[str, matching(
    rf"^{_HOST}(/[a-z0-9._-]+)+:[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}$",
    "an image reference with a tag (e.g. ghcr.io/org/moontv:buildcache)",
)]
RegistryServer = Annotated[str, matching(
    rf"^{_HOST}$", "a registry host name in lower case, optionally with :port (e.g. ghcr.io)"
)]
GitSha = Annotated[str, matching(r"^[0-9a-fA-F]{7,64}$", "a git commit: 7 to 64 hex digits")]


class RegistrySettings(ConfigModel):
    """Registry to log in to for pushing and for the registry cache."""

    server: RegistryServer
    username: str = Field(min_length=1)


class TagSettings(ConfigModel):
    """What the build is made from; see ``components.tags``."""

    git_ref: str | None = None
    git_sha: GitSha | None = None
    pr: Annotated[int, int_range(1)] | None = None
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

    def image_tags(self, environment: str) -> tuple[str, ...]:
        """Tags of this build for ``environment`` (policy of ``components.tags``); raises
        :class:`components.tags.TagPolicyError`."""
        sha = self.source_sha
        assert sha is not None  # guaranteed by validation
        return image_tags(TagInputs(
            sha=sha, ref=self.tags.git_ref, pr_number=self.tags.pr, environment=environment,
            latest=self.tags.latest,
        ))


class ImageSettings(ConfigModel):
    """The ``moontv:image`` object."""

    repository: Repository = DEFAULT_REPOSITORY
    tag: release_model.Tag
    digest: release_model.Digest | None = None
    pull_policy: Literal["IfNotPresent", "Always"] = "IfNotPresent"
    #: A private repository: the name of a ``kubernetes.io/dockerconfigjson`` Secret in the
    #: stack's namespace (e.g. a GHCR token: ``kubectl create secret docker-registry``); the
    #: app's ServiceAccount lists it in ``imagePullSecrets``. Kubernetes only.
    pull_secret: Annotated[str, matching(
        r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        "a Kubernetes Secret name (lower-case letters, digits, '-' and '.', at most 253)",
    )] | None = None
    #: Build the image from source (components/image.py); the built digest runs the stable track.
    build: ImageBuildSettings | None = None

    @model_validator(mode="after")
    def _registry_is_the_repository_host(self) -> ImageSettings:
        registry = self.build.registry if self.build else None
        host = self.repository.split("/", 1)[0]
        if registry is not None and registry.server != host:
            raise config_error(
                f"must be the registry of moontv:image.repository ({host})",
                "build", "registry", "server", got=registry.server,
            )
        return self

    @property
    def version(self) -> str:
        """The stable version string: ``tag`` or ``tag@sha256:…``."""
        return release_model.join_version(self.tag, self.digest)


def reported_version(tag: str) -> str:
    """What ``/api/server-config`` reports for an image built from release ``tag``."""
    return REPORTED_VERSIONS.get(tag, tag.removeprefix("v"))
