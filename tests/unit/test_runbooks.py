"""Every command of docs/runbooks is checked: `cluster` blocks here (parsed by the CLI, accepted
by kubectl and pulumi, naming only objects the staging stack declares); `run` blocks are run
for real by tests/integration/test_runbooks.py."""

from __future__ import annotations

import functools
import re
import subprocess

import pytest

from rollout.cli import parser
from tests.conftest import ROOT, skip_or_fail
from tests.program import run_stack
from tests.runbooks import TAGS, Block, blocks, shell_blocks

STACK = "staging"
NAMESPACE = "moontv-staging"
#: kubectl kinds whose names must be declared by the stack (jobs are made by the runbooks).
DECLARED_KINDS = {
    "deployment": "Deployment",
    "statefulset": "StatefulSet",
    "cronjob": "CronJob",
    "secret": "Secret",
    "daemonset": "DaemonSet",
    "service": "Service",
    "pvc": "PersistentVolumeClaim",
}
CLUSTER = shell_blocks("cluster")
COMMANDS = [(block, argv) for block in CLUSTER for argv in block.commands()]


@functools.cache
def declared() -> dict[str, set[str]]:
    """kind -> metadata names of the staging stack's Kubernetes objects in its namespace."""
    names: dict[str, set[str]] = {}
    for resource in run_stack(STACK).kubernetes():
        namespace = (resource.inputs.get("metadata") or {}).get("namespace")
        if resource.metadata_name and namespace == NAMESPACE:
            names.setdefault(resource.kind, set()).add(resource.metadata_name)
    return names


def test_given_the_runbooks_then_every_shell_block_is_tagged_and_there_are_commands():
    shell = [b for b in blocks() if b.language in ("bash", "sh", "shell", "console", "")]
    untagged = [b.where for b in shell if b.tag not in TAGS]
    assert not untagged, f"tag these blocks `bash run` or `bash cluster`: {untagged}"
    assert len(COMMANDS) >= 30 and len(shell_blocks("run")) >= 5


def _id(param: tuple[Block, list[str]]) -> str:
    block, argv = param
    return f"{block.where}:{' '.join(argv[:4])}"


@pytest.mark.parametrize("command", COMMANDS, ids=[_id(c) for c in COMMANDS])
def test_given_a_cluster_command_then_it_is_a_valid_invocation_on_declared_objects(command):
    block, argv = command
    if argv[:3] == ["python", "-m", "rollout"]:
        args = parser().parse_args(argv[3:])  # SystemExit on anything the CLI refuses
        stacks = args.stack if isinstance(args.stack, list) else [args.stack]
        assert all((ROOT / f"Pulumi.{s}.yaml").exists() for s in stacks), argv
    elif argv[0] == "kubectl":
        _kubectl(block, argv)
    elif argv[0] == "pulumi":
        assert "--stack" in argv and argv[argv.index("--stack") + 1] == STACK, argv
    else:
        pytest.fail(f"{block.where}: `{argv[0]}` is not a rollout, kubectl or pulumi command")


def _kubectl(block: Block, argv: list[str]) -> None:
    words = iter(argv[1:])
    namespace, refs, positional = None, [], []
    for word in words:
        if word in ("--namespace", "-n"):
            namespace = next(words)
        elif word.startswith("--from="):
            refs.append(word.split("=", 1)[1])
        elif word in (
            "-l",
            "-o",
            "--container",
            "--for",
            "--sort-by",
            "--since",
            "--replicas",
            "--timeout",
        ):
            next(words)
        elif not word.startswith("-"):
            positional.append(word)
    assert namespace == NAMESPACE, f"{block.where}: {argv} must name --namespace {NAMESPACE}"
    verb = positional[0]
    refs += [p for p in positional[1:] if "/" in p]
    if verb == "get" and len(positional) > 2 and positional[1] in DECLARED_KINDS:
        refs += [f"{positional[1]}/{name}" for name in positional[2:]]
    made = {m.group(1) for m in re.finditer(r"create job .*?(\S+)$", block.file.read_text(), re.M)}
    for ref in refs:
        kind, name = ref.split("/", 1)
        if kind == "job":
            assert name in made, f"{block.where}: job/{name} is never created in {block.file.name}"
        elif kind in DECLARED_KINDS:
            assert name in declared().get(DECLARED_KINDS[kind], set()), (
                f"{block.where}: the staging stack declares no {DECLARED_KINDS[kind]} {name}"
            )
    accepted = subprocess.run(
        [*argv, "--help"], capture_output=True, text=True, check=False, timeout=60
    )
    assert accepted.returncode == 0, f"{block.where}: kubectl refuses {argv}: {accepted.stderr}"


def test_given_the_pulumi_commands_then_the_pulumi_cli_accepts_each():
    from tests.integration.engine import toolchain_bin

    found = toolchain_bin()
    if found is None:
        skip_or_fail("the pulumi CLI is not built (run `make toolchain`)")
    pulumi = [argv for _, argv in COMMANDS if argv[0] == "pulumi"]
    assert pulumi
    for argv in pulumi:
        result = subprocess.run(
            [str(found / "pulumi"), *argv[1:], "--help"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert result.returncode == 0, f"pulumi refuses {argv}: {result.stderr}"
