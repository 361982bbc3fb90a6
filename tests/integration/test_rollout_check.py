"""`rollout check pre|post` on real targets: the app twin served by the local Docker engine
on 127.0.0.1 for the smoke run, a real redis-server for the key counts. Cluster checks run
against the real node in tests/integration/test_node_operations.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from rollout import check_pre
from rollout.check import FAIL, PASS, Target, run_checks
from rollout.cli import main
from tests.conftest import ROOT
from tests.helpers import free_port
from tests.integration import twin as app_twin
from tests.integration.test_storage_tool import redis_server

pytestmark = pytest.mark.integration
STACK = "node"
INTENDED = "moontv.local/lunatv-twin:v100.1.2"


def stack_config(**overrides: Any) -> dict[str, Any]:
    """The node stack as a plain deploy target: v100.1.2 everywhere, manifests rendered (no
    cluster here), monitoring off."""
    config = yaml.safe_load((ROOT / f"Pulumi.{STACK}.yaml").read_text())["config"]
    config["moontv:image"] = {"repository": "moontv.local/lunatv-twin", "tag": "v100.1.2"}
    config["moontv:kubernetes"] = {"renderDir": "rendered/node"}
    config["moontv:monitoring"] = {"enabled": False}
    config.pop("moontv:release", None)
    config.update({f"moontv:{k}": v for k, v in overrides.items()})
    return config


class ConfigOnly:
    """What `check` reads from a stack: its name and config (no engine involved)."""

    name = STACK

    def __init__(self, config: dict[str, Any]):
        self._config = config

    def config(self) -> dict[str, Any]:
        return self._config


@pytest.fixture(scope="module")
def built():
    return app_twin.images()


@pytest.fixture
def storage(tmp_path):
    with redis_server(tmp_path / "redis", password=None) as port:
        yield port


def redis_url(port: int) -> str:
    return f"redis://127.0.0.1:{port}"


def seed_favourites(port: int, count: int) -> None:
    import redis

    client = redis.Redis(port=port)
    for i in range(count):
        client.hset(f"u:user{i}:fav", "src+1", json.dumps({"title": f"film {i}"}))
    client.close()


def pre(port: int, tmp_path, config: dict[str, Any]) -> dict[str, Any]:
    """check pre with the real storage (the policy preview is the engine's, tested apart)."""
    target = Target(
        stack=STACK,
        config=config,
        storage_url=redis_url(port),
        state_dir=tmp_path,
        extra={"history": lambda: []},
    )
    checks = [c for c in check_pre.CHECKS if c is not check_pre.check_policy]
    return {r.name: r for r in run_checks(checks, target)}


def post(
    tmp_path, capsys, config: dict[str, Any], *args: str, password: str = app_twin.PASSWORD
) -> tuple[int, dict[str, Any]]:
    import os

    os.environ["MOONTV_OWNER_PASSWORD"] = password
    try:
        code = main(
            ["check", "post", "--stack", STACK, "--state-dir", str(tmp_path), "--json", *args],
            open_stack=lambda name, cwd: ConfigOnly(config),
        )
    finally:
        del os.environ["MOONTV_OWNER_PASSWORD"]
    doc = json.loads(capsys.readouterr().out)
    return code, {c["name"]: c for c in doc["checks"]}


def test_given_a_healthy_release_then_pre_and_post_pass_with_measured_reasons(
    built, storage, tmp_path, capsys
):
    seed_favourites(storage, 20)
    config = stack_config()
    before = pre(storage, tmp_path, config)
    assert before["data-snapshot"].status == PASS, before["data-snapshot"].reason
    assert "20 favourite lists" in before["data-snapshot"].reason
    assert before["config"].status == before["images-pinned"].status == PASS
    with app_twin.running(INTENDED, redis_url(storage)) as twin:
        code, checks = post(
            tmp_path, capsys, config, "--url", twin.url, "--storage-url", redis_url(storage)
        )
    assert code == 0, checks
    assert checks["smoke"]["status"] == PASS
    assert checks["smoke"]["reason"] == (
        "login as admin, favourites 200, /api/server-config version 100.1.2"
    )
    assert checks["data-consistency"]["status"] == PASS
    # the twin's first start wrote admin:config and its migration keys: counts only grew
    assert "favourite lists 20 -> 20" in checks["data-consistency"]["reason"]
    assert checks["monitoring"]["status"] == "SKIP"


def test_given_favourites_lost_during_the_deploy_then_post_fails_on_data_consistency(
    built, storage, tmp_path, capsys
):
    seed_favourites(storage, 20)
    config = stack_config()
    assert pre(storage, tmp_path, config)["data-snapshot"].status == PASS
    import redis

    client = redis.Redis(port=storage)
    client.delete(*[f"u:user{i}:fav" for i in range(5)])
    client.close()
    with app_twin.running(INTENDED, redis_url(storage)) as twin:
        code, checks = post(
            tmp_path, capsys, config, "--url", twin.url, "--storage-url", redis_url(storage)
        )
    assert code == 1
    assert checks["data-consistency"]["status"] == FAIL
    assert "u:*:fav: 20 -> 15 (more than 5% lost)" in checks["data-consistency"]["reason"]
    assert checks["smoke"]["status"] == PASS


def test_given_the_old_version_still_serving_then_smoke_fails_naming_both_versions(
    built, storage, tmp_path, capsys
):
    with app_twin.running("moontv.local/lunatv-twin:v100.1.1", redis_url(storage)) as twin:
        code, checks = post(tmp_path, capsys, stack_config(), "--url", twin.url)
    assert code == 1
    assert checks["smoke"]["reason"] == (
        "/api/server-config reports version 100.1.0, intended 100.1.2"
    )


def test_given_a_wrong_owner_password_then_smoke_fails_on_login(built, storage, tmp_path, capsys):
    with app_twin.running(INTENDED, redis_url(storage)) as twin:
        code, checks = post(
            tmp_path, capsys, stack_config(), "--url", twin.url, password="not-the-password"
        )
    assert code == 1
    assert checks["smoke"]["reason"] == "POST /api/login as admin answered 401"


def test_given_unreachable_targets_then_each_check_fails_with_the_address(tmp_path, capsys):
    closed = free_port()
    checks = pre(closed, tmp_path, stack_config())
    assert checks["data-snapshot"].status == FAIL
    assert f"storage 127.0.0.1:{closed}" in checks["data-snapshot"].reason
    code, post_checks = post(
        tmp_path, capsys, stack_config(), "--url", f"http://127.0.0.1:{closed}"
    )
    assert code == 1 and post_checks["smoke"]["status"] == FAIL
    assert "Connection refused" in post_checks["smoke"]["reason"]
