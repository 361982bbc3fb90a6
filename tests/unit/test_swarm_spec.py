"""Swarm stack description and its compose rendering (pure)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from components import app_facts, release
from components.swarm import compose
from components.swarm import spec as sw
from tests.helpers import free_port

OWNER = "owner-Secret-1234"
STORAGE = "storage-Secret-5678"
ROOT = Path(__file__).resolve().parents[2]


def make_spec(raw_release: dict | None = None, **overrides) -> sw.SwarmSpec:
    plan = release.plan(release.parse(raw_release or {}), "v1", 2)
    base = sw.SwarmSpec(stack="moontv-dev", image_repository="ghcr.io/moontechlab/lunatv",
                        plan=plan, host="moontv.example.org",
                        site_env={"NEXT_PUBLIC_SITE_NAME": "Moon TV's"})
    return replace(base, **overrides)


CANARY = {"strategy": "canary", "canary": {"version": "v2", "weight": 20}}


def by_key(spec: sw.SwarmSpec) -> dict[str, sw.ServiceSpec]:
    return {s.key: s for s in sw.stack_services(spec)}


def test_given_canary_then_one_app_service_per_track_plus_storage_and_edge():
    services = by_key(make_spec(CANARY))
    assert list(services) == ["kvrocks", "stable", "canary", "edge-config", "edge"]
    assert services["stable"].image == "ghcr.io/moontechlab/lunatv:v1"
    assert services["canary"].image == "ghcr.io/moontechlab/lunatv:v2"
    assert services["stable"].replicas == 2
    assert services["canary"].replicas == 2
    assert services["canary"].alias == "moontv-canary"


def test_app_tasks_update_start_first_with_rollback_and_probe_login():
    app = by_key(make_spec(CANARY))["stable"]
    assert app.update.order == "start-first"
    assert app.update.failure_action == "rollback"
    assert app.rollback.order == "start-first"
    assert app.healthcheck.test == ("CMD", "node", "-e", sw.login_probe(3000))
    settings = dict(sw.app_settings(make_spec(CANARY)))
    assert settings["HOSTNAME"] == "0.0.0.0"
    assert settings["PORT"] == "3000"
    assert app.depends_on == ("kvrocks",)
    assert settings["MOONTV_WAIT_FOR"] == "moontv-kvrocks:6666"
    assert app.resources == sw.Resources()


def test_edge_publishes_host_mode_port_and_storage_keeps_one_writer():
    services = by_key(make_spec(CANARY, http_port=8080))
    assert services["edge"].published == ((8080, 80),)
    assert services["edge"].update.order == "stop-first"
    assert services["kvrocks"].update.order == "stop-first"
    assert services["kvrocks"].mounts[0] == sw.Mount(sw.STORAGE_DATA, "/var/lib/kvrocks")


def test_given_blue_green_scaled_down_then_the_idle_colour_keeps_a_service_with_no_tasks():
    bg = {"strategy": "blue-green",
          "blueGreen": {"blue": "v1", "green": "v2", "active": "green",
                        "scaleDownInactive": True}}
    services = by_key(make_spec(bg))
    assert services["green"].replicas == 2
    assert services["blue"].replicas == 0


def test_secret_env_maps_files_to_the_variables_the_app_reads():
    kv = dict(sw.app_settings(make_spec(CANARY)))["MOONTV_SECRET_ENV"]
    redis = dict(sw.app_settings(make_spec(CANARY, storage_kind="redis")))[
        "MOONTV_SECRET_ENV"]
    assert kv == "PASSWORD=/run/secrets/owner-password KVROCKS_URL=/run/secrets/storage-url"
    assert redis == "PASSWORD=/run/secrets/owner-password REDIS_URL=/run/secrets/storage-url"


def test_given_external_storage_then_no_storage_service_and_no_wait():
    spec = make_spec(CANARY, storage_kind="external", storage_external_type="kvrocks")
    services = by_key(spec)
    assert "external" not in services and "kvrocks" not in services
    assert "MOONTV_WAIT_FOR" not in dict(sw.app_settings(spec))
    assert sw.volume_keys(spec) == (sw.EDGE_DYNAMIC,)
    values = sw.secret_contents(spec, OWNER, external_url="redis://:x@db:6379")
    assert values == {sw.OWNER_PASSWORD: OWNER, sw.STORAGE_URL: "redis://:x@db:6379"}


def test_secret_contents_and_names_change_with_the_value():
    spec = make_spec(CANARY)
    one = sw.secret_contents(spec, OWNER, STORAGE)
    two = sw.secret_contents(spec, OWNER, STORAGE + "x")
    assert one[sw.STORAGE_URL] == f"redis://:{STORAGE}@moontv-kvrocks:6666"
    assert one[sw.STORAGE_CONFIG] == f"requirepass {STORAGE}\n"
    name = sw.secret_name(spec.stack, sw.STORAGE_CONFIG, one[sw.STORAGE_CONFIG])
    other = sw.secret_name(spec.stack, sw.STORAGE_CONFIG, two[sw.STORAGE_CONFIG])
    assert name.startswith("moontv-dev-storage-config-") and name != other
    assert name == sw.secret_name(spec.stack, sw.STORAGE_CONFIG, one[sw.STORAGE_CONFIG])
    assert STORAGE not in name


def test_secret_names_are_not_a_plain_hash_of_the_value():
    import hashlib

    name = sw.secret_name("moontv-dev", sw.OWNER_PASSWORD, OWNER)
    plain = hashlib.sha256(OWNER.encode()).hexdigest()
    assert name.removeprefix("moontv-dev-owner-password-") not in plain
    assert name != sw.secret_name("moontv-prod", sw.OWNER_PASSWORD, OWNER)


def test_site_env_is_shell_quoted_and_carries_owner_and_storage_type():
    text = sw.site_env_file(make_spec(CANARY, owner_username="boss"))
    assert "export USERNAME=boss\n" in text
    assert "export NEXT_PUBLIC_STORAGE_TYPE=kvrocks\n" in text
    assert "export NEXT_PUBLIC_SITE_NAME='Moon TV'\"'\"'s'\n" in text


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"stack": "Moon_TV"}, "stack: must be 1-40 lower-case"),
        ({"http_port": 70000}, "httpPort: must be an integer 1..65535"),
        ({"storage_kind": "mongo"}, "storage kind: must be kvrocks, redis or external"),
        ({"site_env": {"PASSWORD": "x"}}, "site env: only NEXT_PUBLIC_\\* and ANNOUNCEMENT"),
    ],
)
def test_given_bad_settings_then_the_error_names_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        make_spec(CANARY, **overrides)


def test_given_a_storage_password_with_config_syntax_then_it_is_refused_without_echo():
    with pytest.raises(ValueError, match="storage password: must be 8-128") as err:
        sw.secret_contents(make_spec(CANARY), OWNER, "bad password\nrename-command")
    assert "bad password" not in str(err.value)


# --- compose ----------------------------------------------------------------------------------


def test_compose_file_renders_the_same_services_and_never_the_secret_values():
    spec = make_spec(CANARY)
    values = sw.secret_contents(spec, OWNER, STORAGE)
    document = compose.compose_file(spec, values)
    text = yaml.safe_dump(document)
    assert OWNER not in text and STORAGE not in text
    assert document["version"] == "3.8"
    assert list(document["services"]) == [s.key for s in sw.stack_services(spec)]
    canary = document["services"]["canary"]
    assert canary["deploy"]["replicas"] == 2
    assert canary["deploy"]["endpoint_mode"] == "dnsrr"
    assert canary["deploy"]["update_config"]["order"] == "start-first"
    assert canary["deploy"]["update_config"]["failure_action"] == "rollback"
    assert canary["networks"] == {"net": {"aliases": ["moontv-canary"]}}
    assert document["services"]["edge"]["ports"] == [
        {"target": 80, "published": 80, "protocol": "tcp", "mode": "host"}
    ]
    assert document["secrets"][sw.OWNER_PASSWORD]["name"] == sw.secret_name(
        spec.stack, sw.OWNER_PASSWORD, OWNER
    )
    dynamic = document["configs"][sw.EDGE_DYNAMIC]["name"]
    assert dynamic == sw.object_name(spec.stack, sw.EDGE_DYNAMIC,
                                     sw.config_contents(spec)[sw.EDGE_DYNAMIC])


def test_compose_escapes_dollar_signs_so_stack_deploy_does_not_interpolate_them():
    spec = make_spec(CANARY)
    document = compose.compose_file(spec, sw.secret_contents(spec, OWNER, STORAGE))
    script = document["services"]["edge-config"]["entrypoint"][-1]
    assert "$$(sha256sum" in script and "wait $$!" in script
    assert sw.EDGE_CONFIG_SCRIPT.replace("$", "$$") == script


def test_compose_weight_change_renames_only_the_edge_dynamic_config():
    values = sw.secret_contents(make_spec(CANARY), OWNER, STORAGE)
    one = compose.compose_file(make_spec(CANARY), values)
    moved = {"strategy": "canary", "canary": {"version": "v2", "weight": 50}}
    two = compose.compose_file(make_spec(moved), values)
    changed = {k for k in one["configs"] if one["configs"][k] != two["configs"][k]}
    assert changed == {sw.EDGE_DYNAMIC}
    assert one["secrets"] == two["secrets"]


def write_stack(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "Pulumi.swarm.yaml"
    path.write_text(body)
    return path


STACK = """\
config:
  moontv:environment: dev
  moontv:platform: swarm
  moontv:namespace: moontv-ci
  moontv:image: {repository: moontv.local/lunatv-twin, tag: v100.1.1}
  moontv:replicas: 2
  moontv:traffic: {host: moontv.test}
  moontv:storage: {kind: redis}
  moontv:release: {strategy: canary, canary: {version: v2, weight: 20}}
  moontv:site: {name: Moon CI}
  moontv:ownerPassword: {secure: v1:AAAA}
  moontv:swarm: {httpPort: 18080, edgeImage: moontv-edge:test, storageImage: moontv-redis:test}
