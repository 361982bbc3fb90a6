"""The delivery pipeline run from its own workflow files (tests/integration/workflow_runner.py):
each scenario pushes commits to a scratch bare ``origin`` and runs the workflows' jobs, their
``run:`` steps as written and their ``uses:`` steps through the harness's one table.

On the real node, a pull request's review stack is created (one URL comment, the app served
through the Gateway), updated and destroyed by review-stacks.yml. Drift of a ``kubectl scale``
on a kwok cluster is reported by drift.yml's staging job. The other scenarios need no cluster:
drift refusing an empty backend variable in words (each stack, with the reason in the run
summary); a push to main whose staging environment has no deployer kubeconfig: the image is
built once from the app twin, scanned before it is "pushed" (its content digest standing for
the registry's) and signed by digest; staging stops at the kubeconfig step, naming the secret,
before any pulumi or rollout step; the failure step takes no traffic anywhere (the candidate
has none); testing and prod never start. Review stacks refusing a ``file://`` backend on a
GitHub-hosted runner, and skipping a fork's pull request. With the stack rendering its
manifests (no cluster): staging's canary of the build staged, gated, deployed with the policy
pack and promoted by a healthy ``rollout auto`` before ``check post`` fails, the failure step
bringing the replaced stable version back and the decision committed to ``origin``; a faulty
canary rolled back by ``rollout auto``, the failure step changing nothing; a pull request's
previews of the four stacks with the policy pack.

The scenarios on the real node (staging canary -> testing blue-green -> prod pull request with
the version served through the Gateway at each stage, faulty candidates at testing and prod,
first releases, two pushes) are listed in docs/pipeline.md and are not in this module yet.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, skip_or_fail
from tests.integration.test_node_engine import node_images  # noqa: F401  (a fixture)
from tests.integration.workflow_runner import (
    USES,
    Event,
    JobResult,
    Runner,
    StepContext,
    commit_to,
    make_origin,
)

pytestmark = pytest.mark.integration
REPOSITORY = "acme/moontv"
IMAGE = "ghcr.io/acme/moontv"
PASSPHRASE = "pipeline-harness-passphrase"
#: The LunaTV commit each scenario "builds": a 40-hex stand-in mapped to an app twin version.
LUNATV_REF = "1" * 40
TIMES: dict[str, float] = {}


def kubeconfig(*contexts: str, server: str = "https://127.0.0.1:9") -> str:
    """A kubeconfig with these contexts (all on ``server``)."""
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": server}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": n, "context": {"cluster": "c", "user": "u"}} for n in contexts],
            "current-context": contexts[0],
        }
    )


def toolchain_bin() -> str:
    out = subprocess.run(
        ["bash", str(ROOT / "tools/toolchain.sh"), "--bin-dir"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return out


@dataclass
class Twin:
    """The app source and the build that stand in for LunaTV and its registry."""

    app_source: Path
    built: list[str]
    docker_tags: list[str]

    def build_image(self, ctx: StepContext) -> dict[str, str]:
        """The twin at 100.1.2 built by tests/integration/images.py (cached), tagged with the
        workflow's tags; ``push``: its content digest stands for the registry's."""
        from tests.integration import images

        tarball = images.build_app(images.APP_V2, "100.1.2")
        tags = [t for t in str(ctx.with_.get("tags", "")).split() if t]
        for tag in tags:
            subprocess.run(
                [images.DOCKER, "tag", images.APP_V2, tag], check=True, capture_output=True
            )
            self.docker_tags.append(tag)
        image_id = subprocess.run(
            [images.DOCKER, "image", "inspect", "-f", "{{.Id}}", images.APP_V2],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        self.built.append(f"push={ctx.with_.get('push')} {tarball.name}")
        outputs = {"imageid": image_id}
        if ctx.with_.get("push") is True:
            outputs["digest"] = image_id
        return outputs


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pipeline")


@pytest.fixture(scope="module")
def origin(scratch: Path) -> tuple[Path, str]:
    return make_origin(ROOT, scratch)


def runner(scratch: Path, origin: Path, name: str, **kwargs: Any) -> Runner:
    work = scratch / name
    work.mkdir()
    bin_dir = toolchain_bin()
    return Runner(origin, work, repository=REPOSITORY, path=(bin_dir,) if bin_dir else (), **kwargs)


def steps(job: JobResult) -> list[tuple[str, str]]:
    return [(s.name, s.outcome) for s in job.steps]


def test_given_an_empty_backend_variable_when_drift_runs_then_each_stack_refuses_it_in_words(
    scratch: Path, origin: tuple[Path, str]
) -> None:
    started = time.monotonic()
    bare, sha = origin
    secrets = {"PULUMI_CONFIG_PASSPHRASE": PASSPHRASE}
    environments = {
        "staging": {"KUBECONFIG_STAGING": kubeconfig("staging")},
        "testing": {"KUBECONFIG_TESTING": kubeconfig("testing")},
        "production-drift": {"KUBECONFIG_PROD": kubeconfig("prod")},
    }
    run = runner(
        scratch,
        bare,
        "drift",
        secrets=secrets,
        environment_secrets=environments,
        variables={"PULUMI_BACKEND_URL": ""},
    )
    jobs = run.run("drift.yml", Event("schedule", sha, "refs/heads/main"))
    for stack, environment in (
        ("staging", "staging"),
        ("testing", "testing"),
        ("prod", "production-drift"),
    ):
        job = jobs[f"drift ({stack}, {environment})"]
        assert job.result == "failure", job.log()
        assert job.environment == environment and job.concurrency == f"drift-{stack}"
        kube = job.step("Kubeconfig of the cluster (the environment's deployer kubeconfig)")
        assert kube.outcome == "success", kube.log
        check = job.step("pulumi preview --refresh")
        assert check.outcome == "failure"
        words = "PULUMI_BACKEND_URL is set but empty (an unset repository variable?)"
        assert words in check.log, check.log
        assert job.summary.startswith(f"### {stack}\n") and words in job.summary
        assert job.step("Summary of a run that did not get to the check").outcome == "skipped"
    TIMES["drift, empty backend variable"] = time.monotonic() - started
    print(f"\n[pipeline] drift refusal: {TIMES['drift, empty backend variable']:.1f}s")


def test_given_no_deployer_kubeconfig_when_main_is_pushed_then_staging_stops_before_any_deploy(
    scratch: Path, origin: tuple[Path, str]
) -> None:
    if (
        not Path("/usr/bin/docker").exists()
        or subprocess.run(["/usr/bin/docker", "info"], capture_output=True, check=False).returncode
        != 0
    ):
        skip_or_fail("no Docker engine for the image build (tools/cluster.sh swarm-up)")
    bin_dir = toolchain_bin()
    if not bin_dir or not (Path(bin_dir) / "pulumi").exists():
        skip_or_fail("the toolchain's pulumi is not built (make toolchain)")
    started = time.monotonic()
    bare, sha = origin
    state = scratch / "state"
    state.mkdir()
    backend = f"file://{state}"
    env = {
        **os.environ,
        "PULUMI_BACKEND_URL": backend,
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
    }
    project = scratch / "operator"
    project.mkdir()
    (project / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    for stack in ("staging", "testing", "prod"):  # the operator's one-time `pulumi stack init`
        subprocess.run(
            ["pulumi", "stack", "init", stack, "--non-interactive"],
            cwd=project,
            env={**env, "PULUMI_HOME": str(scratch / "pulumi-home")},
            check=True,
            capture_output=True,
        )
    twin = Twin(ROOT / "tests/fixtures/app-twin", [], [])
    run = runner(
        scratch,
        bare,
        "push",
        secrets={"PULUMI_CONFIG_PASSPHRASE": PASSPHRASE, "GITHUB_TOKEN": "token"},
        environment_secrets={"staging": {}},
        variables={"PULUMI_BACKEND_URL": backend, "LUNATV_REF": LUNATV_REF},
        services=twin,
        extra_env={"PULUMI_HOME": str(scratch / "pulumi-home")},
    )
    try:
        jobs = run.run("deployment.yml", Event("push", sha, "refs/heads/main"))
    finally:
        for tag in twin.docker_tags:
            subprocess.run(["/usr/bin/docker", "rmi", tag], capture_output=True, check=False)
    assert jobs["preview"].result == "skipped"
    image = jobs["image"]
    assert image.result == "success", image.log()
    digest = image.outputs["digest"]
    assert image.outputs["image"] == IMAGE and image.outputs["version"] == "main"
    assert digest.startswith("sha256:")
    # Built once for the scan (loaded, not pushed), the scan, then the push; signed by digest.
    names = [s.name for s in image.steps if s.outcome != "skipped"]
    scan = names.index("Scan with Trivy (before anything is pushed)")
    assert names.index("Build linux/amd64 and load it for the scan") < scan
    assert scan < names.index("Build and push (multi-arch, attestations)")
    assert [b.split()[0] for b in twin.built] == ["push=False", "push=True"]
    signed = (run.work / "cosign.log").read_text().split()
    assert signed == ["sign", "--yes", f"{IMAGE}@{digest}"]
    staging = jobs["staging"]
    assert staging.result == "failure"
    kube = staging.step("Kubeconfig of the staging cluster (the environment's deployer kubeconfig)")
    assert kube.outcome == "failure"
    assert "the secret KUBECONFIG_STAGING is empty or not set for this environment" in kube.log
    for name, outcome in steps(staging):
        if any(word in name for word in ("Stage", "gate", "pulumi up", "Canary")):
            assert outcome == "skipped", (name, outcome)
    rollback = staging.step("Roll back on failure")
    assert rollback.outcome == "success", rollback.log
    assert f"main@{digest} takes no default traffic" in rollback.log
    assert "nothing to roll back" in rollback.log
    record = staging.step("Record the release decision in git")
    assert record.outcome == "success" and "no release decision to record" in record.log
    assert jobs["testing"].result == "skipped" and jobs["prod"].result == "skipped"
    assert run.api_calls == []
    TIMES["push, no deployer kubeconfig"] = time.monotonic() - started
    print(
        f"\n[pipeline] push without a deployer kubeconfig: "
        f"{TIMES['push, no deployer kubeconfig']:.1f}s"
    )
    print("[pipeline] uses: table " + json.dumps({k: v.what for k, v in USES.items()}, indent=1))


def pull_request(number: int, action: str, sha: str, head: str = REPOSITORY) -> Event:
    payload = {
        "action": action,
        "number": number,
        "pull_request": {
            "number": number,
            "head": {"repo": {"full_name": head}, "sha": sha},
            "base": {"sha": sha},
        },
    }
    return Event("pull_request", sha, f"refs/pull/{number}/merge", payload)


def test_given_a_file_backend_on_a_hosted_runner_when_a_pr_opens_then_no_review_stack_is_made(
    scratch: Path, origin: tuple[Path, str]
) -> None:
    started = time.monotonic()
    bare, sha = origin
    run = runner(
        scratch,
        bare,
        "review",
        secrets={"PULUMI_CONFIG_PASSPHRASE": PASSPHRASE},
        environment_secrets={"review": {"PREVIEW_KUBECONFIG": kubeconfig("preview")}},
        variables={
            "REVIEW_STACKS": "self-managed",
            "PULUMI_BACKEND_URL": f"file://{scratch}/review-state",
        },
        extra_env={"RUNNER_ENVIRONMENT": "github-hosted"},
    )
    jobs = run.run("review-stacks.yml", pull_request(7, "opened", sha))
    up = jobs["up"]
    assert jobs["destroy"].result == "skipped"
    assert up.result == "failure" and up.environment == "review"
    kube = up.step("Kubeconfig of the preview cluster (the environment's deployer kubeconfig)")
    assert kube.outcome == "success", kube.log
    made = up.step("Create or update pr-7")
    assert made.outcome == "failure"
    assert "on a GitHub-hosted runner: that directory is deleted with the runner" in made.log
    assert up.step("Comment the URL on the pull request").outcome == "skipped"
    assert run.api_calls == []
    # A pull request from a fork gets no review stack at all.
    fork = run.run("review-stacks.yml", pull_request(8, "opened", sha, head="someone/moontv"))
    assert fork["up"].result == "skipped" and fork["destroy"].result == "skipped"
    TIMES["review stack, file backend on a hosted runner"] = time.monotonic() - started
    print(
        f"\n[pipeline] review stack refusal: "
        f"{TIMES['review stack, file backend on a hosted runner']:.1f}s"
    )


def _operator_setup(
    scratch: Path, origin: Path, name: str, stacks: tuple[str, ...], backend: str, edit: Any
) -> str:
    """The operator's one-time set-up, pushed to ``main``: ``pulumi stack init`` of each stack
    (its salt committed with the stack file) and ``edit(checkout)``; returns the commit."""
    bin_dir = toolchain_bin()
    env = {
        **os.environ,
        "PULUMI_BACKEND_URL": backend,
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_HOME": str(scratch / f"{name}-pulumi-home"),
    }

    def setup(clone: Path) -> None:
        edit(clone)
        for stack in stacks:
            subprocess.run(
                ["pulumi", "stack", "init", stack, "--non-interactive"],
                cwd=clone,
                env=env,
                check=True,
                capture_output=True,
            )

    return commit_to(origin, scratch, "Operator set-up: stacks and stack files", setup)


def _render_mode(*stacks: str) -> Any:
    def edit(clone: Path) -> None:
        for stack in stacks:
            path = clone / f"Pulumi.{stack}.yaml"
            data = yaml.safe_load(path.read_text())
            data["config"]["moontv:kubernetes"] = {"renderDir": f"rendered/{stack}"}
            path.write_text(yaml.safe_dump(data, sort_keys=False))

    return edit


def _origin_file(origin: Path, path: str) -> dict[str, Any]:
    text = subprocess.run(
        ["git", "--git-dir", str(origin), "show", f"main:{path}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return yaml.safe_load(text)


@dataclass
class RenderRun:
    runner: Runner
    jobs: dict[str, JobResult]
    previous: str  # the stable tag before the push
    candidate: str  # the build, tag@digest


def rendered(job: JobResult, stack: str) -> dict[str, Any]:
    """What the job's last `up` rendered: each app track's image and the public route's
    weight per backend."""
    assert job.workspace is not None
    folder = job.workspace / "rendered" / stack / "1-manifest"
    images = {}
    for path in folder.glob("apps_v1-deployment-*.yaml"):
        data = yaml.safe_load(path.read_text())
        track = data["metadata"].get("labels", {}).get("moontv.io/track")
        if track:
            images[track] = data["spec"]["template"]["spec"]["containers"][0]["image"]
    route = yaml.safe_load(
        next(folder.glob("gateway.networking.k8s.io_v1-httproute-*-moontv.yaml")).read_text()
    )
    weights: dict[str, int] = {}
    for rule in route["spec"]["rules"]:
        refs = rule.get("backendRefs") or []
        if len(refs) > 1 or not rule.get("matches", [{}])[0].get("headers"):
            for ref in refs:
                weights[ref["name"]] = ref.get("weight", 1)
    return {"images": images, "weights": weights}


def _render_release(scratch: Path, bare: Path, name: str, success: list[float]) -> RenderRun:
    """Push to main with staging rendering its manifests (no cluster), a Prometheus stand-in
    answering the canary's success ratio from ``success`` and no public route."""
    from tests.helpers import FakePrometheus

    if not Path("/usr/bin/docker").exists():
        skip_or_fail("no Docker engine for the image build (tools/cluster.sh swarm-up)")
    bin_dir = toolchain_bin()
    if not bin_dir or not (Path(bin_dir) / "pulumi-resource-kubernetes").exists():
        skip_or_fail("the toolchain's kubernetes plugin is not built (make toolchain)")
    state = scratch / f"{name}-state"
    state.mkdir()
    backend = f"file://{state}"
    sha = _operator_setup(scratch, bare, name, ("staging",), backend, _render_mode("staging"))
    previous = _origin_file(bare, "Pulumi.staging.yaml")["config"]["moontv:image"]["tag"]
    prometheus = FakePrometheus()
    prometheus.success = list(success)
    twin = Twin(ROOT / "tests/fixtures/app-twin", [], [])
    run = runner(
        scratch,
        bare,
        name,
        secrets={"PULUMI_CONFIG_PASSPHRASE": PASSPHRASE, "GITHUB_TOKEN": "token"},
        environment_secrets={"staging": {"KUBECONFIG_STAGING": kubeconfig("staging")}},
        variables={
            "PULUMI_BACKEND_URL": backend,
            "LUNATV_REF": LUNATV_REF,
            "STAGING_PROMETHEUS_URL": prometheus.url,
            "ROLLOUT_INTERVAL": "0s",
            "CANARY_STEPS": "50,100",
            "STAGING_SITE_URL": "http://127.0.0.1:9",
        },
        services=twin,
        extra_env={
            "PULUMI_HOME": str(scratch / f"{name}-pulumi-home"),
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        },
    )
    try:
        jobs = run.run("deployment.yml", Event("push", sha, "refs/heads/main"))
    finally:
        prometheus.stop()
        for tag in twin.docker_tags:
            subprocess.run(["/usr/bin/docker", "rmi", tag], capture_output=True, check=False)
    return RenderRun(run, jobs, previous, f"main@{jobs['image'].outputs['digest']}")


