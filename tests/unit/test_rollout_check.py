"""`python -m rollout check pre|post` against fakes: a cluster held in a dict, a fixed clock,
canned previews and image look-ups (real Redis, HTTP and clusters: tests/integration)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.image_settings import UPSTREAM_RELEASES, reported_version
from rollout import check_post, check_pre
from rollout.check import FAIL, PASS, SKIP, Result, Target, report, run_checks
from rollout.check_data import compare
from tests.conftest import ROOT

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
GOOD_TAG = {"repository": "ghcr.io/moontechlab/lunatv", "tag": "v100.1.2"}


def config(stack: str, **overrides: Any) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    data["moontv:image"] = dict(GOOD_TAG)
    data.pop("moontv:release", None)
    for key, value in overrides.items():
        data[f"moontv:{key}"] = value
    return data


class FakeCluster:
    """Objects by (kind, namespace, name); a list read returns every object of a kind."""

    def __init__(self, *objects: tuple[str, str | None, dict[str, Any]]):
        self.objects = {(kind, ns, obj["metadata"]["name"]): obj for kind, ns, obj in objects}

    def get(self, kind: str, namespace: str | None = None, name: str | None = None) -> Any:
        if name is not None:
            return copy.deepcopy(self.objects.get((kind, namespace, name)))
        return {
            "items": [
                copy.deepcopy(o)
                for (k, ns, _), o in self.objects.items()
                if k == kind and ns == namespace
            ]
        }


def target(cfg: dict[str, Any], cluster: FakeCluster | None = None, **kwargs: Any) -> Target:
    return Target(
        stack="staging",
        config=cfg,
        cluster=cluster,
        now=lambda: NOW,
        image_exists=lambda ref: None,
        **kwargs,
    )


def namespace(name: str, pss: str | None = "restricted") -> tuple[str, None, dict[str, Any]]:
    labels = {"pod-security.kubernetes.io/enforce": pss} if pss else {}
    return ("namespace", None, {"metadata": {"name": name, "labels": labels}})


def cronjob(ns: str, last: datetime | None, schedule: str = "0 3 * * *"):
    status = {"lastSuccessfulTime": last.strftime("%Y-%m-%dT%H:%M:%SZ")} if last else {}
    return (
        "cronjob",
        ns,
        {
            "metadata": {"name": "moontv-kvrocks-backup"},
            "spec": {"schedule": schedule},
            "status": status,
        },
    )


# --- pre ----------------------------------------------------------------------------------------


def test_given_a_valid_stack_then_config_passes_and_an_invalid_one_names_the_key():
    assert check_pre.check_config(target(config("staging"))).status == PASS
    bad = config("staging", replicas=0)
    [result] = run_checks([check_pre.check_config], target(bad))
    assert result.status == FAIL and "moontv:replicas" in result.reason


def test_given_a_failing_policy_preview_then_policy_fails_with_its_tail():
    result = check_pre.check_policy(
        target(config("staging"), preview=lambda: "moontv-prod-digest: not pinned")
    )
    assert result.status == FAIL and "not pinned" in result.reason
    assert check_pre.check_policy(target(config("staging"))).status == PASS


def prod(**storage: Any) -> dict[str, Any]:
    cfg = config("prod", image={**GOOD_TAG, "digest": "sha256:" + "a" * 64})
    cfg["moontv:storage"] = {**cfg["moontv:storage"], **storage}
    return cfg


def test_given_prod_then_every_image_must_carry_a_digest():
    assert check_pre.check_images_pinned(target(prod())).status == PASS
    result = check_pre.check_images_pinned(target(prod(kvrocksImage="apache/kvrocks:2.11.1")))
    assert result.status == FAIL
    assert result.reason == (
        "storage (kvrocks) apache/kvrocks:2.11.1: prod pins every image by digest (@sha256:…)"
    )


def test_given_staging_with_tags_then_images_are_pinned_and_latest_is_refused():
    assert check_pre.check_images_pinned(target(config("staging"))).status == PASS
    latest = config("staging", image={**GOOD_TAG, "tag": "latest"})
    result = run_checks([check_pre.check_images_pinned], target(latest))[0]
    assert result.status == FAIL  # staging refuses latest already in the config


def test_given_an_unpublished_upstream_tag_or_placeholder_digest_then_images_exist_fails():
    shipped = yaml.safe_load((ROOT / "Pulumi.staging.yaml").read_text())["config"]
    shipped.pop("moontv:release", None)
    shipped["moontv:image"] = {**GOOD_TAG, "tag": "v5.4.0"}
    result = check_pre.check_images_exist(target(shipped))
    assert result.status == FAIL and "upstream publishes no tag v5.4.0" in result.reason
    future = config("staging", image={**GOOD_TAG, "tag": "v100.9.0"})
    assert check_pre.check_images_exist(target(future)).status == FAIL
    result = check_pre.check_images_exist(target(prod()))
    assert result.status == FAIL and "a placeholder" in result.reason


def test_given_published_tags_then_images_exist_passes_and_says_what_it_could_not_check():
    seen: list[str] = []
    t = target(config("staging"))
    t.image_exists = lambda ref: seen.append(ref) or (True if "lunatv" in ref else None)
    result = check_pre.check_images_exist(t)
    assert result.status == PASS and result.reason.startswith("1 found")
    assert "not checkable here" in result.reason and "storage (kvrocks)" in result.reason
    t.image_exists = lambda ref: False if "kvrocks" in ref else True
    assert check_pre.check_images_exist(t).status == FAIL


@pytest.mark.parametrize(
    ("age", "status"), [(timedelta(hours=20), PASS), (timedelta(hours=26), FAIL)]
)
def test_given_a_daily_backup_then_one_older_than_a_day_and_an_hour_fails(age, status):
    cluster = FakeCluster(namespace("moontv-staging"), cronjob("moontv-staging", NOW - age))
    result = check_pre.check_backup_age(target(config("staging"), cluster))
    assert result.status == status, result.reason
    assert "allows 25h00m" in result.reason


def test_given_a_backup_cronjob_that_never_succeeded_then_the_fix_is_named():
    cluster = FakeCluster(namespace("moontv-staging"), cronjob("moontv-staging", None))
    result = check_pre.check_backup_age(target(config("staging"), cluster))
    assert result.status == FAIL
    assert "create job --from=cronjob/moontv-kvrocks-backup" in result.reason


def test_given_a_first_deployment_or_render_mode_then_backup_age_is_skipped_with_why():
    result = check_pre.check_backup_age(target(config("staging"), FakeCluster()))
    assert result.status == SKIP and "does not exist yet" in result.reason
    dev = config("dev", storage={"backup": {"enabled": True}})
    result = check_pre.check_backup_age(target(dev))
    assert result.status == SKIP and "renders manifests" in result.reason


def test_given_each_strategy_then_the_rollback_target_is_named_or_missing():
    canary = config("staging", release={"strategy": "canary"})
    assert "rollout rollback" in check_pre.check_rollback_target(target(canary)).reason
    bg = config(
        "staging",
        release={
            "strategy": "blue-green",
            "blueGreen": {"active": "blue", "blue": "v100.1.2", "green": "v100.1.1"},
        },
    )
    result = check_pre.check_rollback_target(target(bg))
    assert result.status == PASS and "blue keeps v100.1.2 serving" in result.reason
    same = config(
        "staging",
        release={
            "strategy": "blue-green",
            "blueGreen": {"active": "blue", "blue": "v100.1.2", "green": "v100.1.2"},
        },
    )
    result = check_pre.check_rollback_target(target(same, FakeCluster(namespace("moontv-staging"))))
    assert result.status == FAIL and "both colours run v100.1.2" in result.reason
    rolling = target(config("staging"), extra={"history": lambda: ["v100.1.2", "v100.1.1"]})
    result = check_pre.check_rollback_target(rolling)
    assert result.status == PASS and "v100.1.1" in result.reason
    rolling.extra["history"] = lambda: ["v100.1.2"]
    assert check_pre.check_rollback_target(rolling).status == FAIL


def test_given_a_git_history_then_the_versions_of_the_stack_file_come_newest_first():
    versions = check_pre.git_versions("staging", ROOT)
    assert versions and all(isinstance(v, str) for v in versions)


# --- post ---------------------------------------------------------------------------------------


def deployment(ns: str, name: str, want: int, ready: int):
    return (
        "deployment",
        ns,
        {
            "metadata": {"name": name},
            "spec": {"replicas": want},
            "status": {"readyReplicas": ready, "updatedReplicas": ready},
        },
    )


def test_given_every_track_ready_then_tracks_ready_passes_else_names_the_laggard():
    cfg = config(
        "staging", release={"strategy": "canary", "canary": {"version": "v100.1.1", "weight": 10}}
    )
    cluster = FakeCluster(
        deployment("moontv-staging", "moontv-stable", 2, 2),
        deployment("moontv-staging", "moontv-canary", 2, 2),
    )
    assert check_post.check_tracks_ready(target(cfg, cluster)).status == PASS
    cluster = FakeCluster(
        deployment("moontv-staging", "moontv-stable", 2, 2),
        deployment("moontv-staging", "moontv-canary", 2, 1),
    )
    result = check_post.check_tracks_ready(target(cfg, cluster))
    assert result.status == FAIL and result.reason == "moontv-canary: 1/2 ready, 1/2 updated"


def policies(ns: str, *names: str):
    return [("networkpolicy", ns, {"metadata": {"name": n}}) for n in names]


ALL_POLICIES = (
    "moontv-default-deny",
    "moontv-allow-dns",
    "moontv-allow-gateway-to-app",
    "moontv-allow-app-egress",
    "moontv-kvrocks-from-app",
)


def test_given_restricted_namespace_and_policies_then_security_passes():
    cluster = FakeCluster(namespace("moontv-staging"), *policies("moontv-staging", *ALL_POLICIES))
    assert check_post.check_security(target(config("staging"), cluster)).status == PASS


def test_given_a_missing_policy_or_a_baseline_namespace_then_security_fails_naming_both():
    cluster = FakeCluster(
        namespace("moontv-staging", "baseline"), *policies("moontv-staging", *ALL_POLICIES[1:])
    )
    result = check_post.check_security(target(config("staging"), cluster))
    assert result.status == FAIL
    assert "pod-security.kubernetes.io/enforce=baseline, not restricted" in result.reason
    assert "NetworkPolicies missing: moontv-default-deny" in result.reason


def test_given_logs_off_then_logs_is_skipped_and_on_it_needs_ready_shippers():
    assert check_post.check_logs(target(config("staging"))).status == SKIP
    monitoring = {
        "enabled": True,
        "mode": "existing",
        "logs": {"enabled": True, "endpoint": "http://loki:3100"},
    }
    cfg = config("staging", monitoring=monitoring)
    agent = (
        "daemonset",
        "moontv-staging",
        {
            "metadata": {"name": "moontv-fluent-bit"},
            "status": {"desiredNumberScheduled": 2, "numberReady": 1},
        },
    )
    result = check_post.check_logs(target(cfg, FakeCluster(agent)))
    assert result.status == FAIL and "1/2 log shippers ready" in result.reason
    agent[2]["status"]["numberReady"] = 2
    assert check_post.check_logs(target(cfg, FakeCluster(agent))).status == PASS


def test_given_monitoring_on_without_prometheus_then_the_option_is_named():
    result = check_post.check_monitoring(target(config("staging")))
    assert result.status == FAIL and "--prometheus" in result.reason
    assert check_post.check_monitoring(target(config("dev"))).status == SKIP


def test_given_key_counts_then_losses_beyond_the_tolerance_are_named():
    before = {"total": 100, "admin:config": 1, "u:*:fav": 40}
    assert compare(before, {"total": 96, "admin:config": 1, "u:*:fav": 40}, 0.05) == []
    problems = compare(before, {"total": 94, "admin:config": 0, "u:*:fav": 10}, 0.05)
    assert problems == [
        "total: 100 -> 94 (more than 5% lost)",
        "admin:config is gone",
        "u:*:fav: 40 -> 10 (more than 5% lost)",
    ]


def test_given_no_pre_record_then_data_consistency_fails_and_without_storage_skips(tmp_path):
    t = target(config("staging"), storage_url="redis://127.0.0.1:1", state_dir=tmp_path)
    result = check_post.check_data_consistency(t)
    assert result.status == FAIL and "no key counts recorded" in result.reason
    t.storage_url = None
    assert check_post.check_data_consistency(t).status == SKIP


def test_given_the_intended_version_then_it_is_the_primary_tag_without_v():
    cfg = config("staging", image={**GOOD_TAG, "digest": "sha256:" + "b" * 64})
    assert check_post.intended_version(target(cfg)) == "100.1.2"
    bg = config(
        "staging",
        release={
            "strategy": "blue-green",
            "blueGreen": {"active": "green", "blue": "v100.1.2", "green": "v100.1.1"},
        },
    )
    assert check_post.intended_version(target(bg)) == "100.1.0"  # what v100.1.1 compiles in
    assert check_post.intended_version(target(bg, expect_version="9")) == "9"


def test_given_a_branch_build_as_the_primary_version_then_no_version_is_intended():
    """The pipeline deploys `main@sha256:…`: the app reports the version of the LunaTV commit
    it was built from, which the tag does not name (it used to be compared with "main")."""
    digest = "sha256:" + "c" * 64
    for tag in ("main", "sha-abc1234", "pr-7"):
        cfg = config("staging", image={"repository": "ghcr.io/acme/moontv", "tag": tag,
                                       "digest": digest})
        assert check_post.intended_version(target(cfg)) is None, tag
        assert check_post.intended_version(target(cfg, expect_version="9")) == "9"
    faulty = config("staging", image={"repository": "ghcr.io/acme/moontv",
                                      "tag": "v100.1.3-faulty"})
    assert check_post.intended_version(target(faulty)) == "100.1.3-faulty"


def test_given_each_shipped_release_tag_then_check_post_expects_the_version_it_reports():
    """Pinned pairs, read from each release's image: v100.1.1 compiles in 100.1.0."""
    assert {tag: reported_version(tag) for tag in UPSTREAM_RELEASES} == {
        "v100.1.3": "100.1.3", "v100.1.2": "100.1.2", "v100.1.1": "100.1.0",
        "v100.1.0": "100.1.0"}


