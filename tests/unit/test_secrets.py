"""Secrets never appear in plain text outside Secrets."""

from __future__ import annotations

import json

import pytest

from components import passwords
from tests.program import OWNER_PASSWORD, Run, run_stack


def _plain_places(run: Run) -> list[tuple[str, str]]:
    """(where, text) for everything that is not a Secret: ConfigMaps, env literals, labels,
    annotations, and every non-secret stack output."""
    places: list[tuple[str, str]] = []
    for r in run.resources:
        meta = r.inputs.get("metadata") or {}
        places.append((f"{r.name} labels", json.dumps(meta.get("labels", {}))))
        places.append((f"{r.name} annotations", json.dumps(meta.get("annotations", {}))))
        if r.kind == "ConfigMap":
            places.append((f"{r.name} data", json.dumps(r.inputs.get("data", {}))))
        if r.kind in ("Deployment", "StatefulSet", "CronJob"):
            text = json.dumps(r.inputs["spec"])
            places.append((f"{r.name} spec", text))
    for key, value in run.outputs.items():
        if key not in run.secret_outputs:
            places.append((f"output {key}", json.dumps(value, default=str)))
    return places


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
@pytest.mark.parametrize("given", ["generated", "configured"])
def test_no_secret_value_appears_outside_secrets(stack, given):
    secrets = {"moontv:ownerPassword": OWNER_PASSWORD} if given == "configured" else {}
    run = run_stack(stack, secrets=secrets)
    assert len(run.secrets) >= 2  # the owner password and the storage password
    for secret in run.secrets:
        assert any(secret in json.dumps(s.inputs) for s in run.kind("Secret")), \
            "the secret reaches a Kubernetes Secret"
        for where, text in _plain_places(run):
            assert secret not in text, f"secret value found in {where}"


def test_generated_passwords_are_secret_outputs():
    run = run_stack("dev")
    generated = run.of_type(passwords.TYPE)
    assert {p.name for p in generated} == {"owner-password", "moontv-storage-password"}
    assert all(p.inputs["length"] >= 24 for p in generated)