def test_given_post_failing_after_promotion_on_staging_then_the_previous_stable_comes_back(
    scratch: Path, origin: tuple[Path, str]
) -> None:
    """Render mode (no cluster): staging's canary of the build is deployed with the policy pack,
    promoted by a healthy `rollout auto`, then `check post` fails (render mode has no public
    route to smoke): the failure step returns the image to the version the promotion replaced
    and the decision is committed to origin's main; testing and prod never start."""
    started = time.monotonic()
    bare, _ = origin
    done = _render_release(scratch, bare, "promoted", [1.0])
    jobs, previous, candidate = done.jobs, done.previous, done.candidate
    staging = jobs["staging"]
    outcome = dict(steps(staging))
    assert outcome["Deploy gate (rollout check pre)"] == "success", staging.log()
    assert outcome["pulumi up (with the policy pack)"] == "success", staging.log()
    up = staging.step("pulumi up (with the policy pack)")
    assert up.note == "pulumi up staging with policy", up.note
    auto = staging.step("Canary progression")
    assert auto.outcome == "success" and "done: promoted" in auto.log, auto.log
    post = staging.step("Deploy gate (rollout check post)")
    print(f"\n[pipeline] check post after promotion:\n{post.log}")
    assert post.outcome == "failure" and "FAIL  smoke" in post.log
    rollback = staging.step("Roll back on failure")
    assert rollback.outcome == "success", rollback.log
    assert f"image version back to {previous}" in rollback.log
    record = staging.step("Record the release decision in git")
    assert record.outcome == "success", record.log
    recorded = _origin_file(bare, "Pulumi.staging.yaml")["config"]
    assert recorded["moontv:image"]["repository"] == IMAGE
    assert recorded["moontv:image"]["tag"] == previous
    assert recorded["moontv:release"]["canary"] == {"version": candidate, "weight": 0}
    assert recorded["moontv:release"]["lastDecision"]["action"] == "rollback"
    assert rendered(staging, "staging") == {
        "images": {"stable": f"{IMAGE}:{previous}", "canary": f"{IMAGE}:{candidate}"},
        "weights": {"moontv-stable": 100, "moontv-canary": 0},
    }
    assert jobs["testing"].result == "skipped" and jobs["prod"].result == "skipped"
    TIMES["staging: post fails after promotion"] = time.monotonic() - started
    print(
        f"\n[pipeline] staging, post failing after promotion: stable {IMAGE}:{previous} "
        f"rendered again, {candidate} at 0%: {TIMES['staging: post fails after promotion']:.1f}s"
    )