# --- running and reporting ----------------------------------------------------------------------


def test_given_a_check_that_raises_then_it_fails_alone_and_the_others_still_run():
    def check_boom(t: Target) -> Result:
        raise OSError("connection refused")

    results = run_checks([check_boom, check_pre.check_config], target(config("staging")))
    assert [(r.name, r.status) for r in results] == [("boom", FAIL), ("config", PASS)]
    assert results[0].reason == "OSError: connection refused"


def test_given_results_then_text_lists_each_and_json_is_one_document():
    results = [
        Result("config", PASS, "valid"),
        Result("logs", SKIP, "off"),
        Result("smoke", FAIL, "login 401"),
    ]
    lines: list[str] = []
    assert report("post", "staging", results, False, lines.append) == 1
    assert lines[0].split() == ["PASS", "config", "valid"]
    assert lines[2].startswith("FAIL  smoke   login 401")
    assert lines[-1] == "check post FAILED on staging: 1 passed, 1 failed, 1 skipped"
    out: list[str] = []
    assert report("post", "staging", results[:2], True, out.append) == 0
    doc = json.loads(out[0])
    assert doc["ok"] is True and doc["checks"][1] == {
        "name": "logs",
        "status": SKIP,
        "reason": "off",
    }


def test_given_the_cli_then_check_has_help_and_rejects_a_bad_phase(capsys):
    from rollout.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["check", "--help"])
    assert exc.value.code == 0 and "Exit status: 0 every check passed" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["check", "during", "--stack", "dev"])
    assert exc.value.code == 2


