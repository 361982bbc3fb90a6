"""Run the project's GitHub Actions workflows locally, step by step, from their own YAML.

A :class:`Runner` reads ``.github/workflows/*.yml`` and runs a workflow's jobs for an
:class:`Event` the way GitHub's runner does, for what the project's workflows use:

- jobs in ``needs`` order; a job's ``if:`` (default ``success()`` of its needs); a skipped or
  failed need skips its dependants unless their ``if:`` calls a status function; ``strategy.
  matrix`` (axes and ``include``) expanded into one job per combination; a job that ``uses:`` a
  local reusable workflow runs that workflow's jobs and takes ``on.workflow_call.outputs``;
- steps in order, each ``if:`` read with the job's status so far (``success()``, ``failure()``,
  ``always()``, ``cancelled()``), ``continue-on-error``, ``id`` and ``steps.<id>.outcome``;
- ``env`` precedence workflow < job < ``$GITHUB_ENV`` < step; ``$GITHUB_OUTPUT`` (also the
  ``name<<EOF`` form), ``$GITHUB_ENV``, ``$GITHUB_PATH``, ``$GITHUB_STEP_SUMMARY``; job
  ``outputs``; ``${{ }}`` expressions through :mod:`tests.integration.expressions`, which
  raises on anything it does not know;
- ``run:`` steps run as written (``bash -e {0}``, or the step's ``shell``) in the job's
  workspace, a clone of the scenario's bare ``origin`` at the event's commit, with its own
  ``HOME`` (so ``~/.kube/config`` is the job's);
- ``uses:`` steps are replaced by the local equivalent in one table (:data:`USES`, keyed by the
  action's name without its version); a ``uses:`` missing from the table fails the run with
  :class:`HarnessError`.

What it does not do: run jobs in parallel, enforce concurrency groups (it records each job's
evaluated group so tests can compare them), wait for environment reviewers (it records the
environment), or reach GitHub: ``gh`` is a stand-in on ``PATH`` that records each call in
:attr:`Runner.api_calls` (PR comments, PR creation) and answers lists from what it recorded.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.integration.expressions import Scope, condition, interpolate, to_string

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = Path(".github") / "workflows"
STATUS_FUNCTIONS = re.compile(r"\b(success|failure|always|cancelled)\s*\(")


class HarnessError(Exception):
    """The workflow uses something the harness cannot stand in for (an unknown ``uses:``, an
    unknown expression): the run stops rather than guess."""


@dataclass(frozen=True)
class Event:
    """What triggered the run: ``name`` (push, pull_request, schedule, workflow_dispatch), the
    commit, the ref and the webhook payload (``github.event``)."""

    name: str
    sha: str
    ref: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepResult:
    name: str
    outcome: str  # success, failure, skipped
    conclusion: str
    outputs: dict[str, str]
    log: str
    note: str = ""  # what a `uses:` step's local equivalent did, or why it was not run
    seconds: float = 0.0


@dataclass
class JobResult:
    name: str
    result: str  # success, failure, skipped
    outputs: dict[str, str] = field(default_factory=dict)
    steps: list[StepResult] = field(default_factory=list)
    summary: str = ""
    environment: str | None = None
    concurrency: str | None = None
    seconds: float = 0.0
    workspace: Path | None = None  # where its steps ran (kept after the run)

    def step(self, name: str) -> StepResult:
        found = [s for s in self.steps if s.name == name]
        if not found:
            raise KeyError(f"{self.name}: no step {name!r} in {[s.name for s in self.steps]}")
        return found[0]

    def log(self) -> str:
        return "\n".join(f"--- {s.name} [{s.outcome}] {s.note}\n{s.log}" for s in self.steps)


@dataclass
class StepContext:
    """What a ``uses:`` stand-in gets: the runner, the job's workspace and environment, and the
    step's evaluated ``with:``."""

    runner: Runner
    job: str
    workspace: Path
    env: dict[str, str]
    with_: dict[str, Any]
    github: dict[str, Any]
    step_name: str

    def run(self, *command: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(command),
            cwd=cwd or self.workspace,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=3600,
        )