def test_given_a_faulty_canary_on_staging_then_auto_rolls_back_and_the_failure_step_adds_nothing(
    scratch: Path, origin: tuple[Path, str]
) -> None:
    """Render mode: the canary's success ratio is 0.2: `rollout auto` sets weight 0 before its
    first step and exits 1; the failure step finds no traffic on the candidate and changes
    nothing; the rollback is committed with auto's reason; testing and prod never start."""
    started = time.monotonic()
    bare, _ = origin
    done = _render_release(scratch, bare, "faulty", [0.2])
    staging = done.jobs["staging"]
    auto = staging.step("Canary progression")
    assert auto.outcome == "failure", staging.log()
    assert "rolling back: step 1/2 at 0%" in auto.log, auto.log
    rollback = staging.step("Roll back on failure")
    assert rollback.outcome == "success", rollback.log
    assert "nothing to roll back" in rollback.log
    recorded = _origin_file(bare, "Pulumi.staging.yaml")["config"]
    assert recorded["moontv:image"]["tag"] == done.previous
    assert recorded["moontv:release"]["canary"]["version"] == done.candidate
    assert recorded["moontv:release"]["canary"]["weight"] == 0
    decision = recorded["moontv:release"]["lastDecision"]
    assert decision["action"] == "rollback" and "success rate too low" in decision["reason"]
    assert rendered(staging, "staging") == {
        "images": {"stable": f"{IMAGE}:{done.previous}", "canary": f"{IMAGE}:{done.candidate}"},
        "weights": {"moontv-stable": 100, "moontv-canary": 0},
    }
    assert done.jobs["testing"].result == "skipped" and done.jobs["prod"].result == "skipped"
    TIMES["staging: faulty canary"] = time.monotonic() - started
    print(
        f"\n[pipeline] staging, faulty canary: stable {IMAGE}:{done.previous} kept, "
        f"{done.candidate} at 0%: {TIMES['staging: faulty canary']:.1f}s"
    )


