"""Generated passwords, kept as Pulumi secrets and stable across updates.

A Pulumi dynamic provider (part of the Pulumi Python SDK, run by the language host) creates the
value once with :mod:`secrets`; it is stored encrypted in the stack state and never regenerated
unless the resource is replaced. The ``pulumi-random`` provider plugin would do the same, but
its Go module is not published on the Go module proxy, so the offline toolchain cannot build
it; this keeps the program runnable on the engine the project builds itself.
"""

from __future__ import annotations

import secrets
import string
import weakref
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider

ALPHABET = string.ascii_letters + string.digits  # URL-safe: passwords go into redis:// URLs
TYPE = "pulumi-python:dynamic:Resource"  # how the engine (and the mocks) see these resources


class _PasswordProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        length = int(props["length"])
        value = "".join(secrets.choice(ALPHABET) for _ in range(length))
        return CreateResult(id_=secrets.token_hex(8), outs={"length": length, "result": value})

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = int(olds.get("length", 0)) != int(news["length"])
        return DiffResult(changes=changed, replaces=["length"] if changed else [],
                          delete_before_replace=False)


class _Provider(pulumi.ProviderResource):
    """An explicit ``pulumi-python`` provider with no inputs.

    The engine configures the *default* ``pulumi-python`` provider with the whole stack config
    and keeps that in the state, secret values included; an explicit provider carries nothing.
    """

    def __init__(self) -> None:
        super().__init__("pulumi-python", "moontv-passwords", {})


#: One explicit provider per program run, keyed by the run's root stack resource.
_PROVIDERS: weakref.WeakKeyDictionary[pulumi.Resource, _Provider] = weakref.WeakKeyDictionary()


def _explicit_provider() -> _Provider:
    root = pulumi.runtime.get_root_resource()
    assert root is not None, "generated passwords are created inside a Pulumi program"
    if root not in _PROVIDERS:
        _PROVIDERS[root] = _Provider()
    return _PROVIDERS[root]


class GeneratedPassword(Resource):
    """A random alphanumeric password; ``result`` is a secret Output."""

    result: pulumi.Output[str]

    def __init__(self, name: str, length: int = 32,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        secret = pulumi.ResourceOptions(additional_secret_outputs=["result"],
                                        provider=_explicit_provider())
        super().__init__(_PasswordProvider(), name, {"length": length, "result": None},
                         pulumi.ResourceOptions.merge(opts, secret))


def generated_password(name: str, length: int = 32,
                       parent: pulumi.Resource | None = None) -> pulumi.Output[str]:
    """A new generated password as a secret Output."""
    resource = GeneratedPassword(name, length, pulumi.ResourceOptions(parent=parent))
    return pulumi.Output.secret(resource.result)


OWNER_PASSWORD_LENGTH = 24


def kept_password(name: str, length: int, configured: pulumi.Input[str] | None,
                  parent: pulumi.Resource) -> pulumi.Input[str]:
    """``configured`` when set, else a password generated once and owned by ``parent`` (a platform
    component). These were once created at the top of the program: the alias keeps them."""
    if configured is not None:
        return configured
    resource = GeneratedPassword(name, length, pulumi.ResourceOptions(
        parent=parent, aliases=[pulumi.Alias(parent=pulumi.ROOT_STACK_RESOURCE)]))
    return pulumi.Output.secret(resource.result)


def owner_password(configured: pulumi.Input[str] | None,
                   parent: pulumi.Resource) -> pulumi.Input[str]:
    """``moontv:ownerPassword`` when set, else a generated one (see :func:`kept_password`)."""
    return kept_password("owner-password", OWNER_PASSWORD_LENGTH, configured, parent)
