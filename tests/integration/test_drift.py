"""scripts/drift.py against a real cluster (kwok): a Deployment scaled by hand behind the
program's back is reported with its field and both values; after `up` there is no drift."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.integration.engine import PASSPHRASE, require_engine, stack_config

pytestmark = pytest.mark.integration
NAMESPACE = "moontv-drift"
COPY = ("Pulumi.yaml", "__main__.py", "components", "scripts", "tools")


def test_given_a_deployment_scaled_by_hand_then_drift_names_the_field(kwok, tmp_path: Path):
    env = {
        **require_engine(),
        "PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}",
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
    }
    (tmp_path / "state").mkdir()
    work = tmp_path / "checkout"
    work.mkdir()
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, work / name)
    (work / "venv").symlink_to(ROOT / "venv")
    config = stack_config(
        "dev",
        **{
            "moontv:namespace": NAMESPACE,
            "moontv:kubernetes": {"context": kwok.context, "kubeconfig": kwok.kubeconfig},
            "moontv:storage": {
                "kind": "kvrocks",
                "persistent": False,
                "backup": {"enabled": False},
            },
            "moontv:traffic": stack_config("staging")["moontv:traffic"],  # its Gateway
        },
    )
    (work / "Pulumi.dev.yaml").write_text(yaml.safe_dump({"config": config}))

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=900)

    def drift() -> subprocess.CompletedProcess[str]:
        return run(str(work / "venv/bin/python"), "scripts/drift.py", "dev")

    up = run("bash", "tools/stack.sh", "up", "dev")
    assert up.returncode == 0, "\n".join((up.stdout + up.stderr).splitlines()[-60:])
    try:
        clean = drift()
        assert clean.returncode == 0, clean.stdout + clean.stderr
        assert "no drift in dev" in clean.stdout

        kwok.kubectl("-n", NAMESPACE, "scale", "deployment/moontv-stable", "--replicas=3")
        drifted = drift()
        assert drifted.returncode == 1, drifted.stdout + drifted.stderr
        assert (
            f"kubernetes:apps/v1:Deployment {NAMESPACE}/moontv-stable: changed outside the program"
        ) in drifted.stdout
        assert "spec.replicas: owned by 'kubectl' (scale)" in drifted.stdout

        env["PULUMI_K8S_ENABLE_PATCH_FORCE"] = "true"  # what the report says to run
        fixed = run("bash", "tools/stack.sh", "up", "dev", "--refresh")
        assert fixed.returncode == 0, fixed.stdout + fixed.stderr
        del env["PULUMI_K8S_ENABLE_PATCH_FORCE"]
        again = drift()
        assert again.returncode == 0, again.stdout + again.stderr
        replicas = kwok.kubectl("-n", NAMESPACE, "get", "deployment/moontv-stable",
                                "-o", "jsonpath={.spec.replicas}")  # fmt: skip
        assert replicas == "1"
    finally:
        run("bash", "tools/stack.sh", "destroy", "dev")
