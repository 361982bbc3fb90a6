"""Run the whole Pulumi program for a stack file (or one component) under Pulumi mocks.

``run_program(declare)`` runs any function that declares resources and returns a :class:`Run`:
every registered resource and the stack outputs. ``run_stack("dev")`` loads ``Pulumi.dev.yaml``
(optionally with overrides), hands every key to the program exactly as the language host does
(the ``PULUMI_CONFIG`` and ``PULUMI_CONFIG_SECRET_KEYS`` environment variables, read by
``pulumi.runtime``) and runs ``__main__.main()`` that way. ``given(stack)`` reads the same as
Given / When / Then.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml

from components import passwords, settings
from components.kubernetes import capacity, preflight

ROOT = Path(__file__).resolve().parent.parent
#: Plain-text values of secrets that tests look for in places they must never appear.
OWNER_PASSWORD = "owner-Secret-Passw0rd-42"
EXTERNAL_URL = "redis://:ext-Secret-9f8e7d@redis.example.com:6379"


def load_program():
    spec = importlib.util.spec_from_file_location("moontv_program", ROOT / "__main__.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Resource:
    type: str
    name: str
    inputs: dict[str, Any]  # secret envelopes replaced by their values
    raw: dict[str, Any] = field(default_factory=dict)  # as the engine gets them, secrets wrapped

    @property
    def kind(self) -> str:
        return self.type.rsplit(":", 1)[-1]

    @property
    def metadata_name(self) -> str | None:
        return (self.inputs.get("metadata") or {}).get("name")


@dataclass
class Run:
    resources: list[Resource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    secrets: list[str] = field(default_factory=list)  # plain-text secret values of this run

    def of_type(self, type_: str) -> list[Resource]:
        return [r for r in self.resources if r.type == type_]

    def raw(self, type_: str) -> dict[str, dict[str, Any]]:
        """Logical name -> inputs of every resource of ``type_``, secrets still wrapped."""
        return {r.name: r.raw for r in self.of_type(type_)}

    def kind(self, kind: str) -> list[Resource]:
        return [r for r in self.resources if r.kind == kind]

    def named(self, kind: str, name: str) -> Resource:
        found = [r for r in self.kind(kind) if r.metadata_name == name]
        assert len(found) == 1, f"expected one {kind} {name}, found {[r.name for r in found]}"
        return found[0]

    def kubernetes(self) -> list[Resource]:
        return [r for r in self.resources
                if r.type.startswith("kubernetes:") and not r.type.startswith("pulumi:providers")]


def manifest(resource: Resource) -> dict[str, Any]:
    """A Kubernetes resource as the object the provider sends (or renders): apiVersion, kind,
    metadata with its name, and the other inputs."""
    group_version = resource.type.split(":")[1]
    api_version = group_version.removeprefix("core/")
    body = {"apiVersion": api_version, "kind": resource.kind, **resource.inputs}
    body["metadata"] = {"name": resource.name, **(body.get("metadata") or {})}
    return body


def _integers(value: Any) -> Any:
    """Whole numbers as ints: Pulumi's wire format carries every number as a float."""
    if isinstance(value, dict):
        return {k: _integers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integers(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def write_manifests(run: Run, path: Path) -> Path:
    """Every Kubernetes object of ``run`` as one multi-document YAML file at ``path``, as the
    provider would render it (whole numbers as integers)."""
    docs = [_integers(manifest(r)) for r in run.kubernetes()
            if r.type != "kubernetes:helm.sh/v3:Release"]
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


SECRET_SIG = "4dabf18193072939515e22adb298388d"


def is_secret(value: Any) -> bool:
    """Whether ``value`` is a secret envelope (a secret input as the engine gets it)."""
    return isinstance(value, dict) and value.get(SECRET_SIG) == "1b47061264138c4ac30d75fd1eb44270"


def unwrap(value: Any) -> Any:
    """Inputs as plain values: secret envelopes replaced by the values they carry."""
    if isinstance(value, dict):
        if is_secret(value):
            return unwrap(value.get("value"))
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


class RecordingMocks(pulumi.runtime.Mocks):
    """Mocks that answer like the real providers and record every resource."""

    def __init__(self, run: Run):
        self.run = run

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        inputs = unwrap(dict(args.inputs))
        self.run.resources.append(Resource(args.typ, args.name, inputs, dict(args.inputs)))
        state = dict(inputs)
        if args.typ == passwords.TYPE:  # a generated password: a realistic random value
            digest = hashlib.sha256(args.name.encode()).hexdigest()
            state["result"] = ("P" + digest)[: int(inputs.get("length", 16))]
            self.run.secrets.append(state["result"])
        if args.typ.startswith("kubernetes:") and "metadata" in inputs:
            meta = dict(inputs["metadata"] or {})
            suffix = hashlib.sha1(args.name.encode()).hexdigest()[:8]
            meta.setdefault("name", f"{args.name}-{suffix}")
            state["metadata"] = meta
        return f"{args.name}_id", state

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


def stack_config(stack: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``config`` mapping of ``Pulumi.<stack>.yaml`` with ``overrides`` merged on top."""
    path = ROOT / f"Pulumi.{stack}.yaml"
    config = dict((yaml.safe_load(path.read_text()) or {}).get("config") or {})
    for key, value in (overrides or {}).items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return config


@contextmanager
def language_host_config(config: dict[str, Any], secret_keys: list[str]) -> Iterator[None]:
    """The stack config as the language host passes it: JSON strings in ``PULUMI_CONFIG``, the
    secret keys in ``PULUMI_CONFIG_SECRET_KEYS``, loaded as the SDK's entry point loads them."""
    flat = {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}
    names = ("PULUMI_CONFIG", "PULUMI_CONFIG_SECRET_KEYS")
    saved = {name: os.environ.get(name) for name in names}
    os.environ["PULUMI_CONFIG"] = json.dumps(flat)
    os.environ["PULUMI_CONFIG_SECRET_KEYS"] = json.dumps(secret_keys)
    pulumi.runtime.set_all_config(pulumi.runtime.get_config_env(),
                                  pulumi.runtime.get_config_secret_keys_env())
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def ready_cluster(target: Any, need: preflight.Needs) -> preflight.ClusterFacts:
    """A cluster that has everything a stack needs (a default StorageClass, every CRD)."""
    served = {gv: frozenset(k for api in need.apis for k in api.kinds.get(gv, ()))
              for gv in need.group_versions}
    return preflight.ClusterFacts(
        storage_classes=(preflight.StorageClass("standard", default=True),), served=served)


def fill_placeholder_digests(value: Any) -> Any:
    """``value`` with every placeholder digest replaced by a well-formed one, as the operator
    does before the first ``up`` (``Pulumi.prod.yaml`` ships placeholders; ``up`` refuses them)."""
    if isinstance(value, dict):
        return {k: fill_placeholder_digests(v) for k, v in value.items()}
    if isinstance(value, list):
        return [fill_placeholder_digests(v) for v in value]
    if isinstance(value, str) and "@sha256:" in value:
        image, _, digest = value.rpartition("@sha256:")
        if settings.is_placeholder_digest(digest):
            return f"{image}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"
    if isinstance(value, str) and value.startswith("sha256:"):
        if settings.is_placeholder_digest(value.removeprefix("sha256:")):
            return "sha256:" + hashlib.sha256(b"image.digest").hexdigest()
    return value


def run_stack(stack: str, overrides: dict[str, Any] | None = None,
              secrets: dict[str, str] | None = None,
              cluster: Any = ready_cluster, preview: bool = False,
              live: capacity.Live | None = None) -> Run:
    """Run the program for ``stack``; ``secrets`` are set as secret config values.

    ``cluster`` answers the program's preflight questions to a cluster (``preflight.gather``)
    for stacks that deploy to one; ``live`` is what runs there (``capacity.gather``; default:
    nothing yet). An update (``preview=False``) runs with the placeholder
    digests of the stack file filled in (:func:`fill_placeholder_digests`); a preview runs the
    file as it is."""
    config = stack_config(stack, overrides)
    if not preview:
        config = fill_placeholder_digests(config)
    config.update(secrets or {})
    asked, preflight.gather = preflight.gather, cluster
    running, capacity.gather = capacity.gather, lambda *_: live or capacity.Live({}, None)
    try:
        with language_host_config(config, list((secrets or {}).keys())):
            run = run_program(lambda: load_program().main(), stack, preview)
    finally:
        preflight.gather = asked
        capacity.gather = running
    run.secrets.extend((secrets or {}).values())
    return run


def run_program(declare: Callable[[], Any], stack: str = "test", preview: bool = False) -> Run:
    """Run ``declare`` as a Pulumi program under the recording mocks."""
    run = Run()
    # A fresh root stack resource: set_mocks keeps an existing one, with the outputs that
    # earlier runs exported.
    pulumi.runtime.settings.set_root_resource(None)  # type: ignore[arg-type]
    pulumi.runtime.set_mocks(RecordingMocks(run), project="moontv", stack=stack, preview=preview)

    @pulumi.runtime.test
    def go():
        declare()
        stack_resource = pulumi.runtime.get_root_resource()
        outputs = dict(getattr(stack_resource, "outputs", {}) or {})

        async def collect():
            for key, value in outputs.items():
                out = pulumi.Output.from_input(value)
                run.outputs[key] = await out.future(with_unknowns=True)
                if await out.is_secret():
                    run.secret_outputs.add(key)

        return pulumi.Output.from_input(collect())

    go()
    return run


# --- Given / When / Then ---------------------------------------------------------------------


@dataclass
class Given:
    """A shipped stack file with edits: ``given("dev").with_release(canary(25)).run()``."""

    stack: str
    overrides: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)

    def with_config(self, key: str, value: Any) -> Given:
        """Set ``moontv:<key>`` (a whole object for object keys; None removes the key)."""
        return Given(self.stack, {**self.overrides, f"moontv:{key}": value}, self.secrets)

    def with_release(self, release: dict[str, Any]) -> Given:
        return self.with_config("release", release)

    def with_traffic(self, **traffic: Any) -> Given:
        """Edit keys of ``moontv:traffic`` (the stack file's others are kept)."""
        current = self.overrides.get("moontv:traffic") or stack_config(self.stack).get(
            "moontv:traffic", {})
        return self.with_config("traffic", {**current, **traffic})

    def run(self) -> Then:
        """When the program runs under mocks."""
        return Then(run_stack(self.stack, self.overrides, self.secrets or None))


def given(stack: str) -> Given:
    return Given(stack)


@dataclass
class Then:
    """Assertions on one program run; each returns ``self`` so they chain."""

    run: Run

    def route_weights(self, host_route: str = "moontv") -> dict[str, int | None]:
        """Track -> weight of the default rule of the public (or preview) route, on Kubernetes
        from the HTTPRoute, on Swarm from Traefik's dynamic configuration."""
        routes = [r for r in self.run.kind("HTTPRoute") if r.metadata_name == host_route]
        if routes:
            refs = routes[0].inputs["spec"]["rules"][-1]["backendRefs"]
            return {ref["name"].removeprefix("moontv-"): ref.get("weight") for ref in refs}
        services = self.traefik()["http"]["services"]
        entries = services[host_route]["weighted"]["services"]
        return {e["name"].removeprefix("moontv-"): e["weight"] for e in entries}

    def traefik(self) -> dict[str, Any]:
        """The Swarm edge's dynamic configuration."""
        (config,) = [r for r in self.run.of_type("docker:index/serviceConfig:ServiceConfig")
                     if r.name.endswith("edge-dynamic")]
        return yaml.safe_load(config.inputs["dataRaw"])

    def then_weights(self, **expected: int) -> Then:
        assert self.route_weights() == expected
        return self

    def then_outputs(self, **expected: Any) -> Then:
        for key, value in expected.items():
            assert self.run.outputs[key] == value, key
        return self