def test_given_an_invalid_stack_config_then_check_pre_only_reports_the_config(tmp_path, capsys):
    from rollout.cli import main

    class Stack:
        name = "staging"

        def config(self) -> dict[str, Any]:
            return config("staging", replicas=0)

    code = main(
        ["check", "pre", "--stack", "staging", "--state-dir", str(tmp_path), "--json"],
        open_stack=lambda name, cwd: Stack(),
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == 1 and [c["name"] for c in doc["checks"]] == ["config"]
    assert "moontv:replicas" in doc["checks"][0]["reason"]
    assert Path(tmp_path).is_dir()


# --- wiring: the deployment workflow and the deploy scripts -------------------------------------


def test_given_the_deployment_workflow_then_every_deploy_job_is_gated_before_and_after():
    workflow = yaml.safe_load((ROOT / ".github/workflows/deployment.yml").read_text())
    for job in ("staging", "testing", "prod"):
        steps = [s.get("name", "") for s in workflow["jobs"][job]["steps"]]
        pre = steps.index("Deploy gate (rollout check pre)")
        up = steps.index("pulumi up (with the policy pack)")
        post = steps.index("Deploy gate (rollout check post)")
        rollback = steps.index("Roll back on failure")
        assert pre < up < post < rollback, (job, steps)
        runs = {s.get("name"): s.get("run", "") for s in workflow["jobs"][job]["steps"]}
        assert "python -m rollout check post" in runs["Deploy gate (rollout check post)"]


def _script(tmp_path: Path, script: str, *args: str, fail: str = "") -> tuple[int, list[str]]:
    """Run a deploy script with a stand-in python that logs each `rollout` call (and fails the
    one whose arguments contain ``fail``)."""
    import subprocess

    log = tmp_path / "calls"
    stub = tmp_path / "python"
    stub.write_text(
        f'#!/bin/bash\necho "${{*:3}}" >> {log}\n'
        f'[[ -n "{fail}" && "$*" == *"{fail}"* ]] && exit 1\nexit 0\n'
    )
    stub.chmod(0o755)
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / script), *args],
        check=False,
        capture_output=True,
        text=True,
        env={"PYTHON": str(stub), "PATH": "/usr/bin:/bin"},
    )
    return result.returncode, log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize("script", ["canary-deploy.sh", "blue-green-deploy.sh"])
