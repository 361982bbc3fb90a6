"""MoonTVImage and its settings (``moontv:image.build``), with Pulumi mocks."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pulumi
import pulumi_docker_build as docker_build
import pydantic
import pytest
import yaml

from components.errors import format_errors
from components.image import MoonTVImage, MoonTVImageArgs
from components.image_settings import SUPPORTED_PLATFORMS, UPSTREAM_RELEASES, ImageBuildSettings
from components.tags import TagPolicyError
from tests.program import ROOT, SECRET_SIG, RecordingMocks, Run

SHA = "3f2a9c4e5b6d7081920a1b2c3d4e5f60718293a4"
REPO = "ghcr.io/example/moontv"
GIT_CONTEXT = f"https://github.com/MoonTechLab/LunaTV.git#{SHA}"
PASSWORD = "registry-Secret-Token-77"
IMAGE_TYPE = "docker-build:index:Image"


class BuildMocks(RecordingMocks):
    """Recording mocks whose docker-build Image answers like the provider: a digest only when
    the build is exported (pushed or loaded)."""

    def __init__(self, run: Run) -> None:
        super().__init__(run)
        self.raw_inputs: dict[str, dict[str, Any]] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.raw_inputs[args.typ] = dict(args.inputs)
        resource_id, state = super().new_resource(args)
        if args.typ == IMAGE_TYPE and (state.get("push") or state.get("load")):
            content = repr(sorted(state.get("tags", []))) + repr(state.get("buildArgs"))
            state["digest"] = "sha256:" + hashlib.sha256(content.encode()).hexdigest()
            state["ref"] = f"{state['tags'][0]}@{state['digest']}"
        return resource_id, state


def settings(**overrides: Any) -> ImageBuildSettings:
    raw: dict[str, Any] = {"context": GIT_CONTEXT}
    raw.update(overrides)
    return ImageBuildSettings.model_validate(raw)


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(pydantic.ValidationError) as info:
        ImageBuildSettings.model_validate(raw)
    return format_errors(info.value, "moontv:image.build", model=ImageBuildSettings)


def build(args: MoonTVImageArgs) -> tuple[Run, BuildMocks, dict[str, Any]]:
    run = Run()
    mocks = BuildMocks(run)
    pulumi.runtime.set_mocks(mocks, project="moontv", stack="staging", preview=False)
    outputs: dict[str, Any] = {}

    @pulumi.runtime.test
    def go() -> pulumi.Output[Any]:
        image = MoonTVImage("moontv", args)

        def keep(values: list[Any]) -> None:
            outputs.update(digest=values[0], ref=values[1], tags=image.tags)

        return pulumi.Output.all(image.digest, image.ref).apply(keep)

    go()
    return run, mocks, outputs


# --- settings -------------------------------------------------------------------------------


def test_given_only_a_pinned_git_context_then_defaults_apply() -> None:
    s = settings()
    assert s.platforms == ("linux/amd64", "linux/arm64")
    assert s.dockerfile == "docker/Dockerfile" and s.target == "production"
    assert s.push is False and s.inline_cache is False
    assert s.source_sha == SHA


def test_settings_read_camel_case_keys() -> None:
    s = settings(
        cacheFrom="ghcr.io/example/moontv:buildcache",
        cacheTo="ghcr.io/example/moontv:buildcache",
        inlineCache=True,
        buildArgs={"BASE_IMAGE": "node:20-alpine"},
        tags={"gitRef": "refs/tags/v1.2.3", "gitSha": SHA, "pr": 3},
    )
    assert s.cache_to == "ghcr.io/example/moontv:buildcache"
    assert s.tags.git_ref == "refs/tags/v1.2.3" and s.tags.pr == 3


def test_given_the_provider_then_the_supported_platforms_are_its_linux_platforms() -> None:
    provider = tuple(p.value for p in docker_build.Platform if p.value.startswith("linux/"))
    assert SUPPORTED_PLATFORMS == provider


def test_settings_are_frozen() -> None:
    with pytest.raises(pydantic.ValidationError):
        settings().push = True


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"context": "https://github.com/MoonTechLab/LunaTV.git#main"},
            "moontv:image.build.context: a git URL must pin a full 40-hex commit",
        ),
        (
            {"context": "https://github.com/MoonTechLab/LunaTV.git"},
            "moontv:image.build.context: a git URL must pin a full 40-hex commit",
        ),
        (
            {"context": f"http://example.com/LunaTV.git#{SHA}"},
            "moontv:image.build.context: must use https://",
        ),
        (
            {"context": "../LunaTV"},
            "moontv:image.build.tags.gitSha: required when context is a local path",
        ),
        (
            {"context": GIT_CONTEXT, "platforms": ["linux/amd64", "linux/sparc"]},
            "moontv:image.build.platforms.1: must be one of linux/386, linux/amd64",
        ),
        (
            {"context": GIT_CONTEXT, "platforms": []},
            "moontv:image.build.platforms: must list at least one platform",
        ),
        (
            {"context": GIT_CONTEXT, "cacheTo": "ghcr.io/example/moontv"},
            "moontv:image.build.cacheTo: ",
        ),
        (
            {"context": GIT_CONTEXT, "cache_to": "ghcr.io/example/moontv:cache"},
            "moontv:image.build.cache_to: unknown key; accepted keys: context, dockerfile",
        ),
        (
            {"context": GIT_CONTEXT, "registry": {"server": "ghcr.io"}},
            "moontv:image.build.registry.username: is required",
        ),
        (
            {"context": GIT_CONTEXT, "tags": {"pr": 0}},
            "moontv:image.build.tags.pr: ",
        ),
    ],
)
def test_bad_settings_name_the_key(raw: dict[str, Any], expected: str) -> None:
    found = problems(raw)
    assert any(line.startswith(expected) for line in found), found


def test_given_a_local_context_with_a_commit_then_it_is_accepted() -> None:
    s = settings(context="../LunaTV", tags={"gitSha": SHA})
    assert s.is_git_context is False and s.source_sha == SHA


def test_given_prod_when_latest_is_asked_then_the_tag_policy_refuses() -> None:
    args = MoonTVImageArgs(REPO, settings(tags={"latest": True}), "prod")
    with pytest.raises(TagPolicyError, match=re.escape("latest: only allowed")):
        args.tags()


# --- component --------------------------------------------------------------------------------


def release_args() -> MoonTVImageArgs:
    return MoonTVImageArgs(
        repository=REPO,
        environment="staging",
        registry_password=PASSWORD,
        settings=settings(
            push=True,
            registry={"server": "ghcr.io", "username": "moontv-ci"},
            cacheFrom="ghcr.io/example/moontv:buildcache",
            cacheTo="ghcr.io/example/moontv:buildcache",
            buildArgs={"BASE_IMAGE": "node:20-alpine@sha256:" + "a" * 64},
            tags={"gitRef": "refs/tags/v1.4.2"},
        ),
    )


def test_given_a_release_tag_then_the_image_is_built_with_policy_tags_and_cache() -> None:
    run, _, _ = build(release_args())
    [component] = run.of_type("moontv:image:MoonTVImage")
    [image] = run.of_type(IMAGE_TYPE)
    assert component.name == "moontv"
    assert image.inputs["tags"] == [
        f"{REPO}:1.4.2",
        f"{REPO}:1.4",
        f"{REPO}:1",
        f"{REPO}:sha-3f2a9c4",
        f"{REPO}:staging",
    ]
    assert image.inputs["push"] is True
    assert image.inputs["platforms"] == ["linux/amd64", "linux/arm64"]
    assert image.inputs["context"] == {"location": GIT_CONTEXT}
    assert image.inputs["dockerfile"] == {"location": "docker/Dockerfile"}
    assert image.inputs["target"] == "production"
    assert image.inputs["cacheFrom"] == [{"registry": {"ref": f"{REPO}:buildcache"}}]
    [cache_to] = image.inputs["cacheTo"]
    assert cache_to["registry"]["ref"] == f"{REPO}:buildcache"
    assert cache_to["registry"]["mode"] == "max"
    assert image.inputs["buildArgs"] == {
        "VERSION": "1.4.2",
        "REVISION": SHA,
        "BASE_IMAGE": "node:20-alpine@sha256:" + "a" * 64,
    }


def test_then_ref_is_repository_at_digest() -> None:
    _, _, outputs = build(release_args())
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", outputs["digest"])
    assert outputs["ref"] == f"{REPO}@{outputs['digest']}"


def test_then_the_registry_password_is_sent_only_as_a_secret() -> None:
    run, mocks, _ = build(release_args())
    [image] = run.of_type(IMAGE_TYPE)
    assert image.inputs["registries"] == [
        {"address": "ghcr.io", "username": "moontv-ci", "password": PASSWORD}
    ]
    # The engine receives the registries (which hold the password) as a secret value.
    raw = mocks.raw_inputs[IMAGE_TYPE]["registries"]
    assert isinstance(raw, dict) and SECRET_SIG in raw
    assert PASSWORD not in repr(
        {k: v for k, v in mocks.raw_inputs[IMAGE_TYPE].items() if k != "registries"}
    )


def test_given_inline_cache_and_no_registry_then_only_inline_cache_is_exported() -> None:
    args = MoonTVImageArgs(
        REPO, settings(inlineCache=True, tags={"gitRef": "refs/heads/main"}), "dev"
    )
    run, _, outputs = build(args)
    [image] = run.of_type(IMAGE_TYPE)
    assert image.inputs["cacheTo"] == [{"inline": {}}]
    assert "registries" not in image.inputs and "cacheFrom" not in image.inputs
    assert outputs["tags"] == (f"{REPO}:main", f"{REPO}:sha-3f2a9c4", f"{REPO}:dev")


def test_given_load_builder_and_exec_then_the_provider_gets_them() -> None:
    args = MoonTVImageArgs(REPO, settings(load=True, builder="default", exec=True), "dev")
    run, _, outputs = build(args)
    [image] = run.of_type(IMAGE_TYPE)
    assert image.inputs["load"] is True and image.inputs["push"] is False
    assert image.inputs["builder"] == {"name": "default"}
    assert image.inputs["exec"] is True
    assert outputs["ref"] == f"{REPO}@{outputs['digest']}"


def test_given_no_export_then_there_is_no_digest_and_the_first_tag_names_the_image() -> None:
    run, _, outputs = build(MoonTVImageArgs(REPO, settings(tags={"gitSha": SHA}), "dev"))
    [image] = run.of_type(IMAGE_TYPE)
    assert "builder" not in image.inputs and image.inputs.get("exec") is False
    assert outputs["digest"] in ("", None)
    assert outputs["ref"] == f"{REPO}:sha-3f2a9c4"


# --- shipped versions are real releases -----------------------------------------------------

_CONFIG_SET = re.compile(
    r"moontv:(?:image\.tag|release\.canary\.version|release\.blueGreen\.(?:blue|green))"
    r"\s+(v?[0-9][^\s@]*)"
)


def shipped_versions() -> dict[str, set[str]]:
    """Every version a shipped stack file, the README or a doc page tells people to run."""
    found: dict[str, set[str]] = {}
    for path in sorted(ROOT.glob("Pulumi.*.yaml")):
        config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
        image = config.get("moontv:image") or {}
        release = config.get("moontv:release") or {}
        versions = [image.get("tag"), (release.get("canary") or {}).get("version"),
                    *((release.get("blueGreen") or {}).get(c) for c in ("blue", "green"))]
        for version in filter(None, versions):
            found.setdefault(str(version).split("@")[0], set()).add(path.name)
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for tag in _CONFIG_SET.findall(path.read_text()):
            found.setdefault(tag, set()).add(path.name)
    return found


def test_given_the_shipped_files_then_every_version_they_name_is_a_real_release() -> None:
    versions = shipped_versions()
    assert {"Pulumi.dev.yaml", "Pulumi.prod.yaml", "README.md"} <= set().union(*versions.values())
    unknown = {tag: sorted(files) for tag, files in versions.items()
               if tag not in UPSTREAM_RELEASES}
    assert unknown == {}


def test_given_the_release_list_then_it_holds_only_tags_the_upstream_workflow_pushes() -> None:
    assert len(set(UPSTREAM_RELEASES)) == len(UPSTREAM_RELEASES)
    assert all(re.fullmatch(r"v[0-9]+\.[0-9]+\.[0-9]+", tag) for tag in UPSTREAM_RELEASES)
    assert not any(tag.startswith("v5.") for tag in UPSTREAM_RELEASES)
