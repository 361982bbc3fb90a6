"""The policies of ``moontv-policies``: CrossGuard wrappers around the rules of ``rules.py``.

Digest pinning is enforced when the pack config sets ``requireDigests`` or, without it, when
the stack's ``moontv:environment`` is ``prod`` (or, for other programs, the stack is named prod).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import rules
from pulumi_policy import (
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy import policy as policy_runtime

ResourceRule = Callable[[str, rules.Props], list[str]]

#: The stack under analysis. The engine names it, with its config, in ConfigureStack;
#: pulumi-policy 1.21 keeps only the stack's tags from that call, so the pack records the rest.
STACK: dict[str, str | None] = {"name": os.environ.get("PULUMI_STACK"), "environment": None}
ENVIRONMENT_KEY = "moontv:environment"


def _record_stack(configure_stack: Callable[..., Any]) -> Callable[..., Any]:
    def record(servicer: Any, request: Any, context: Any) -> Any:
        STACK["name"] = request.stack or STACK["name"]
        STACK["environment"] = request.config.get(ENVIRONMENT_KEY)
        return configure_stack(servicer, request, context)

    return record


_servicer = policy_runtime._PolicyAnalyzerServicer
_servicer.ConfigureStack = _record_stack(_servicer.ConfigureStack)  # type: ignore[method-assign]


def stack_environment() -> str | None:
    """The environment of the stack: its moontv:environment, else its name's last segment."""
    return STACK["environment"] or (STACK["name"] or "").rsplit("/", 1)[-1] or None


def resource_policy(name: str, description: str, rule: ResourceRule) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        for message in rule(args.resource_type, args.props):
            report(message, None)

    return ResourceValidationPolicy(name=name, description=description, validate=validate)


def _digest_validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if rules.digests_required(args.get_config(), stack_environment()):
        for message in rules.digest_pinned(args.resource_type, args.props):
            report(message, None)


def _stack_resources(args: StackValidationArgs) -> list[rules.Resource]:
    return [rules.Resource(r.resource_type, r.name, r.props, r.urn) for r in args.resources]


def stack_policy(
    name: str,
    description: str,
    rule: Callable[[list[rules.Resource]], list[rules.Violation]],
) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        for violation in rule(_stack_resources(args)):
            report(violation.message, violation.urn)

    return StackValidationPolicy(name=name, description=description, validate=validate)


POLICIES = [
    resource_policy(
        "pod-run-as-non-root", "Containers run as a non-root user.", rules.run_as_non_root
    ),
    resource_policy(
        "pod-no-privilege-escalation",
        "Containers are not privileged and set allowPrivilegeEscalation: false.",
        rules.no_privilege_escalation,
    ),
    resource_policy(
        "pod-drop-all-capabilities",
        "Containers drop ALL capabilities (only NET_BIND_SERVICE may be added).",
        rules.drop_all_capabilities,
    ),
    resource_policy(
        "pod-seccomp-runtime-default",
        "Pods or containers use the RuntimeDefault seccomp profile.",
        rules.seccomp_runtime_default,
    ),
    resource_policy(
        "pod-read-only-root-filesystem",
        "Containers mount their root filesystem read-only.",
        rules.read_only_root_filesystem,
    ),
    resource_policy(
        "pod-requests-and-limits",
        "Containers set CPU and memory requests and limits.",
        rules.requests_and_limits,
    ),
    resource_policy(
        "pod-liveness-and-readiness",
        "Containers have liveness and readiness probes.",
        rules.liveness_and_readiness,
    ),
    resource_policy(
        "image-no-latest-tag", "Images carry a tag other than 'latest'.", rules.no_latest_tag
    ),
    ResourceValidationPolicy(
        name="image-digest-pinned-in-prod",
        description="In prod every image is pinned by digest (name:tag@sha256:...).",
        validate=_digest_validate,
        config_schema=PolicyConfigSchema(
            properties={"requireDigests": {"type": "boolean"}},
        ),
    ),
    resource_policy(
        "service-not-exposed",
        "The app Service is neither NodePort nor LoadBalancer.",
        rules.app_service_not_exposed,
    ),
    resource_policy(
        "configmap-no-secrets",
        "ConfigMaps hold no secret-looking keys, credentials in URLs or passwords.",
        rules.no_secrets_in_config_map,
    ),
    stack_policy(
        "networkpolicy-per-namespace",
        "Every namespace that runs a workload has a NetworkPolicy.",
        rules.network_policy_per_namespace,
    ),
    stack_policy(
        "pdb-for-replicated-workloads",
        "Workloads with more than one replica are covered by a PodDisruptionBudget.",
        rules.pdb_for_replicated_workloads,
    ),
]