def test_given_a_deploy_script_then_check_pre_runs_first_and_check_post_last(tmp_path, script):
    code, calls = _script(
        tmp_path,
        script,
        "--stack",
        "staging",
        "--version",
        "v100.1.2",
        "--prometheus",
        "http://127.0.0.1:9",
        "--site-url",
        "http://127.0.0.1:8",
    )
    assert code == 0
    assert calls[0] == "check pre --stack staging"
    assert calls[1] == "stage v100.1.2 --stack staging"
    assert calls[-1] == (
        "check post --stack staging --url http://127.0.0.1:8 --prometheus http://127.0.0.1:9"
    )


@pytest.mark.parametrize("script", ["canary-deploy.sh", "blue-green-deploy.sh"])
def test_given_a_failing_pre_gate_then_the_script_changes_nothing(tmp_path, script):
    code, calls = _script(
        tmp_path, script, "--stack", "prod", "--version", "v100.1.2", fail="check pre"
    )
    assert code == 1 and calls == ["check pre --stack prod"]


def test_given_a_canary_taking_traffic_then_smoke_pins_its_requests_to_the_primary_track():
    from tests.helpers import LocalServer, QuietHandler

    class Route(QuietHandler):
        """Stable answers with the `never` header; anything else may reach the canary."""

        def _answer(self) -> None:
            stable = self.headers.get("x-moontv-canary") == "never"
            if self.path == "/api/server-config":
                version = "100.1.2" if stable else "100.1.1"
                self.reply(200, "application/json", json.dumps({"Version": version}).encode())
            else:
                self.reply(200, "application/json", b"{}")

        do_GET = do_POST = _answer

    server = LocalServer(Route)
    try:
        cfg = config(
            "staging",
            release={"strategy": "canary", "canary": {"version": "v100.1.1", "weight": 50}},
        )
        result = check_post.check_smoke(
            target(cfg, url=f"http://{server.address}", owner_password="pw")
        )
    finally:
        server.stop()
    assert result.status == PASS, result.reason
    assert result.reason.endswith("version 100.1.2 (x-moontv-canary: never)")