@dataclass
class ActionResult:
    ok: bool
    note: str
    outputs: dict[str, str] = field(default_factory=dict)
    log: str = ""


@dataclass(frozen=True)
class LocalAction:
    """The local equivalent of one action: ``what`` says it in words (for the report)."""

    what: str
    run: Callable[[StepContext], ActionResult]


def action_name(uses: str) -> str:
    """``owner/repo[/path]@version`` -> ``owner/repo[/path]``: the table is version-free."""
    return uses.split("@", 1)[0].strip()


def _read_kv_file(path: Path) -> dict[str, str]:
    """``$GITHUB_OUTPUT`` / ``$GITHUB_ENV`` lines: ``name=value`` and ``name<<DELIM`` blocks."""
    if not path.exists():
        return {}
    values: dict[str, str] = {}
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        heredoc = re.fullmatch(r"([^=<]+)<<(.+)", line)
        if heredoc:
            name, delim = heredoc.group(1), heredoc.group(2)
            body: list[str] = []
            i += 1
            while i < len(lines) and lines[i] != delim:
                body.append(lines[i])
                i += 1
            if i >= len(lines):
                raise HarnessError(f"{path.name}: {name}<<{delim} is never closed")
            values[name] = "\n".join(body)
        elif "=" in line:
            name, _, value = line.partition("=")
            values[name] = value
        elif line.strip():
            raise HarnessError(f"{path.name}: cannot read line {line!r}")
        i += 1
    return values