"""


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {"PATH": os.environ["PATH"], **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "components.swarm.compose", *args],
        check=False, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=300,
    )


def test_cli_help():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "--stack-file" in result.stdout and "MOONTV_OWNER_PASSWORD" in result.stdout


def test_cli_writes_compose_configs_and_private_secret_files(tmp_path):
    stack = write_stack(tmp_path, STACK)
    out = tmp_path / "out"
    result = run_cli("--stack-file", str(stack), "--out", str(out),
                     env={"MOONTV_OWNER_PASSWORD": OWNER, "MOONTV_STORAGE_PASSWORD": STORAGE})
    assert result.returncode == 0, result.stderr
    assert "docker stack deploy -c" in result.stdout
    document = yaml.safe_load((out / "docker-compose.yml").read_text())
    assert document["services"]["edge"]["ports"][0]["published"] == 18080
    assert document["services"]["stable"]["image"] == "moontv.local/lunatv-twin:v100.1.1"
    site_env = (out / "configs" / sw.SITE_ENV).read_text()
    assert "export NEXT_PUBLIC_SITE_NAME='Moon CI'" in site_env
    assert "export NEXT_PUBLIC_STORAGE_TYPE=redis" in site_env
    assert OWNER not in (out / "docker-compose.yml").read_text()
    secret = out / "secrets" / sw.OWNER_PASSWORD
    assert secret.read_text() == OWNER
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "secrets").stat().st_mode) == 0o700


def test_cli_without_secret_env_names_the_variable(tmp_path):
    stack = write_stack(tmp_path, STACK)
    result = run_cli("--stack-file", str(stack), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "MOONTV_OWNER_PASSWORD" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_with_bad_settings_names_every_key(tmp_path):
    body = STACK.replace("weight: 20", "weight: 150").replace("httpPort: 18080", "httpPort: 0")
    stack = write_stack(tmp_path, body)
    result = run_cli("--stack-file", str(stack), "--out", str(tmp_path / "o"),
                     env={"MOONTV_OWNER_PASSWORD": OWNER, "MOONTV_STORAGE_PASSWORD": STORAGE})
    assert result.returncode == 2
    assert "moontv:release.canary.weight" in result.stderr
    assert "moontv:swarm.httpPort" in result.stderr
    assert "Traceback" not in result.stderr


# --- the app task's scripts, run for real (node is all they may rely on) -----------------------


def run_entrypoint(tmp_path: Path, *args: str, env: dict[str, str] | None = None):
    """Run ENTRYPOINT_SCRIPT with /bin/sh and a PATH that holds node and cat only."""
    from tests.conftest import require_tools

    require_tools(("node",))
    import shutil

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("node", "cat"):
        target = bin_dir / tool
        if not target.exists():
            target.symlink_to(shutil.which(tool) or tool)
    script = tmp_path / "entrypoint.sh"
    script.write_text(sw.ENTRYPOINT_SCRIPT)
    return subprocess.run(["/bin/sh", str(script), *args],
                          env={"PATH": str(bin_dir), **(env or {})},
                          capture_output=True, text=True, timeout=60, check=False)


def test_given_storage_unreachable_when_the_app_starts_then_the_wrapper_fails_without_nc(tmp_path):
    port = free_port()
    result = run_entrypoint(tmp_path, f"MOONTV_WAIT_FOR=127.0.0.1:{port}", "--",
                            "/bin/sh", "-c", "echo started", env={"MOONTV_WAIT_SECONDS": "2"})
    assert result.returncode != 0
    assert "started" not in result.stdout
    assert f"storage 127.0.0.1:{port} not reachable" in result.stderr


def test_given_storage_listening_when_the_app_starts_then_settings_are_exported_and_it_runs(
        tmp_path):
    import socket

    secret = tmp_path / "owner"
    secret.write_text("pw 1")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result = run_entrypoint(
            tmp_path, "PORT=3000", f"MOONTV_WAIT_FOR=127.0.0.1:{port}",
            f"MOONTV_SECRET_ENV=PASSWORD={secret}", "--",
            "/bin/sh", "-c", 'echo "started port=$PORT password=$PASSWORD"')
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "started port=3000 password=pw 1"


@pytest.mark.parametrize("storage_kind", ["kvrocks", "redis"])
def test_given_an_app_task_when_the_wrapper_starts_the_app_then_it_sees_only_what_the_app_reads(
        tmp_path, storage_kind):
    import json
    import socket

    spec = make_spec(CANARY, storage_kind=storage_kind)
    for key in (sw.OWNER_PASSWORD, sw.STORAGE_URL):
        (tmp_path / key).write_text(f"{key}-value")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        storage = f"127.0.0.1:{listener.getsockname()[1]}"
        args = [f"{k}={storage if k == 'MOONTV_WAIT_FOR' else v}" for k, v in sw.app_settings(spec)]
        args = [a.replace(f"{sw.SECRETS_DIR}/", f"{tmp_path}/") for a in args]
        result = run_entrypoint(tmp_path, *args, "--", "node", "-e",
                                "console.log(JSON.stringify(process.env))")
    assert result.returncode == 0, result.stderr
    seen = set(json.loads(result.stdout)) - {"PATH", "PWD"}  # the test's PATH; the shell's PWD
    url = app_facts.URL_VARIABLES[storage_kind]
    assert {"HOSTNAME", "PORT", "PASSWORD", url} <= seen
    assert seen - app_facts.READ_ENV == set()
    assert not any(name.startswith("MOONTV_") for name in seen)
    # site.env (the other source of the app's environment) holds only variables the app reads
    site = {line.split("=", 1)[0].removeprefix("export ")
            for line in sw.site_env_file(spec).splitlines()}
    assert site and site - app_facts.READ_ENV == set()


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (302, True), (503, False)])
def test_the_app_healthcheck_runs_with_node_alone_and_follows_the_login_status(status, healthy):
    from tests.conftest import require_tools
    from tests.helpers import LocalServer, QuietHandler

    require_tools(("node",))

    class Login(QuietHandler):
        def do_GET(self) -> None:
            self.reply(status if self.path == "/login" else 404, "text/plain", b"login")

    server = LocalServer(Login)
    try:
        test = by_key(make_spec(CANARY))["stable"].healthcheck.test
        assert test == ("CMD", "node", "-e", sw.login_probe(3000))
        port = int(server.address.rsplit(":", 1)[1])
        result = subprocess.run(["node", "-e", sw.login_probe(port)], capture_output=True,
                                text=True, timeout=30, env={}, check=False)
    finally:
        server.stop()
    assert (result.returncode == 0) is healthy


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("60s", "1m"), ("90s", "1m30s"), ("3600s", "1h"), ("5400s", "1h30m"), ("0s", "0s"),
     ("100ms", "100ms"), ("1500ms", "1.5s"), ("5m", "5m"), ("2m0s", "2m"), ("10s", "10s")],
)
def test_durations_are_written_as_the_provider_reads_them_back(text, canonical):
    assert sw.duration(text) == canonical


def test_given_a_health_interval_of_90s_then_the_spec_holds_1m30s():
    spec = make_spec(CANARY, health_interval="90s")
    assert by_key(spec)["stable"].healthcheck.interval == "1m30s"


# --- the compose path deploys what the engine path deploys -------------------------------------


def test_compose_services_carry_the_same_hardening_and_lifecycle_as_the_spec():
    spec = make_spec(CANARY)
    document = compose.compose_file(spec, sw.secret_contents(spec, OWNER, STORAGE))
    for svc in sw.stack_services(spec):
        out = document["services"][svc.key]
        assert out["read_only"] is True, svc.key
        assert out["stop_grace_period"] == svc.stop_grace_period
        assert out["healthcheck"]["test"] == [t.replace("$", "$$") for t in svc.healthcheck.test]
        assert "environment" not in out
        mounts = {(m["type"], m.get("source"), m["target"]) for m in out.get("volumes", [])}
        assert mounts == {(m.kind, m.volume, m.target) for m in svc.mounts}, svc.key
    app = document["services"]["canary"]
    assert {"type": "volume", "target": "/app/public", "read_only": False} in app["volumes"]
    assert app["command"][-3:] == ["--", "node", "start.js"]