def _stub(tmp_path: Path, name: str, script: str) -> None:
    path = tmp_path / name
    path.write_text("#!/bin/bash\n" + script)
    path.chmod(0o755)


def test_given_kubectl_answers_then_objects_not_found_and_errors_are_told_apart(
    tmp_path, monkeypatch
):
    from rollout.check import ClusterError, Kubectl

    _stub(
        tmp_path,
        "kubectl",
        """
case "$3" in
  there) echo '{"metadata": {"name": "there"}, "args": "'"$*"'"}' ;;
  gone) echo 'Error from server (NotFound): cronjobs.batch "gone" not found' >&2; exit 1 ;;
  lost) echo 'error: context "prod" was not found for specified context: prod' >&2; exit 1 ;;
  nofile) echo 'W1206 stat /k/config: no such file or directory' >&2
          echo 'error: Config not found: /k/config' >&2; exit 1 ;;
  *) echo 'error: context "prod" does not exist' >&2; exit 1 ;;
esac
""",
    )
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    cluster = Kubectl(kubeconfig="/k/config", context="prod")
    found = cluster.get("cronjob", "moontv", "there")
    assert found["metadata"]["name"] == "there"
    assert found["args"] == (
        "get cronjob there -o json --namespace moontv --kubeconfig /k/config --context prod"
    )
    assert cluster.get("cronjob", "moontv", "gone") is None
    with pytest.raises(ClusterError, match='context "prod" does not exist'):
        cluster.get("cronjob", "moontv", "other")
    # A kubeconfig problem says "not found" too: it is an error, never a missing object.
    with pytest.raises(ClusterError, match='context "prod" was not found'):
        cluster.get("cronjob", "moontv", "lost")
    with pytest.raises(ClusterError, match="Config not found: /k/config"):
        cluster.get("cronjob", "moontv", "nofile")