def test_given_a_pull_request_then_each_stack_is_previewed_with_the_pack_and_forks_get_none(
    scratch: Path, origin: tuple[Path, str]
) -> None:
    """Render mode: a same-repository pull request previews dev, staging, testing and prod with
    the policy pack and comments each; dev previews under its empty passphrase (the salt in
    Pulumi.dev.yaml) although the repository's passphrase is set; the others read the
    read-only preview kubeconfig first. A fork's pull request gets no preview job."""
    bin_dir = toolchain_bin()
    if not bin_dir or not (Path(bin_dir) / "pulumi-resource-kubernetes").exists():
        skip_or_fail("the toolchain's kubernetes plugin is not built (make toolchain)")
    started = time.monotonic()
    bare, _ = origin
    state = scratch / "preview-state"
    state.mkdir()
    backend = f"file://{state}"
    stacks = ("staging", "testing", "prod")
    sha = _operator_setup(scratch, bare, "preview", stacks, backend, _render_mode(*stacks))
    env = {
        **os.environ,
        "PULUMI_BACKEND_URL": backend,
        "PULUMI_CONFIG_PASSPHRASE": "",
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "PULUMI_HOME": str(scratch / "preview-pulumi-home"),
    }
    dev = scratch / "preview-dev"
    subprocess.run(["git", "clone", "--quiet", str(bare), str(dev)], check=True)
    subprocess.run(
        ["pulumi", "stack", "init", "dev", "--non-interactive"],
        cwd=dev,
        env=env,
        check=True,
        capture_output=True,
    )  # dev: the empty passphrase of its salt
    run = runner(
        scratch,
        bare,
        "preview",
        secrets={
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "GITHUB_TOKEN": "token",
            "KUBECONFIG_PR_PREVIEW": kubeconfig(*stacks),
        },
        variables={"PULUMI_BACKEND_URL": backend},
        extra_env={
            "PULUMI_HOME": str(scratch / "preview-pulumi-home"),
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        },
    )
    jobs = run.run("deployment.yml", pull_request(9, "opened", sha))
    for stack in ("dev", *stacks):
        job = jobs[f"preview ({stack})"]
        assert job.result == "success", job.log()
        kube = job.step("Kubeconfig of the clusters (read-only, for previews)")
        assert kube.outcome == ("skipped" if stack == "dev" else "success")
        preview = job.step("pulumi preview (with the policy pack)")
        assert preview.note == f"pulumi preview {stack} with policy"
        assert "Policies:\n    ✅ moontv-policies" in preview.log, preview.log[-3000:]
    assert sorted(c[2:3] + c[-1:] for c in run.api_calls) == sorted(
        [["9", f"pulumi preview {s}"] for s in ("dev", *stacks)]
    )
    assert jobs["image"].result == "skipped" and jobs["staging"].result == "skipped"
    fork = run.run("deployment.yml", pull_request(10, "opened", sha, head="someone/moontv"))
    assert fork["preview"].result == "skipped"
    TIMES["pull request previews"] = time.monotonic() - started
    print(f"\n[pipeline] pull request previews: {TIMES['pull request previews']:.1f}s")


