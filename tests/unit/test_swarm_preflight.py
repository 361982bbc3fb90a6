"""Swarm preflight: one clear message when the engine is unreachable or not a Swarm manager."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from components.swarm import preflight


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def fake_engine(path: Path, swarm: dict) -> _Server:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"Swarm": swarm}).encode()
            self.send_response(200 if self.path == "/info" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def address_string(self) -> str:
            return "unix"

        def log_message(self, *args: object) -> None:
            pass

    server = _Server(str(path), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[callable]:
    servers: list[_Server] = []

    def start(swarm: dict) -> dict[str, str]:
        sock = tmp_path / f"docker{len(servers)}.sock"
        servers.append(fake_engine(sock, swarm))
        return {"DOCKER_HOST": f"unix://{sock}"}

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_given_an_active_manager_then_no_problem(engine):
    env = engine({"LocalNodeState": "active", "ControlAvailable": True})
    assert preflight.check(env) is None
    preflight.require(env)


def test_given_swarm_inactive_then_the_message_says_to_run_swarm_init(engine):
    env = engine({"LocalNodeState": "inactive", "ControlAvailable": False})
    message = preflight.check(env)
    assert "not in Swarm mode" in message
    assert "docker swarm init --advertise-addr 127.0.0.1" in message
    with pytest.raises(preflight.SwarmNotReady, match="docker swarm init"):
        preflight.require(env)


def test_given_a_worker_node_then_the_message_asks_for_a_manager(engine):
    env = engine({"LocalNodeState": "active", "ControlAvailable": False})
    assert "Swarm worker: deploy from a manager node" in preflight.check(env)


def test_given_a_locked_swarm_then_the_message_says_unlock(engine):
    env = engine({"LocalNodeState": "locked"})
    assert "docker swarm unlock" in preflight.check(env)


def test_given_no_engine_then_the_message_says_to_start_it(tmp_path):
    host = f"unix://{tmp_path}/missing.sock"
    message = preflight.check({"DOCKER_HOST": host})
    assert message.startswith(f"Docker engine not reachable at {host}")
    assert "dockerd" in message and "docker swarm init" in message


def test_given_an_unsupported_docker_host_then_the_scheme_is_named():
    message = preflight.check({"DOCKER_HOST": "ssh://user@host"})
    assert "unsupported DOCKER_HOST scheme 'ssh'" in message