def test_given_a_kubeconfig_without_the_context_then_backup_age_fails_instead_of_skipping(
    tmp_path, monkeypatch
):
    from rollout.check import Kubectl

    _stub(
        tmp_path,
        "kubectl",
        "echo 'error: context \"staging\" was not found for specified context: staging' >&2\n"
        "exit 1\n",
    )
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    results = run_checks(
        [check_pre.check_backup_age], target(config("staging"), Kubectl(context="staging"))
    )
    assert [(r.status, r.reason) for r in results] == [
        (
            FAIL,
            'cannot read the cluster: error: context "staging" was not found for specified '
            "context: staging",
        )
    ]


def test_given_the_policy_preview_then_its_failure_tail_or_none_is_returned(tmp_path, monkeypatch):
    from rollout.check import policy_preview

    _stub(
        tmp_path,
        "pulumi",
        'echo "$*" > "$(dirname "$0")/args"\n'
        '[[ -f "$(dirname "$0")/fail" ]] && { echo "mandatory: moontv-prod-digest" >&2; exit 1; }\n'
        "exit 0\n",
    )
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    work = tmp_path / "project"
    work.mkdir()
    assert policy_preview("staging", work) is None
    args = (tmp_path / "args").read_text().split()
    assert args[:3] == ["preview", "--stack", "staging"]
    assert args[-2:] == ["--policy-pack", str(work / "policy")]
    (tmp_path / "fail").write_text("")
    assert policy_preview("staging", work) == "mandatory: moontv-prod-digest"
    monkeypatch.setenv("PATH", "/nonexistent")
    assert "not on PATH" in (policy_preview("staging", work) or "")


def test_given_a_track_scaled_below_the_stack_then_tracks_ready_fails_even_if_all_are_ready():
    cfg = config(
        "staging",
        autoscaling={"enabled": False},
        release={"strategy": "canary", "canary": {"version": "v100.1.1", "weight": 10}},
    )
    cluster = FakeCluster(
        deployment("moontv-staging", "moontv-stable", 2, 2),
        deployment("moontv-staging", "moontv-canary", 0, 0),
    )
    result = check_post.check_tracks_ready(target(cfg, cluster))
    assert result.status == FAIL
    assert result.reason == "moontv-canary: scaled to 0, the stack declares 2"


