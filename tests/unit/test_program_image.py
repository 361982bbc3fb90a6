"""With ``moontv:image.build`` set, the built image runs the stable track on both platforms."""

from __future__ import annotations

import pytest

from components.swarm import preflight
from tests.program import run_stack, stack_config

SHA = "3f2a9c4e5b6d7081920a1b2c3d4e5f60718293a4"
BUILD = {"context": ".", "platforms": ["linux/amd64"], "tags": {"gitSha": SHA}}


def with_build(stack: str) -> dict[str, object]:
    image = dict(stack_config(stack)["moontv:image"])
    return {"moontv:image": {**image, "build": BUILD}}


def app_images(run, stack: str) -> dict[str, str]:
    if stack == "swarm":
        return {
            r.inputs["name"]: r.inputs["taskSpec"]["containerSpec"]["image"]
            for r in run.of_type("docker:index/service:Service")
            if r.inputs["labels"]
            and any(label["label"] == "app.kubernetes.io/component" and label["value"] == "app"
                    for label in r.inputs["labels"])
        }
    return {
        r.name: c["image"]
        for r in run.kind("Deployment")
        if r.name.startswith("moontv-")
        for c in r.inputs["spec"]["template"]["spec"]["containers"]
        if c["name"] == "moontv"
    }


@pytest.mark.parametrize("stack", ["dev", "swarm"])
def test_given_image_build_then_the_stable_track_runs_the_built_image(
    monkeypatch: pytest.MonkeyPatch, stack: str
) -> None:
    monkeypatch.setattr(preflight, "check", lambda env=None: None)
    run = run_stack(stack, with_build(stack))
    [image] = run.of_type("docker-build:index:Image")
    # No push or load under these mocks: no digest, so the first policy tag names the image.
    built = image.inputs["tags"][0]
    assert built.endswith(":sha-3f2a9c4")
    assert run.outputs["imageRef"] == built
    images = app_images(run, stack)
    stable = [name for name in images if name.endswith("stable")]
    assert stable and all(images[name] == built for name in stable), images
    others = {name: ref for name, ref in images.items() if name not in stable}
    assert all(ref != built for ref in others.values()), others