def test_given_a_deployment_scaled_by_hand_when_drift_runs_then_the_staging_report_names_it(
    scratch: Path, origin: tuple[Path, str], kwok: Any
) -> None:
    """drift.yml on a kwok cluster (a real API server, no pods): staging deployed by the
    operator, `kubectl scale` behind the program's back, then the daily run: staging's job reads
    its kubeconfig from KUBECONFIG_STAGING (context `staging`), fails on drift and its summary
    names the Deployment and the field kubectl took over."""
    bin_dir = toolchain_bin()
    if not bin_dir or not (Path(bin_dir) / "pulumi-resource-kubernetes").exists():
        skip_or_fail("the toolchain's kubernetes plugin is not built (make toolchain)")
    started = time.monotonic()
    bare, _ = origin
    namespace = "moontv-pipeline-drift"
    # The secret: the cluster's kubeconfig with its context named as the stack names it.
    secret = yaml.safe_load(Path(kwok.kubeconfig).read_text())
    for context in secret["contexts"]:
        if context["name"] == kwok.context:
            context["name"] = "staging"
    secret["current-context"] = "staging"
    secret_file = scratch / "kwok-kubeconfig"
    secret_file.write_text(yaml.safe_dump(secret))
    state = scratch / "kwok-state"
    state.mkdir()
    backend = f"file://{state}"

    def kwok_staging(clone: Path) -> None:
        from tests.integration.engine import stack_config

        config = stack_config(
            "dev",
            **{
                # kwok binds no volume, so the data lives in an emptyDir: accepted only in the
                # dev and review environments (a staging environment refuses it)
                "moontv:environment": "review",
                "moontv:namespace": namespace,
                "moontv:kubernetes": {"context": "staging"},
                "moontv:storage": {
                    "kind": "kvrocks",
                    "persistent": False,
                    "backup": {"enabled": False},
                },
                "moontv:traffic": stack_config("staging")["moontv:traffic"],
            },
        )
        (clone / "Pulumi.staging.yaml").write_text(yaml.safe_dump({"config": config}))

    _operator_setup(scratch, bare, "kwok", ("staging",), backend, kwok_staging)
    operator = scratch / "kwok-operator"
    subprocess.run(["git", "clone", "--quiet", str(bare), str(operator)], check=True)
    (operator / "venv").symlink_to(ROOT / "venv")
    env = {
        **os.environ,
        "PULUMI_BACKEND_URL": backend,
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "KUBECONFIG": str(secret_file),
        "PULUMI_HOME": str(scratch / "kwok-pulumi-home"),
    }

    def operator_run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv, cwd=operator, env=env, capture_output=True, text=True, timeout=900, check=False
        )

    up = operator_run("bash", "tools/stack.sh", "up", "staging")
    assert up.returncode == 0, "\n".join((up.stdout + up.stderr).splitlines()[-40:])
    try:
        scaled = operator_run(
            "kubectl",
            "--context",
            "staging",
            "-n",
            namespace,
            "scale",
            "deployment/moontv-stable",
            "--replicas=3",
        )
        assert scaled.returncode == 0, scaled.stderr
        run = runner(
            scratch,
            bare,
            "kwok-drift",
            secrets={"PULUMI_CONFIG_PASSPHRASE": PASSPHRASE},
            environment_secrets={
                "staging": {"KUBECONFIG_STAGING": secret_file.read_text()},
                "testing": {"KUBECONFIG_TESTING": kubeconfig("testing")},
                "production-drift": {"KUBECONFIG_PROD": kubeconfig("prod")},
            },
            variables={"PULUMI_BACKEND_URL": backend},
            extra_env={
                "PULUMI_HOME": str(scratch / "kwok-pulumi-home"),
                "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            },
        )
        sha = subprocess.run(
            ["git", "--git-dir", str(bare), "rev-parse", "main"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        jobs = run.run("drift.yml", Event("schedule", sha, "refs/heads/main"))
        staging = jobs["drift (staging, staging)"]
        check = staging.step("pulumi preview --refresh")
        assert check.outcome == "failure", staging.log()
        assert "exit 1" in check.note, check.note  # drift, not a failed preview (3)
        moved = f"kubernetes:apps/v1:Deployment {namespace}/moontv-stable: changed outside"
        assert moved in staging.summary, staging.summary
        assert "spec.replicas: owned by 'kubectl' (scale)" in staging.summary
    finally:
        operator_run("bash", "tools/stack.sh", "destroy", "staging")
    TIMES["drift, kubectl scale on kwok"] = time.monotonic() - started
    print(
        f"\n[pipeline] drift of a kubectl scale reported: "
        f"{TIMES['drift, kubectl scale on kwok']:.1f}s"
    )


def _renamed_kubeconfig(path: str, context: str, name: str) -> str:
    """The kubeconfig at ``path`` with ``context`` renamed to ``name`` (as a secret holds it)."""
    data = yaml.safe_load(Path(path).read_text())
    for entry in data["contexts"]:
        if entry["name"] == context:
            entry["name"] = name
    data["current-context"] = name
    return yaml.safe_dump(data)


def test_given_a_pull_request_then_its_review_stack_is_made_updated_and_destroyed_on_the_node(
    scratch: Path,
    origin: tuple[Path, str],
    node: Any,
    node_images: Any,  # noqa: F811
) -> None:
    """review-stacks.yml on the real node (context `preview` from PREVIEW_KUBECONFIG, a
    self-hosted runner's file backend): the pull request's opening creates pr-7 and comments its
    URL once, which serves the app through the Gateway; a push updates it without a second
    comment; closing destroys the stack and its namespace."""
    from tests.integration import node as node_host

    started = time.monotonic()
    bare, _ = origin
    state = scratch / "review-node-state"
    state.mkdir()
    host = "review.pipeline.node.local"

    def template(clone: Path) -> None:
        path = clone / "Pulumi.pr.yaml"
        data = yaml.safe_load(path.read_text())
        config = data["config"]
        config["moontv:image"] = {"repository": "moontv.local/lunatv-twin", "tag": "v100.1.2"}
        config["moontv:traffic"] = {
            "host": host,
            "provider": "gateway",
            "gateway": {"name": node.gateway_name, "namespace": node.gateway_namespace},
        }
        config["moontv:storage"] = {
            "kind": "redis",
            "persistent": False,
            "size": "512Mi",
            "redisImage": "moontv.local/redis:debian",
            "exporterImage": "moontv.local/redis-exporter:debian",
            "backup": {"enabled": False},
        }
        path.write_text(yaml.safe_dump(data, sort_keys=False))

    opened = commit_to(bare, scratch, "Review stacks on the node", template, branch="main")
    run = runner(
        scratch,
        bare,
        "review-node",
        secrets={"PULUMI_CONFIG_PASSPHRASE": PASSPHRASE, "GITHUB_TOKEN": "token"},
        environment_secrets={
            "review": {
                "PREVIEW_KUBECONFIG": _renamed_kubeconfig(node.kubeconfig, node.context, "preview")
            }
        },
        variables={"REVIEW_STACKS": "self-managed", "PULUMI_BACKEND_URL": f"file://{state}"},
        extra_env={
            "PULUMI_HOME": str(scratch / "review-node-pulumi-home"),
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        },
    )
    namespace = "moontv-pr-7"
    try:
        first = run.run("review-stacks.yml", pull_request(7, "opened", opened))["up"]
        assert first.result == "success", first.log()
        made = first.step("Create or update pr-7")
        url = made.outputs["url"]
        assert made.outputs["created"] == "true" and url == f"https://pr-7.{host}"
        status, _, body = node_host.gateway_request(
            node.gateway, f"pr-7.{host}", "GET", "/api/server-config"
        )
        assert status == 200 and json.loads(body)["Version"] == "100.1.2", body[:200]

        def site_name(clone: Path) -> None:
            path = clone / "Pulumi.pr.yaml"
            data = yaml.safe_load(path.read_text())
            data["config"]["moontv:site"] = {"name": "MoonTV (review, second push)"}
            path.write_text(yaml.safe_dump(data, sort_keys=False))

        pushed = commit_to(bare, scratch, "Second push of the pull request", site_name)
        second = run.run("review-stacks.yml", pull_request(7, "synchronize", pushed))["up"]
        assert second.result == "success", second.log()
        assert second.step("Create or update pr-7").outputs["created"] == "false"
        assert second.step("Comment the URL on the pull request").outcome == "skipped"
        comments = [c for c in run.api_calls if c[:2] == ["pr", "comment"]]
        assert len(comments) == 1 and url in comments[0][-1], run.api_calls

        closed = run.run("review-stacks.yml", pull_request(7, "closed", pushed))["destroy"]
        assert closed.result == "success", closed.log()
        assert "pr-7 destroyed and removed" in closed.step("Destroy and remove pr-7").log
        gone = node.kubectl("get", "namespace", namespace, "--ignore-not-found", "-o", "name")
        assert gone.strip() == "", gone
    finally:
        node.kubectl(
            "delete", "namespace", namespace, "--ignore-not-found", "--wait=false", check=False
        )
    TIMES["review stack on the node"] = time.monotonic() - started
    print(
        f"\n[pipeline] review stack pr-7 (open, push, close) on the node: "
        f"{TIMES['review stack on the node']:.1f}s; served 100.1.2 at https://pr-7.{host}"
    )