def test_given_the_workflow_then_pre_and_post_read_the_same_storage():
    workflow = yaml.safe_load((ROOT / ".github/workflows/deployment.yml").read_text())
    for job in ("staging", "testing", "prod"):
        steps = {s.get("name"): s for s in workflow["jobs"][job]["steps"]}
        pre = steps["Deploy gate (rollout check pre)"]["env"]["MOONTV_STORAGE_URL"]
        post = steps["Deploy gate (rollout check post)"]["env"]["MOONTV_STORAGE_URL"]
        assert pre == post == f"${{{{ secrets.{job.upper()}_STORAGE_URL }}}}"


def test_given_the_gate_modules_then_the_checks_import_the_shared_types_not_the_runner():
    import ast

    for module in ("check_pre", "check_post"):
        tree = ast.parse((ROOT / "rollout" / f"{module}.py").read_text())
        imported = {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
        } | {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        assert "rollout.check" not in imported, module
        assert not {"rollout.check_pre", "rollout.check_post"} & imported, module
        assert "rollout.check_types" in imported, module


@pytest.mark.parametrize("stack", ["testing", "prod"])
def test_given_a_shipped_blue_green_stack_then_check_pre_accepts_its_first_release(stack):
    shipped = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    ns = shipped["moontv:namespace"]
    # Before the candidate is staged (only `blue` is set) and after (green holds it).
    for release in (
        shipped["moontv:release"],
        {
            **shipped["moontv:release"],
            "blueGreen": {
                **shipped["moontv:release"]["blueGreen"],
                "green": "v100.1.2@sha256:" + "ab" * 32,
            },
        },
    ):
        cfg = {**shipped, "moontv:release": release}
        empty = check_pre.check_rollback_target(target(cfg, FakeCluster()))
        assert empty.status == PASS, empty.reason
        assert empty.reason.startswith(f"first release: namespace {ns} does not exist yet")
        running = check_pre.check_rollback_target(target(cfg, FakeCluster(namespace(ns))))
        assert running.status == PASS, running.reason
        active = release["blueGreen"]["blue"]
        assert running.reason.startswith(f"blue-green: blue keeps {active} serving")


def test_given_an_unset_optional_storage_secret_then_check_pre_skips_the_snapshot(
    tmp_path, capsys, monkeypatch
):
    # A workflow step's `MOONTV_STORAGE_URL: ${{ secrets.X_STORAGE_URL }}` is "" when unset.
    from rollout.cli import parser

    monkeypatch.setenv("MOONTV_STORAGE_URL", "")
    args = parser().parse_args(["check", "pre", "--stack", "staging"])
    assert args.storage_url is None
    monkeypatch.setenv("MOONTV_STORAGE_URL", "redis://:pw@127.0.0.1:1")
    assert parser().parse_args(["check", "pre"]).storage_url == "redis://:pw@127.0.0.1:1"


def test_given_a_branch_build_live_then_smoke_passes_naming_the_version_it_did_not_compare():
    from tests.helpers import LocalServer, QuietHandler

    class Site(QuietHandler):
        def _answer(self) -> None:
            body = {"Version": "100.1.2"} if self.path == "/api/server-config" else {}
            self.reply(200, "application/json", json.dumps(body).encode())

        do_GET = do_POST = _answer

    server = LocalServer(Site)
    digest = "sha256:" + "d" * 64
    try:
        cfg = config("staging", image={"repository": "ghcr.io/acme/moontv", "tag": "main",
                                       "digest": digest})
        branch = check_post.check_smoke(
            target(cfg, url=f"http://{server.address}", owner_password="pw")
        )
        pinned = check_post.check_smoke(
            target(cfg, url=f"http://{server.address}", owner_password="pw",
                   expect_version="100.1.3")
        )
    finally:
        server.stop()
    assert branch.status == PASS, branch.reason
    assert branch.reason.endswith(
        "version 100.1.2; the tag main names no release: not compared (--expect-version compares)"
    )
    assert pinned.status == FAIL
    assert pinned.reason == "/api/server-config reports version 100.1.2, intended 100.1.3"
