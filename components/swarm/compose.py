"""The MoonTV Swarm stack as a ``docker stack deploy`` compose file (version 3.8), pure.

:func:`compose_file` renders the same :func:`~components.swarm.spec.stack_services` records the
Pulumi component deploys, so a compose deployment routes, updates and stores data exactly like
the Pulumi one. Secrets are referenced by file; the values themselves never enter the compose
file.

CLI (writes the compose file, the config files and the secret files, mode 0600)::

    MOONTV_OWNER_PASSWORD=… MOONTV_STORAGE_PASSWORD=… \\
        python -m components.swarm.compose --stack-file Pulumi.swarm.yaml --out build/swarm
    docker stack deploy -c build/swarm/docker-compose.yml <stack>
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from components.swarm import spec as sw

COMPOSE_VERSION = "3.8"
SECRET_VARIABLES = {
    "owner": "MOONTV_OWNER_PASSWORD",
    "storage": "MOONTV_STORAGE_PASSWORD",
    "url": "MOONTV_STORAGE_URL",
}


def _literal(values: Sequence[str]) -> list[str]:
    """Strings as compose literals: ``$`` is interpolation syntax, so it is written ``$$``."""
    return [v.replace("$", "$$") for v in values]


def _memory(mib: int) -> str:
    return f"{mib}M"


def _update(policy: sw.UpdatePolicy) -> dict[str, Any]:
    return {
        "parallelism": policy.parallelism,
        "delay": policy.delay,
        "failure_action": policy.failure_action,
        "monitor": policy.monitor,
        "max_failure_ratio": float(policy.max_failure_ratio),
        "order": policy.order,
    }


def _file_ref(ref: sw.FileRef) -> dict[str, Any]:
    return {"source": ref.key, "target": ref.target, "uid": ref.uid, "gid": ref.gid,
            "mode": ref.mode}


def _mount(m: sw.Mount) -> dict[str, Any]:
    if m.kind == "tmpfs":
        return {"type": "tmpfs", "target": m.target}
    volume: dict[str, Any] = {"type": "volume", "target": m.target, "read_only": m.read_only}
    if m.volume is not None:  # else anonymous: a fresh volume per task, filled from the image
        volume["source"] = m.volume
    return volume


def _service(svc: sw.ServiceSpec) -> dict[str, Any]:
    hc = svc.healthcheck
    deploy: dict[str, Any] = {
        "mode": "replicated",
        "replicas": svc.replicas,
        "endpoint_mode": "dnsrr",
        "labels": dict(svc.labels),
        "update_config": _update(svc.update),
        "rollback_config": _update(svc.rollback),
        "restart_policy": {
            "condition": svc.restart.condition,
            "delay": svc.restart.delay,
            "max_attempts": svc.restart.max_attempts,
            "window": svc.restart.window,
        },
    }
    if svc.resources is not None:
        r = svc.resources
        deploy["resources"] = {
            "limits": {"cpus": str(r.cpu_limit), "memory": _memory(r.memory_limit_mib)},
            "reservations": {
                "cpus": str(r.cpu_reservation),
                "memory": _memory(r.memory_reservation_mib),
            },
        }
    if svc.constraints:
        deploy["placement"] = {"constraints": list(svc.constraints)}
    out: dict[str, Any] = {
        "image": svc.image,
        "healthcheck": {
            "test": _literal(hc.test),
            "interval": hc.interval,
            "timeout": hc.timeout,
            "retries": hc.retries,
            "start_period": hc.start_period,
        },
        "networks": {sw.NETWORK: {"aliases": [svc.alias]}},
        "stop_grace_period": svc.stop_grace_period,
        "read_only": svc.read_only,
        "labels": dict(svc.labels),
        "deploy": deploy,
    }
    if svc.entrypoint is not None:
        out["entrypoint"] = _literal(svc.entrypoint)
    if svc.args is not None:
        out["command"] = _literal(svc.args)
    if svc.secrets:
        out["secrets"] = [_file_ref(r) for r in svc.secrets]
    if svc.configs:
        out["configs"] = [_file_ref(r) for r in svc.configs]
    if svc.mounts:
        out["volumes"] = [_mount(m) for m in svc.mounts]
    if svc.published:
        out["ports"] = [
            {"target": target, "published": published, "protocol": "tcp", "mode": "host"}
            for published, target in svc.published
        ]
    return out


def compose_file(
    spec: sw.SwarmSpec,
    secret_values: Mapping[str, str],
    secrets_dir: str = "secrets",
    configs_dir: str = "configs",
) -> dict[str, Any]:
    """The compose document for ``spec``.

    ``secret_values`` (from :func:`~components.swarm.spec.secret_contents`) only name the
    secrets: each name carries a hash of its value. Files are ``<secrets_dir>/<key>`` and
    ``<configs_dir>/<key>``; see :func:`write_files`.
    """
    expected = _secret_keys(spec)
    missing = sorted(expected - secret_values.keys())
    if missing:
        raise ValueError(f"secret values missing for: {', '.join(missing)}")
    configs = sw.config_contents(spec)
    return {
        "version": COMPOSE_VERSION,
        "services": {svc.key: _service(svc) for svc in sw.stack_services(spec)},
        "networks": {
            sw.NETWORK: {
                "driver": "overlay",
                "attachable": True,
                "name": f"{spec.stack}-{sw.NETWORK}",
            }
        },
        "volumes": {key: {"name": f"{spec.stack}-{key}"} for key in sw.volume_keys(spec)},
        "configs": {
            key: {"name": sw.object_name(spec.stack, key, content), "file": f"{configs_dir}/{key}"}
            for key, content in sorted(configs.items())
        },
        "secrets": {
            key: {
                "name": sw.secret_name(spec.stack, key, secret_values[key]),
                "file": f"{secrets_dir}/{key}",
            }
            for key in sorted(expected)
        },
    }


def _secret_keys(spec: sw.SwarmSpec) -> set[str]:
    keys = {sw.OWNER_PASSWORD, sw.STORAGE_URL}
    if spec.storage_kind != "external":
        keys.add(sw.STORAGE_CONFIG)
    return keys


def write_files(spec: sw.SwarmSpec, secret_values: Mapping[str, str], out: Path) -> Path:
    """Write ``docker-compose.yml``, ``configs/*`` and ``secrets/*`` (0600) under ``out``."""
    document = compose_file(spec, secret_values)
    (out / "configs").mkdir(parents=True, exist_ok=True)
    secrets = out / "secrets"
    secrets.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(secrets, 0o700)
    for key, content in sw.config_contents(spec).items():
        (out / "configs" / key).write_text(content)
    for key in document["secrets"]:
        path = secrets / key
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secret_values[key])
        os.chmod(path, 0o600)
    target = out / "docker-compose.yml"
    target.write_text(yaml.safe_dump(document, sort_keys=False, default_flow_style=False))
    return target


# --- reading a stack file ----------------------------------------------------------------------


class StackFileError(ValueError):
    """A stack file problem; the message names the key."""


def spec_from_stack_file(path: Path, env: Mapping[str, str]) -> sw.SwarmSpec:
    """Build the :class:`SwarmSpec` from a ``Pulumi.<stack>.yaml`` file.

    The ``moontv:*`` keys are validated by :func:`components.settings.validate`, exactly as the
    Pulumi program does (``moontv:swarm`` included). Secret keys in the file are encrypted and
    not read here: the values come from the environment (see :data:`SECRET_VARIABLES`).
    """
    from components import settings
    from components.errors import ConfigError
    from components.swarm.options import spec_from_settings

    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise StackFileError(f"{path}: cannot read the stack file: {exc}") from None
    config = document.get("config") if isinstance(document, dict) else None
    if not isinstance(config, dict):
        raise StackFileError(f"{path}: expected a 'config:' mapping of moontv:* keys")
    raw = {k.removeprefix(settings.PREFIX): v for k, v in config.items()
           if k.startswith(settings.PREFIX) and k.removeprefix(settings.PREFIX)
           not in settings.SECRET_KEYS}
    if env.get(SECRET_VARIABLES["url"]):
        raw["storageUrl"] = env[SECRET_VARIABLES["url"]]
    try:
        model = settings.validate(raw)
    except ConfigError as exc:
        raise StackFileError(
            f"{path}:\n" + "\n".join(f"  - {p}" for p in exc.problems)
        ) from None
    try:
        return spec_from_settings(model, model.swarm)
    except ValueError as exc:
        raise StackFileError(f"{path}: {exc}") from None


def secret_values_from_env(spec: sw.SwarmSpec, env: Mapping[str, str]) -> dict[str, str]:
    """Secret contents from ``MOONTV_OWNER_PASSWORD`` and ``MOONTV_STORAGE_PASSWORD`` (or
    ``MOONTV_STORAGE_URL`` for external storage)."""
    owner = env.get(SECRET_VARIABLES["owner"], "")
    if not owner:
        raise StackFileError(f"{SECRET_VARIABLES['owner']}: set it to the owner password")
    if spec.storage_kind == "external":
        url = env.get(SECRET_VARIABLES["url"], "")
        if not url:
            raise StackFileError(f"{SECRET_VARIABLES['url']}: required for external storage")
        return sw.secret_contents(spec, owner, external_url=url)
    password = env.get(SECRET_VARIABLES["storage"], "")
    if not password:
        raise StackFileError(f"{SECRET_VARIABLES['storage']}: set it to the storage password")
    try:
        return sw.secret_contents(spec, owner, storage_password=password)
    except ValueError as exc:
        raise StackFileError(f"{SECRET_VARIABLES['storage']}: {exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m components.swarm.compose",
        description="Write the MoonTV Swarm stack as a compose file for `docker stack deploy`, "
        "with its config files and secret files (mode 0600). Secret values come from the "
        "environment: MOONTV_OWNER_PASSWORD, and MOONTV_STORAGE_PASSWORD (kvrocks/redis) or "
        "MOONTV_STORAGE_URL (external).",
    )
    parser.add_argument("--stack-file", required=True, type=Path,
                        help="Pulumi stack file, e.g. Pulumi.swarm.yaml")
    parser.add_argument("--out", required=True, type=Path,
                        help="directory for docker-compose.yml, configs/ and secrets/")
    args = parser.parse_args(argv)
    try:
        spec = spec_from_stack_file(args.stack_file, os.environ)
        values = secret_values_from_env(spec, os.environ)
        target = write_files(spec, values, args.out)
    except (StackFileError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {target} ({len(spec.plan.tracks)} track(s), strategy {spec.plan.strategy})")
    print(f"deploy with: docker stack deploy -c {target} {spec.stack}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
