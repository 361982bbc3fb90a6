"""scripts/drift.py on `pulumi preview --refresh --json` digests: the report names each drifted
resource and field with its live and declared value; no drift, exit 0. The scheduled workflow runs
it per environment. (Drift on a real cluster: tests/integration/test_drift.py.)"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT

URN = "urn:pulumi:staging::moontv::moontv:kubernetes:MoonTV${}::{}"


def _module() -> Any:
    spec = importlib.util.spec_from_file_location("drift", ROOT / "scripts/drift.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["drift"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


drift = _module()


def step(op: str, type_: str, name: str, live: Any, declared: Any, diff: Any = None) -> Any:
    return {
        "op": op,
        "urn": URN.format(type_, name),
        "oldState": {"outputs": live} if live is not None else None,
        "newState": {"inputs": declared} if declared is not None else None,
        "detailedDiff": diff,
    }


def deployment(replicas: int, image: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "moontv-stable", "namespace": "moontv-staging"},
        "spec": {
            "replicas": replicas,
            "template": {"spec": {"containers": [{"name": "moontv", "image": image}]}},
        },
    }


DRIFTED = {
    "steps": [
        step("same", "pulumi:providers:kubernetes", "k8s", {}, {}),
        step(
            "update",
            "kubernetes:apps/v1:Deployment",
            "moontv-stable",
            deployment(1, "ghcr.io/moontechlab/lunatv:v100.1.1"),
            deployment(2, "ghcr.io/moontechlab/lunatv:v100.1.2"),
            {
                "spec.replicas": {"kind": "update"},
                "spec.template.spec.containers[0].image": {"kind": "update"},
            },
        ),
        step(
            "create",
            "kubernetes:core/v1:ConfigMap",
            "moontv-config",
            None,
            {"metadata": {"name": "moontv-config", "namespace": "moontv-staging"}},
        ),
        step("same", "kubernetes:core/v1:Service", "moontv", {}, {}),
    ],
    "changeSummary": {"same": 2, "update": 1, "create": 1},
}


def run(tmp_path: Path, digest: dict[str, Any], *extra: str) -> int:
    saved = tmp_path / "preview.json"
    saved.write_text(json.dumps(digest))
    return int(drift.main(["staging", "--preview-json", str(saved), *extra]))


def test_given_drift_then_each_resource_and_field_is_named_with_both_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = tmp_path / "summary.md"
    assert run(tmp_path, DRIFTED, "--summary", str(summary)) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("drift in staging: 2 resource(s) differ")
    assert "kubernetes:apps/v1:Deployment moontv-staging/moontv-stable: update" in out
    assert "spec.replicas (update): live 1, program 2" in out
    assert (
        'spec.template.spec.containers[0].image (update): live "ghcr.io/moontechlab/lunatv:'
        'v100.1.1", program "ghcr.io/moontechlab/lunatv:v100.1.2"'
    ) in out
    assert "kubernetes:core/v1:ConfigMap moontv-staging/moontv-config: create" in out
    assert "in the program but not where it runs" in out
    assert "Service" not in out and "providers" not in out
    assert summary.read_text().startswith("### staging\n\n```\ndrift in staging")


def test_given_no_drift_then_exit_0_and_it_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    same = {"steps": [s for s in DRIFTED["steps"] if s["op"] == "same"]}
    assert run(tmp_path, same) == 0
    assert capsys.readouterr().out.strip() == (
        "no drift in staging: every resource matches the program"
    )


def test_given_a_bad_stack_or_file_then_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert drift.main(["../x"]) == 2
    assert drift.main(["staging", "--preview-json", str(tmp_path / "missing.json")]) == 2
    assert "--preview-json" in capsys.readouterr().err


def test_given_the_drift_workflow_then_it_runs_each_environment_on_a_schedule() -> None:
    flow = yaml.safe_load((ROOT / ".github/workflows/drift.yml").read_text())
    assert flow[True]["schedule"] and "workflow_dispatch" in flow[True]
    job = flow["jobs"]["drift"]
    stacks = [entry["stack"] for entry in job["strategy"]["matrix"]["include"]]
    assert stacks == ["staging", "testing", "prod"]
    # Its own group: a pending drift run never cancels a pending deployment, nor the reverse.
    assert job["concurrency"] == {"group": "drift-${{ matrix.stack }}", "cancel-in-progress": False}
    deploy = yaml.safe_load((ROOT / ".github/workflows/deployment.yml").read_text())
    groups = {j["concurrency"]["group"] for j in deploy["jobs"].values() if "concurrency" in j}
    assert groups and all(not g.startswith("drift-") for g in groups)
    # Prod drift reads with its own environment: the deployments' approval gate is not in it.
    environments = {e["stack"]: e["environment"] for e in job["strategy"]["matrix"]["include"]}
    assert environments["prod"] != deploy["jobs"]["prod"]["environment"]
    runs = [s.get("run", "") for s in job["steps"]]
    assert 'venv/bin/python scripts/drift.py "$STACK" --summary "$GITHUB_STEP_SUMMARY"' in runs


SSA_CONFLICT = (
    "error: Preview failed: 1 error occurred:\n\t* the Kubernetes API server reported that "
    '"moontv-staging/moontv-stable" failed to fully initialize or become live: Server-Side Apply '
    'field conflict detected.\nThe resource managed by field manager "pulumi-kubernetes-4504d249" '
    'had an apply conflict: Apply failed with 1 conflict: conflict with "kubectl" with subresource '
    '"scale" using apps/v1: .spec.replicas\n'
)


def test_given_a_field_taken_over_by_kubectl_then_it_is_drift_naming_field_and_manager(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`kubectl scale` behind the program's back: server-side apply fails the preview with a
    field conflict; that is drift, not a failed check."""
    failed = {
        "steps": [],
        "diagnostics": [
            {
                "urn": URN.format("kubernetes:apps/v1:Deployment", "moontv-stable"),
                "message": SSA_CONFLICT,
                "severity": "error",
            },
            {"message": "error: preview failed\n", "severity": "error"},
        ],
    }
    assert run(tmp_path, failed) == 1
    out = capsys.readouterr().out
    assert (
        "kubernetes:apps/v1:Deployment moontv-staging/moontv-stable: changed outside the program"
    ) in out
    assert "spec.replicas: owned by 'kubectl' (scale)" in out


def test_given_the_preview_fails_then_the_summary_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(stack: str) -> dict[str, object]:
        raise RuntimeError(f"pulumi preview --refresh failed on {stack}:\ncluster is unreachable")

    monkeypatch.setattr(drift, "preview", failing)
    summary = tmp_path / "summary.md"
    assert drift.main(["staging", "--summary", str(summary)]) == 3
    text = summary.read_text()
    assert text.startswith("### staging\n") and "cluster is unreachable" in text
