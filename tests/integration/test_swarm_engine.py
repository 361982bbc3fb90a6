"""The Pulumi component on a real Swarm through the Pulumi engine and the docker provider.

Runs when the ``pulumi`` CLI and the ``pulumi-resource-docker`` plugin are available (the
offline toolchain of tools/toolchain.sh, or on PATH); otherwise skips with the reason, or fails
under MOONTV_REQUIRE_ENGINE=1. Same checks as ``test_swarm_stack.py`` on the compose path:
canary split, no-op re-run, rollback to weight 0 under load, secrets absent from the state,
and a destroy that succeeds and leaves nothing behind (its failure fails the run; the cleanup
then still removes what is left).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.swarm import spec as sw
from tests.conftest import skip_or_fail, unavailable_step
from tests.helpers import free_port
from tests.integration import swarm_env as env
from tests.integration import swarm_load as load

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]

STACK = "moontv-pit"


def toolchain_path() -> str:
    """PATH with the toolchain's bin directory first, when tools/toolchain.sh can name it."""
    path = os.environ.get("PATH", "")
    script = env.ROOT / "tools" / "toolchain.sh"
    if script.exists():
        result = subprocess.run(["bash", str(script), "--print-bin"], capture_output=True,
                                text=True, timeout=60, check=False)
        if result.returncode == 0 and result.stdout.strip():
            path = f"{result.stdout.strip()}:{path}"
    return path


def require_pulumi(path: str) -> None:
    missing = [b for b in ("pulumi", "pulumi-resource-docker") if not shutil.which(b, path=path)]
    blocked = unavailable_step("docker")
    if "pulumi-resource-docker" in missing and blocked:
        pytest.skip(f"blocked: the docker provider plugin cannot be built offline ({blocked}); "
                    "test_swarm_stack.py covers the same stack via compose")
    if missing:
        skip_or_fail(f"{', '.join(missing)} not found (build the toolchain: bash "
                     "tools/toolchain.sh); test_swarm_stack.py covers the same stack via compose")


PROGRAM = """\
import sys
sys.path.insert(0, {root!r})
import pulumi
from components import release
from components.swarm.component import MoonTVSwarm, MoonTVSwarmArgs
from tests.conftest import skip_or_fail
from tests.integration import swarm_env as env

cfg = pulumi.Config("it")
spec = env.spec_for({stack!r}, env.canary(cfg.require_int("weight")), cfg.require_int("port"))
swarm = MoonTVSwarm("moontv", MoonTVSwarmArgs(
    spec=spec, owner_password=cfg.require_secret("ownerPassword"),
    storage_password=cfg.require_secret("storagePassword")))
pulumi.export("url", swarm.url)
"""


class Engine:
    def __init__(self, workdir: Path, path: str, port: int) -> None:
        self.workdir, self.port = workdir, port
        self.destroy_attempted = False
        self.env = {
            **os.environ, "PATH": path, "PULUMI_CONFIG_PASSPHRASE": "moontv-it",
            "PULUMI_BACKEND_URL": f"file://{workdir / 'state'}",
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        }
        (workdir / "state").mkdir()
        (workdir / "Pulumi.yaml").write_text(textwrap.dedent(f"""\
            name: moontv-swarm-it
            runtime:
              name: python
              options:
                virtualenv: {env.ROOT / 'venv'}
            """))
        (workdir / "__main__.py").write_text(PROGRAM.format(root=str(env.ROOT), stack=STACK))

    def attempt(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["pulumi", *args], cwd=self.workdir, env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def run(self, *args: str, timeout: float = 600) -> str:
        result = self.attempt(*args, timeout=timeout)
        assert result.returncode == 0, f"pulumi {args[0]}: {result.stdout}\n{result.stderr}"
        return result.stdout

    def up(self, weight: int) -> sw.SwarmSpec:
        self.run("config", "set", "it:weight", str(weight))
        self.run("up", "--yes", "--skip-preview", "--non-interactive")
        spec = env.spec_for(STACK, env.canary(weight), self.port)
        env.wait_converged([f"{STACK}-{s.key}" for s in sw.stack_services(spec)])
        env.wait_routing(spec, f"{STACK}-edge")
        return spec


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, local_images) -> Iterator[Engine]:
    path = toolchain_path()
    require_pulumi(path)
    started = env.require_engine()
    env.build_images()
    volumes = [f"{STACK}-{sw.STORAGE_DATA}", f"{STACK}-{sw.EDGE_DYNAMIC}"]
    running = Engine(tmp_path_factory.mktemp("pulumi-swarm"), path, free_port())
    running.run("stack", "init", "it")
    running.run("config", "set", "it:port", str(running.port))
    running.run("config", "set", "--secret", "it:ownerPassword", env.OWNER_PASSWORD)
    running.run("config", "set", "--secret", "it:storagePassword", env.STORAGE_PASSWORD)
    problem = None
    try:
        yield running
    finally:
        if not running.destroy_attempted:  # the destroy test did not run: destroy here
            result = running.attempt("destroy", "--yes", "--non-interactive")
            if result.returncode != 0:
                problem = f"pulumi destroy failed:\n{result.stdout}\n{result.stderr}"
            elif left := env.named_objects(STACK):
                problem = f"left behind after pulumi destroy: {left}"
        env.remove_named(STACK)  # whatever a failed destroy left behind
        env.remove_stack(STACK, volumes)
        env.release_engine(started)
    if problem:
        pytest.fail(problem)


def test_given_canary_20_when_deployed_by_the_engine_then_split_is_within_5_percent(engine):
    engine.up(20)
    tally = load.burst(engine.port, env.HOST, 1000, concurrency=10)
    print(f"\nengine canary 20: {dict(tally.tracks)}, share {tally.share(env.NEW):.3f}")
    assert tally.failures == []
    assert abs(tally.share(env.NEW) - 0.20) <= 0.05


def test_a_second_run_without_changes_changes_nothing(engine):
    engine.run("preview", "--expect-no-changes", "--non-interactive")


def test_the_state_holds_no_secret_in_plain_text(engine):
    state = engine.run("stack", "export")
    assert env.OWNER_PASSWORD not in state and env.STORAGE_PASSWORD not in state


def test_when_the_engine_rolls_back_to_weight_0_under_load_then_no_request_fails(engine):
    apps = [f"{STACK}-stable", f"{STACK}-canary"]
    before = env.running_containers(apps)
    with load.Continuous(engine.port, env.HOST, concurrency=4) as traffic:
        time.sleep(2)
        engine.up(0)
        time.sleep(3)
    tally = traffic.stop()
    assert env.running_containers(apps) == before, "a routing change restarted app tasks"
    print(f"\nengine rollback to 0: {tally.total} requests, {len(tally.failures)} failed")
    assert tally.failures == []
    assert load.burst(engine.port, env.HOST, 100).tracks == {env.OLD: 100}


def test_destroy_succeeds_and_leaves_no_service_config_secret_or_network(engine):
    engine.destroy_attempted = True
    result = engine.attempt("destroy", "--yes", "--non-interactive")
    assert result.returncode == 0, f"pulumi destroy: {result.stdout}\n{result.stderr}"
    left = env.named_objects(STACK)
    assert left == {}, f"left behind after pulumi destroy: {left}"