def expand_matrix(strategy: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    matrix = dict((strategy or {}).get("matrix") or {})
    if not matrix:
        return [{}]
    include = matrix.pop("include", []) or []
    exclude = matrix.pop("exclude", []) or []
    if isinstance(matrix, str):
        raise HarnessError("a matrix from an expression is not supported")
    axes = list(matrix.items())
    combos = (
        [
            dict(zip([k for k, _ in axes], values, strict=True))
            for values in itertools.product(*[v for _, v in axes])
        ]
        if axes
        else []
    )
    combos = [
        c for c in combos if not any(all(c.get(k) == v for k, v in e.items()) for e in exclude)
    ]
    for extra in include:
        matched = [c for c in combos if all(c.get(k) == v for k, v in extra.items() if k in c)]
        if combos and matched and all(k in c for c in matched for k in extra if k in axes):
            for c in matched:
                c.update(extra)
        else:
            combos.append(dict(extra))
    return combos or [{}]


class Runner:
    """Runs workflows of the repository whose bare clone is ``origin``.

    ``secrets``/``variables``: repository secrets and variables; ``environment_secrets``:
    per environment name; ``uses``: the table of local equivalents (default :data:`USES`);
    ``path``: directories put first on every step's ``PATH`` (the toolchain's binaries)."""

    def __init__(
        self,
        origin: Path,
        work: Path,
        *,
        repository: str = "acme/moontv",
        secrets: Mapping[str, str] | None = None,
        variables: Mapping[str, str] | None = None,
        environment_secrets: Mapping[str, Mapping[str, str]] | None = None,
        uses: Mapping[str, LocalAction] | None = None,
        path: tuple[str, ...] = (),
        extra_env: Mapping[str, str] | None = None,
        services: Any = None,
    ) -> None:
        self.origin = origin
        self.work = work
        self.repository = repository
        self.secrets = dict(secrets or {})
        self.variables = dict(variables or {})
        self.environment_secrets = {k: dict(v) for k, v in (environment_secrets or {}).items()}
        self.uses = dict(USES if uses is None else uses)
        self.path = path
        self.extra_env = dict(extra_env or {})
        self.services = services  # what scenario-specific stand-ins need (node, images, …)
        self.runs = 0
        self.api_log = work / "github-api.jsonl"
        self.bin = work / "bin"
        self._install_gh()

    # --- the GitHub API stand-in ---------------------------------------------------------------

    def _install_gh(self) -> None:
        self.bin.mkdir(parents=True, exist_ok=True)
        gh = self.bin / "gh"
        gh.write_text(
            f"#!{sys.executable}\n"
            "import json, sys\n"
            f"log = {str(self.api_log)!r}\n"
            "args = sys.argv[1:]\n"
            "with open(log, 'a') as out:\n"
            "    out.write(json.dumps({'args': args}) + '\\n')\n"
            "if args[:2] == ['pr', 'list']:\n"
            "    print('')\n"
            "elif args[:2] == ['pr', 'create']:\n"
            "    print('https://github.invalid/pull/1')\n"
        )
        gh.chmod(0o755)

    @property
    def api_calls(self) -> list[list[str]]:
        if not self.api_log.exists():
            return []
        return [json.loads(line)["args"] for line in self.api_log.read_text().splitlines()]

    def record_api(self, *args: str) -> None:
        with self.api_log.open("a") as out:
            out.write(json.dumps({"args": list(args)}) + "\n")

    # --- workflows -----------------------------------------------------------------------------

    def load(self, workflow: str, sha: str) -> dict[str, Any]:
        text = subprocess.run(
            ["git", "--git-dir", str(self.origin), "show", f"{sha}:{WORKFLOWS / workflow}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        data = yaml.safe_load(text)
        data["on"] = data.pop(True, data.get("on"))
        return data

    def run(self, workflow: str, event: Event) -> dict[str, JobResult]:
        """Run every job of ``workflow`` the event triggers; results by job id (a matrix job:
        by ``id (value, …)``, plus the combined result under the job id)."""
        self.runs += 1
        data = self.load(workflow, event.sha)
        run_dir = self.work / f"run-{self.runs}-{workflow.removesuffix('.yml')}"
        run_dir.mkdir(parents=True)
        github = self._github(event)
        return self._run_jobs(data, event, github, run_dir, {})

    def _github(self, event: Event) -> dict[str, Any]:
        owner = self.repository.split("/")[0]
        return {
            "event_name": event.name,
            "sha": event.sha,
            "ref": event.ref,
            "ref_name": event.ref.rsplit("/", 1)[-1],
            "repository": self.repository,
            "repository_owner": owner,
            "actor": "release-tester",
            "event": event.payload,
            "run_id": str(1000 + self.runs),
            "run_number": str(self.runs),
            "server_url": "https://github.invalid",
            "workflow": "",
            "job": "",
            "token": self.secrets.get("GITHUB_TOKEN", ""),
        }

    def _run_jobs(
        self,
        data: Mapping[str, Any],
        event: Event,
        github: dict[str, Any],
        run_dir: Path,
        inputs: Mapping[str, Any],
    ) -> dict[str, JobResult]:
        jobs: dict[str, Any] = data["jobs"]
        results: dict[str, JobResult] = {}
        workflow_env_raw = data.get("env") or {}
        order = self._order(jobs)
        for job_id in order:
            job = jobs[job_id]
            needs = [job["needs"]] if isinstance(job.get("needs"), str) else job.get("needs", [])
            needs_ctx = {
                n: {"result": results[n].result, "outputs": results[n].outputs} for n in needs
            }
            needs_ok = all(results[n].result == "success" for n in needs)
            combos = expand_matrix(job.get("strategy"))
            combined: list[JobResult] = []
            for matrix in combos:
                label = job_id + (f" ({', '.join(map(str, matrix.values()))})" if matrix else "")
                scope = self._scope(github, matrix, needs_ctx, {}, {}, inputs, run_dir)
                scope.status = "success" if needs_ok else "failure"
                if_text = job.get("if")
                if if_text is None:
                    runs = needs_ok
                else:
                    runs = condition(if_text, scope)
                    if not needs_ok and not STATUS_FUNCTIONS.search(str(if_text)):
                        runs = False
                if not runs:
                    result = JobResult(label, "skipped")
                elif "uses" in job:
                    result = self._call(job, label, event, github, run_dir, scope)
                else:
                    workflow_env = {
                        k: to_string(interpolate(v, scope)) for k, v in workflow_env_raw.items()
                    }
                    result = self._job(
                        job, label, github, matrix, needs_ctx, workflow_env, run_dir, inputs, event
                    )
                results[label] = result
                combined.append(result)
            if combos != [{}]:
                overall = JobResult(job_id, _combine([r.result for r in combined]))
                for r in combined:
                    overall.outputs.update(r.outputs)
                results[job_id] = overall
        return results

    @staticmethod
    def _order(jobs: Mapping[str, Any]) -> list[str]:
        done: list[str] = []
        pending = list(jobs)
        while pending:
            for job_id in pending:
                needs = jobs[job_id].get("needs", [])
                needs = [needs] if isinstance(needs, str) else needs
                if all(n in done for n in needs):
                    done.append(job_id)
                    pending.remove(job_id)
                    break
            else:
                raise HarnessError(f"jobs whose needs cannot be met: {pending}")
        return done

    def _scope(
        self,
        github: dict[str, Any],
        matrix: Mapping[str, Any],
        needs: Mapping[str, Any],
        env: Mapping[str, str],
        steps: Mapping[str, Any],
        inputs: Mapping[str, Any],
        workspace: Path,
        secrets: Mapping[str, str] | None = None,
    ) -> Scope:
        return Scope(
            {
                "github": github,
                "vars": self.variables,
                "secrets": dict(secrets if secrets is not None else self.secrets),
                "matrix": dict(matrix),
                "needs": dict(needs),
                "env": dict(env),
                "steps": dict(steps),
                "inputs": dict(inputs),
                "runner": {
                    "os": "Linux",
                    "arch": "X64",
                    "temp": str(workspace),
                    "environment": "self-hosted",
                },
                "job": {},
                "strategy": {},
            },
            workspace=workspace,
        )

    def _call(
        self,
        job: Mapping[str, Any],
        label: str,
        event: Event,
        github: dict[str, Any],
        run_dir: Path,
        scope: Scope,
    ) -> JobResult:
        uses = str(job["uses"])
        if not uses.startswith("./"):
            raise HarnessError(f"{label}: only local reusable workflows are supported, got {uses}")
        called = self.load(Path(uses).name, event.sha)
        inputs = {k: interpolate(v, scope) for k, v in (job.get("with") or {}).items()}
        started = time.monotonic()
        inner = self._run_jobs(called, event, github, run_dir / label.replace(" ", "_"), inputs)
        jobs_ctx = {k: {"result": v.result, "outputs": v.outputs} for k, v in inner.items()}
        outputs_spec = ((called["on"] or {}).get("workflow_call") or {}).get("outputs") or {}
        out_scope = self._scope(github, {}, {}, {}, {}, inputs, run_dir)
        out_scope.contexts["jobs"] = jobs_ctx
        outputs = {
            k: to_string(interpolate(v["value"], out_scope)) for k, v in outputs_spec.items()
        }
        steps = [s for r in inner.values() for s in r.steps]
        summary = "".join(r.summary for r in inner.values())
        return JobResult(
            label,
            _combine([r.result for r in inner.values()]),
            outputs,
            steps,
            summary,
            seconds=time.monotonic() - started,
        )

    def _job(
        self,
        job: Mapping[str, Any],
        label: str,
        github: dict[str, Any],
        matrix: Mapping[str, Any],
        needs: Mapping[str, Any],
        workflow_env: dict[str, str],
        run_dir: Path,
        inputs: Mapping[str, Any],
        event: Event,
    ) -> JobResult:
        started = time.monotonic()
        home = run_dir / label.replace(" ", "_").replace("(", "").replace(")", "").replace(",", "")
        workspace = home / "workspace"
        (home / "home").mkdir(parents=True, exist_ok=True)
        (home / "temp").mkdir(exist_ok=True)
        workspace.mkdir(exist_ok=True)
        bootstrap = self._scope(github, matrix, needs, workflow_env, {}, inputs, workspace)
        environment = job.get("environment")
        if isinstance(environment, Mapping):
            environment = environment.get("name")
        environment = to_string(interpolate(environment, bootstrap)) if environment else None
        secrets = {**self.secrets, **self.environment_secrets.get(environment or "", {})}
        scope = self._scope(github, matrix, needs, workflow_env, {}, inputs, workspace, secrets)
        concurrency = job.get("concurrency")
        group = None
        if concurrency is not None:
            raw = concurrency.get("group") if isinstance(concurrency, Mapping) else concurrency
            group = to_string(interpolate(raw, scope))
        job_env = {
            **workflow_env,
            **{k: to_string(interpolate(v, scope)) for k, v in (job.get("env") or {}).items()},
        }
        files = {
            name: home / f"{name.lower()}.txt"
            for name in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH", "GITHUB_STEP_SUMMARY")
        }
        result = JobResult(
            label, "success", environment=environment, concurrency=group, workspace=workspace
        )
        steps_ctx: dict[str, Any] = {}
        added_env: dict[str, str] = {}
        added_path: list[str] = []
        status = "success"
        for index, step in enumerate(job.get("steps") or []):
            scope = self._scope(
                github,
                matrix,
                needs,
                {**job_env, **added_env},
                steps_ctx,
                inputs,
                workspace,
                secrets,
            )
            scope.status = status
            name = step.get("name")
            name = (
                to_string(interpolate(name, scope))
                if name
                else (
                    f"Run {step['run'].splitlines()[0]}"
                    if "run" in step
                    else f"Run {step.get('uses')}"
                )
            )
            if not condition(step.get("if"), scope):
                result.steps.append(StepResult(name, "skipped", "skipped", {}, ""))
                if step.get("id"):
                    steps_ctx[step["id"]] = {
                        "outputs": {},
                        "outcome": "skipped",
                        "conclusion": "skipped",
                    }
                continue
            for f in files.values():
                f.write_text("")
            step_env = {
                k: to_string(interpolate(v, scope)) for k, v in (step.get("env") or {}).items()
            }
            env = self._process_env(home, workspace, github, files, added_path)
            env.update(job_env)
            env.update(added_env)
            env.update(step_env)
            began = time.monotonic()
            if "run" in step:
                outcome_ok, log, note = self._run_step(step, scope, env, workspace)
            elif "uses" in step:
                action = self.uses.get(action_name(step["uses"]))
                if action is None:
                    raise HarnessError(
                        f"{label}: step {name!r} uses {action_name(step['uses'])}, which has no "
                        "local equivalent in the uses: table (tests/integration/"
                        "workflow_runner.py USES)"
                    )
                with_ = {k: interpolate(v, scope) for k, v in (step.get("with") or {}).items()}
                done = action.run(StepContext(self, label, workspace, env, with_, github, name))
                outcome_ok, log, note = done.ok, done.log, done.note
                with files["GITHUB_OUTPUT"].open("a") as out:
                    for k, v in done.outputs.items():
                        out.write(f"{k}<<__EOF__\n{v}\n__EOF__\n")
            else:
                raise HarnessError(f"{label}: step {index} has neither run nor uses")
            outputs = _read_kv_file(files["GITHUB_OUTPUT"])
            added_env.update(_read_kv_file(files["GITHUB_ENV"]))
            if files["GITHUB_PATH"].exists():
                added_path = [
                    p for p in files["GITHUB_PATH"].read_text().splitlines() if p
                ] + added_path
            result.summary += files["GITHUB_STEP_SUMMARY"].read_text()
            outcome = "success" if outcome_ok else "failure"
            conclusion = "success" if (outcome_ok or step.get("continue-on-error")) else "failure"
            if conclusion == "failure":
                status = "failure"
            result.steps.append(
                StepResult(name, outcome, conclusion, outputs, log, note, time.monotonic() - began)
            )
            if step.get("id"):
                steps_ctx[step["id"]] = {
                    "outputs": outputs,
                    "outcome": outcome,
                    "conclusion": conclusion,
                }
        result.result = status
        out_scope = self._scope(
            github, matrix, needs, job_env, steps_ctx, inputs, workspace, secrets
        )
        result.outputs = {
            k: to_string(interpolate(v, out_scope)) for k, v in (job.get("outputs") or {}).items()
        }
        result.seconds = time.monotonic() - started
        return result

    def _process_env(
        self,
        home: Path,
        workspace: Path,
        github: Mapping[str, Any],
        files: Mapping[str, Path],
        added_path: list[str],
    ) -> dict[str, str]:
        base_path = os.environ.get("PATH", "/usr/bin:/bin")
        env = {
            "PATH": ":".join([*added_path, str(self.bin), *self.path, base_path]),
            "HOME": str(home / "home"),
            "LANG": "C.UTF-8",
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_WORKSPACE": str(workspace),
            "GITHUB_SHA": github["sha"],
            "GITHUB_REF": github["ref"],
            "GITHUB_REF_NAME": github["ref_name"],
            "GITHUB_EVENT_NAME": github["event_name"],
            "GITHUB_REPOSITORY": github["repository"],
            "GITHUB_REPOSITORY_OWNER": github["repository_owner"],
            "GITHUB_RUN_ID": github["run_id"],
            "GITHUB_ACTOR": github["actor"],
            "GITHUB_SERVER_URL": github["server_url"],
            "RUNNER_TEMP": str(home / "temp"),
            "RUNNER_ENVIRONMENT": "self-hosted",
            **{name: str(path) for name, path in files.items()},
            **self.extra_env,
        }
        return env

    def _run_step(
        self, step: Mapping[str, Any], scope: Scope, env: dict[str, str], workspace: Path
    ) -> tuple[bool, str, str]:
        script = to_string(interpolate(step["run"], scope))
        shell = step.get("shell", "")
        path = Path(env["RUNNER_TEMP"]) / "step.sh"
        path.write_text(script)
        if shell in ("", None):
            command = ["bash", "-e", str(path)]
        elif shell == "bash":
            command = ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(path)]
        else:
            raise HarnessError(f"shell {shell!r} is not supported")
        cwd = workspace / step["working-directory"] if step.get("working-directory") else workspace
        timeout = float(step.get("timeout-minutes", 60)) * 60
        try:
            done = subprocess.run(
                command,
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as exc:
            return False, f"timed out after {timeout:.0f}s\n{exc.stdout or ''}", "timeout"
        return done.returncode == 0, done.stdout + done.stderr, f"exit {done.returncode}"


def _combine(results: list[str]) -> str:
    if any(r == "failure" for r in results):
        return "failure"
    if results and all(r == "skipped" for r in results):
        return "skipped"
    return "success"


# --- the uses: table ---------------------------------------------------------------------------


def _checkout(ctx: StepContext) -> ActionResult:
    """The platform repository: a clone of ``origin`` at the event's commit (or ``ref``).
    Another repository (LunaTV): the scenario's app source (``services.app_source``)."""
    target = ctx.workspace / str(ctx.with_.get("path") or "")
    repository = ctx.with_.get("repository") or ctx.github["repository"]
    if repository != ctx.github["repository"]:
        source = getattr(ctx.runner.services, "app_source", None)
        if source is None:
            return ActionResult(False, f"no local source stands in for {repository}")
        shutil.copytree(source, target, dirs_exist_ok=True)
        return ActionResult(
            True, f"{repository}@{ctx.with_.get('ref')}: the app twin's source ({source})"
        )
    ref = str(ctx.with_.get("ref") or ctx.github["sha"])
    if target.exists() and any(target.iterdir()):
        shutil.rmtree(target)
    clone = subprocess.run(
        ["git", "clone", "--quiet", "--no-checkout", str(ctx.runner.origin), str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    if clone.returncode != 0:
        return ActionResult(False, "git clone failed", log=clone.stderr)
    checkout = ctx.run("git", "checkout", "--quiet", "--detach", ref, cwd=target)
    if checkout.returncode != 0:
        return ActionResult(False, f"git checkout {ref} failed", log=checkout.stderr)
    ctx.run("git", "config", "user.email", "runner@localhost", cwd=target)
    ctx.run("git", "config", "user.name", "runner", cwd=target)
    return ActionResult(True, f"clone of origin at {ref[:12]}")


def _setup_python(ctx: StepContext) -> ActionResult:
    """A version check of the machine's python3; the project's virtualenv (built by `make
    setup` in the repository under test) stands in for the runner's package download: linked
    into the workspace so that the job's own `make setup` finds it up to date."""
    wanted = str(ctx.with_.get("python-version", ""))
    found = subprocess.run(
        ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    venv = ctx.workspace / "venv"
    if not venv.exists() and (REPO / "venv" / "bin" / "python").exists():
        venv.symlink_to(REPO / "venv")
        os.utime(REPO / "venv" / "bin" / "python")  # newer than the clone's requirements
    ok = tuple(map(int, found.split("."))) >= tuple(map(int, wanted.split("."))) if wanted else True
    return ActionResult(ok, f"python {found} for {wanted or 'any'} (venv linked)")


def _setup_go(ctx: StepContext) -> ActionResult:
    done = ctx.run("go", "version")
    return ActionResult(
        done.returncode == 0,
        f"{done.stdout.strip() or 'go missing'} for {ctx.with_.get('go-version')}",
    )


def _pulumi(ctx: StepContext) -> ActionResult:
    """No ``command``: the CLI is installed (the toolchain's, on PATH). ``up``/``preview``/
    ``refresh``/``destroy``: that command on ``stack-name`` with each ``policyPacks`` entry as
    ``--policy-pack``; ``comment-on-pr`` posts the output through the API stand-in."""
    command = ctx.with_.get("command")
    version = ctx.run("pulumi", "version")
    if not command:
        return ActionResult(version.returncode == 0, f"pulumi {version.stdout.strip()} on PATH")
    stack = str(ctx.with_["stack-name"])
    args = ["pulumi", str(command), "--stack", stack, "--non-interactive", "--color", "never"]
    if command in ("up", "destroy", "refresh"):
        args += ["--yes", "--skip-preview"] if command == "up" else ["--yes"]
    packs = ctx.with_.get("policyPacks") or ""
    for pack in str(packs).split():
        args += ["--policy-pack", str(ctx.workspace / ctx.with_.get("work-dir", ".") / pack)]
    env = dict(ctx.env)
    if ctx.with_.get("cloud-url"):
        env["PULUMI_BACKEND_URL"] = str(ctx.with_["cloud-url"])
    cwd = ctx.workspace / str(ctx.with_.get("work-dir") or ".")
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=1800
    )
    if ctx.with_.get("comment-on-pr") and ctx.github["event_name"] == "pull_request":
        number = str(ctx.github["event"]["pull_request"]["number"])
        ctx.runner.record_api("pr", "comment", number, "--body", f"pulumi {command} {stack}")
    return ActionResult(
        done.returncode == 0,
        f"pulumi {command} {stack}" + (f" with {packs}" if packs else ""),
        log=done.stdout[-6000:] + done.stderr[-4000:],
    )


def _build_push(ctx: StepContext) -> ActionResult:
    """The project's image build: ``services.build_image(ctx)`` (the scenario's) builds the app
    twin with docker/Dockerfile and tags it; outputs ``imageid`` and, when ``push`` is true,
    ``digest``."""
    build = getattr(ctx.runner.services, "build_image", None)
    if build is None:
        return ActionResult(False, "no image build stands in here")
    outputs = build(ctx)
    return ActionResult(
        True,
        f"built {ctx.with_.get('tags', '').split()[0]}"
        + (" (pushed: its digest recorded)" if ctx.with_.get("push") else ""),
        outputs,
    )


def _not_run(reason: str) -> Callable[[StepContext], ActionResult]:
    def record(ctx: StepContext) -> ActionResult:
        return ActionResult(True, f"not run: {reason}")

    return record


def _cosign_installer(ctx: StepContext) -> ActionResult:
    """A ``cosign`` on PATH that records what it was asked to sign (keyless signing needs
    GitHub's OIDC token and the public Sigstore)."""
    cosign = ctx.runner.bin / "cosign"
    cosign.write_text(f'#!/bin/sh\necho "$@" >> {ctx.runner.work}/cosign.log\n')
    cosign.chmod(0o755)
    return ActionResult(
        True, "not run: a recording cosign (keyless signing needs GitHub OIDC and Sigstore)"
    )


def _recorded(reason: str) -> LocalAction:
    """An action that cannot run here: recorded as not run, with the reason."""
    return LocalAction(f"not run: {reason}", _not_run(reason))


USES: dict[str, LocalAction] = {
    "actions/checkout": LocalAction("clone of the scenario's bare origin at the commit", _checkout),
    "actions/setup-python": LocalAction("version check; the project's venv linked", _setup_python),
    "actions/setup-go": LocalAction("version check of the machine's go", _setup_go),
    "pulumi/actions": LocalAction(
        "the toolchain's pulumi (install: version check; command: run, with the policy pack "
        "when named)",
        _pulumi,
    ),
    "docker/setup-qemu-action": _recorded("one platform is built locally"),
    "docker/setup-buildx-action": _recorded("Debian's docker 20.10 has BuildKit built in"),
    "docker/login-action": _recorded("no registry here (GHCR is reached only on GitHub)"),
    "docker/build-push-action": LocalAction(
        "the app twin built by tests/integration/images.py, tagged with the workflow's tags; "
        "push: its content digest stands for the registry's",
        _build_push,
    ),
    "aquasecurity/trivy-action": _recorded("no vulnerability database offline"),
    "github/codeql-action/upload-sarif": _recorded("no code scanning here"),
    "sigstore/cosign-installer": LocalAction(
        "a recording cosign (keyless signing needs GitHub OIDC and Sigstore)", _cosign_installer
    ),
}


def make_origin(source: Path, work: Path) -> tuple[Path, str]:
    """A bare repository holding the committed tree of ``source`` (HEAD) as ``main``; returns
    (its path, the commit)."""
    origin = work / "origin.git"
    subprocess.run(
        ["git", "init", "--quiet", "--bare", "--initial-branch=main", str(origin)], check=True
    )
    sha = subprocess.run(
        ["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run(
        ["git", "-C", str(source), "push", "--quiet", str(origin), f"{sha}:refs/heads/main"],
        check=True,
        capture_output=True,
    )
    return origin, sha


def commit_to(
    origin: Path, work: Path, message: str, edit: Callable[[Path], None], branch: str = "main"
) -> str:
    """Commit ``edit(checkout)`` on ``branch`` of ``origin`` (a developer's push); returns the
    new commit."""
    clone = work / f"dev-{time.monotonic_ns()}"
    subprocess.run(
        ["git", "clone", "--quiet", "--branch", branch, str(origin), str(clone)], check=True
    )
    edit(clone)
    for args in (
        ["add", "-A"],
        [
            "-c",
            "user.email=dev@localhost",
            "-c",
            "user.name=dev",
            "commit",
            "--quiet",
            "--allow-empty",
            "-m",
            message,
        ],
        ["push", "--quiet", "origin", f"HEAD:{branch}"],
    ):
        subprocess.run(["git", "-C", str(clone), *args], check=True, capture_output=True)
    sha = subprocess.run(
        ["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    shutil.rmtree(clone)
    return sha
