"""Stack config validation: every problem reported at once, each naming its key."""

from __future__ import annotations

import copy

import pytest

from components import settings
from components.errors import ConfigError
from tests.program import OWNER_PASSWORD, run_stack, stack_config


def raw(stack: str = "dev") -> dict:
    """The ``moontv:*`` keys of a shipped stack file, without the namespace prefix."""
    return {k.split(":", 1)[1]: v for k, v in stack_config(stack).items()}


def with_(base: dict, path: str, value) -> dict:
    """A copy of ``base`` with the dotted ``path`` set to ``value`` (None removes it)."""
    out = copy.deepcopy(base)
    *parents, leaf = path.split(".")
    node = out
    for part in parents:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return out


def problems(config: dict) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        settings.validate(config)
    return exc.value.problems


BAD = [
    # (stack, key path, bad value, expected key in message, expected hint)
    ("dev", "release.canary.weight", 150, "moontv:release.canary.weight", "100"),
    ("dev", "release.canary.weight", -1, "moontv:release.canary.weight", "0"),
    ("dev", "release.canary.weight", "ten", "moontv:release.canary.weight", "integer"),
    ("dev", "release.strategy", "big-bang", "moontv:release.strategy", "canary"),
    ("dev", "replicas", 0, "moontv:replicas", "1"),
    ("dev", "replicas", "three", "moontv:replicas", "integer"),
    ("dev", "environment", "qa", "moontv:environment", "'staging'"),
    ("dev", "platform", "nomad", "moontv:platform", "'swarm'"),
    ("dev", "namespace", "Moon_TV", "moontv:namespace", "must match"),
    ("dev", "image.tag", "bad tag!", "moontv:image.tag", "image tag"),
    ("dev", "image.digest", "sha256:xyz", "moontv:image.digest", "must match"),
    ("dev", "image", None, "moontv:image", "required"),
    ("dev", "storage.kind", "mysql", "moontv:storage.kind", "'kvrocks'"),
    ("dev", "storage.size", "5 gigs", "moontv:storage.size", "must match"),
    ("dev", "storage.backup.schedule", "every day", "moontv:storage.backup.schedule", "must match"),
    ("dev", "storage.backup.retention", 0, "moontv:storage.backup.retention", "1"),
    ("dev", "resources.limits.cpu", "lots", "moontv:resources.limits.cpu", "must match"),
    ("dev", "resources.requests.memory", "1GB", "moontv:resources.requests.memory", "must match"),
    ("dev", "autoscaling.targetCpu", 150, "moontv:autoscaling.targetCpu", "100"),
    ("dev", "traffic.provider", "traefik", "moontv:traffic.provider", "'gateway'"),
    ("dev", "traffic.host", "Not A Host", "moontv:traffic.host", "must match"),
    ("dev", "site.searchMaxPage", 0, "moontv:site.searchMaxPage", "1"),
    ("dev", "site.doubanProxyType", "foo", "moontv:site.doubanProxyType", "'direct'"),
    ("dev", "storage.sise", "5Gi", "moontv:storage.sise", "size"),
    ("dev", "replica", 2, "moontv:replica", "accepted keys:"),
    ("staging", "image.tag", "latest", "moontv:image.tag", "'latest'"),
    ("prod", "release.blueGreen.blue", "v5.4.0", "moontv:release.blueGreen.blue", "digest"),
    ("staging", "release.canary.version", "latest", "moontv:release.canary.version", "'latest'"),
    ("prod", "replicas", 2, "moontv:replicas", "at least 3"),
]


@pytest.mark.parametrize(("stack", "path", "value", "key", "hint"), BAD,
                         ids=[f"{b[0]}-{b[1]}={b[2]!r}" for b in BAD])
def test_given_a_bad_value_then_the_error_names_the_key_and_what_is_accepted(
        stack, path, value, key, hint):
    found = problems(with_(raw(stack), path, value))
    matching = [p for p in found if p.startswith(key + ":")]
    assert matching, f"no problem names {key}: {found}"
    assert any(hint in p for p in matching), matching


def test_given_cross_key_conflicts_then_each_is_reported():
    config = with_(raw(), "autoscaling", {"minReplicas": 5, "maxReplicas": 2})
    assert any("moontv:autoscaling" in p and "maxReplicas" in p for p in problems(config))
    config = with_(raw(), "traffic.tls", {"secretName": "a", "issuer": "b"})
    assert any(p.startswith("moontv:traffic.tls") for p in problems(config))
    config = with_(raw(), "kubernetes.context", "prod")
    assert any(p.startswith("moontv:kubernetes") for p in problems(config))
    config = with_(with_(raw("prod"), "release.strategy", "rolling"), "image.digest", None)
    assert any(p.startswith("moontv:image.digest: prod requires") for p in problems(config))
    config = with_(raw(), "storage.kind", "external")
    assert any(p.startswith("moontv:storageUrl: required") for p in problems(config))


def test_given_several_bad_keys_then_all_are_reported_at_once():
    config = with_(with_(with_(raw(), "replicas", 0), "storage.kind", "mysql"),
                   "release.canary.weight", 150)
    found = problems(config)
    for key in ("moontv:replicas", "moontv:storage.kind", "moontv:release.canary.weight"):
        assert any(p.startswith(key + ":") for p in found), (key, found)
    assert len(found) == 3


def test_given_a_bad_secret_value_then_the_error_never_echoes_it():
    config = with_(raw(), "ownerPassword", ["s3cr3t-value"])
    found = problems(config)
    assert any(p.startswith("moontv:ownerPassword") for p in found)
    assert not any("s3cr3t-value" in p for p in found)


def test_given_the_shipped_stack_files_then_they_validate():
    for stack in ("dev", "staging", "prod"):
        model = settings.validate(raw(stack))
        assert model.environment == stack


def test_given_a_secret_key_set_without_secret_then_the_program_refuses_it():
    with pytest.raises(ConfigError) as exc:
        run_stack("dev", overrides={"moontv:ownerPassword": OWNER_PASSWORD})
    expected = ("moontv:ownerPassword: must be set as a secret "
                "(pulumi config set --secret moontv:ownerPassword …)")
    assert exc.value.problems == [expected]


def test_given_defaults_then_storage_is_kvrocks_and_traffic_is_gateway():
    model = settings.validate({"environment": "dev", "image": {"tag": "v1"}})
    assert model.storage.kind == "kvrocks"
    assert model.traffic.provider == "gateway"
    assert model.image.version == "v1"
    assert model.plan().strategy == "rolling"
