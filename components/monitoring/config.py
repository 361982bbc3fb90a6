"""Configuration files for Prometheus, Alertmanager and the blackbox exporter (pure).

``prometheus_config`` serves Swarm (and local tests), where no Prometheus Operator exists; on
Kubernetes the operator builds the scrape configuration from Probe/ServiceMonitor objects.
Alertmanager comes in two shapes built from one routing description: a native
``alertmanager.yml`` (Swarm) and the spec of an ``AlertmanagerConfig`` (Kubernetes), whose
receiver URLs are references to a Kubernetes Secret.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from components.monitoring.model import (
    EmailReceiver,
    MonitoringSettings,
    Receiver,
    SlackReceiver,
    WebhookReceiver,
    missing_receiver_secrets,
)
from components.monitoring.rules import (
    CANARY_ERRORS,
    PROBE_JOB,
    PROBE_MODULE,
    STORAGE_JOB,
    TRACK_DOWN,
    TRACK_LATENCY,
)

NULL_RECEIVER = "moontv-null"
GROUP_BY = ("alertname", "track")
GROUP_WAIT, GROUP_INTERVAL, REPEAT_INTERVAL = "30s", "5m", "4h"
PROBE_TIMEOUT = "5s"
# A failing track makes its latency and canary alerts noise: silence them while it is down.
INHIBITED_BY_TRACK_DOWN = (TRACK_LATENCY, CANARY_ERRORS)


def _missing_secrets(receivers: Sequence[Receiver], secrets: Mapping[str, Any]) -> None:
    missing = missing_receiver_secrets(receivers, secrets)
    if missing:
        raise ValueError(
            "monitoring receivers without a secret value: " + ", ".join(missing)
            + " (webhook/slack need their URL, email with authUsername its password)"
        )


def _severity_regex(receiver: Receiver) -> str:
    return "|".join(receiver.severities)


# Receiver keys of a native alertmanager.yml and of an AlertmanagerConfig, which differ in case,
# in `apiURL`, and in holding a Secret reference (`urlSecret`) where the native file has the URL.
NATIVE_KEYS = {
    "webhook": "webhook_configs", "slack": "slack_configs", "email": "email_configs",
    "url": "url", "api_url": "api_url", "resolved": "send_resolved",
    "auth_username": "auth_username", "auth_password": "auth_password",
}
CRD_KEYS = {
    "webhook": "webhookConfigs", "slack": "slackConfigs", "email": "emailConfigs",
    "url": "urlSecret", "api_url": "apiURL", "resolved": "sendResolved",
    "auth_username": "authUsername", "auth_password": "authPassword",
}


def _receiver_entry(
    r: Receiver, secret: Callable[[str], Any], keys: Mapping[str, str]
) -> dict[str, Any]:
    """One receiver; ``secret(name)`` gives its URL or SMTP password (or a reference to it)."""
    entry: dict[str, Any] = {"name": r.name}
    if isinstance(r, WebhookReceiver):
        entry[keys["webhook"]] = [{keys["url"]: secret(r.name), keys["resolved"]: r.send_resolved}]
    elif isinstance(r, SlackReceiver):
        slack: dict[str, Any] = {keys["api_url"]: secret(r.name),
                                 keys["resolved"]: r.send_resolved}
        if r.channel:
            slack["channel"] = r.channel
        entry[keys["slack"]] = [slack]
    elif isinstance(r, EmailReceiver):
        email: dict[str, Any] = {
            "to": r.to, "from": r.from_, "smarthost": r.smarthost,
            keys["resolved"]: r.send_resolved,
        }
        if r.auth_username:
            email[keys["auth_username"]] = r.auth_username
            email[keys["auth_password"]] = secret(r.name)
        entry[keys["email"]] = [email]
    return entry


def alertmanager_config(
    receivers: Sequence[Receiver], secrets: Mapping[str, str]
) -> dict[str, Any]:
    """Native ``alertmanager.yml``. It holds receiver URLs: deliver it as a secret.

    ``secrets`` maps a receiver name to its URL (webhook, slack) or SMTP password (email).
    """
    _missing_secrets(receivers, secrets)
    routes = [
        {
            "receiver": r.name,
            "matchers": [f'severity=~"{_severity_regex(r)}"'],
            "continue": True,
        }
        for r in receivers
    ]
    native = [{"name": NULL_RECEIVER}] + [
        _receiver_entry(r, lambda name: secrets[name], NATIVE_KEYS) for r in receivers
    ]
    return {
        "route": {
            "receiver": NULL_RECEIVER,
            "group_by": list(GROUP_BY),
            "group_wait": GROUP_WAIT,
            "group_interval": GROUP_INTERVAL,
            "repeat_interval": REPEAT_INTERVAL,
            "routes": routes,
        },
        "inhibit_rules": [
            {
                "source_matchers": [f'alertname="{TRACK_DOWN}"'],
                "target_matchers": [f'alertname=~"{"|".join(INHIBITED_BY_TRACK_DOWN)}"'],
                "equal": ["track"],
            }
        ],
        "receivers": native,
    }


def alertmanager_config_spec(receivers: Sequence[Receiver], secret_name: str) -> dict[str, Any]:
    """Spec of a ``monitoring.coreos.com/v1alpha1`` AlertmanagerConfig.

    Secret values are references to keys (the receiver names) of the Secret ``secret_name``.
    """
    def ref(name: str) -> dict[str, str]:
        return {"name": secret_name, "key": name}

    crd_receivers = [{"name": NULL_RECEIVER}] + [
        _receiver_entry(r, ref, CRD_KEYS) for r in receivers
    ]
    return {
        "route": {
            "receiver": NULL_RECEIVER,
            "groupBy": list(GROUP_BY),
            "groupWait": GROUP_WAIT,
            "groupInterval": GROUP_INTERVAL,
            "repeatInterval": REPEAT_INTERVAL,
            "routes": [
                {
                    "receiver": r.name,
                    "matchers": [
                        {"name": "severity", "matchType": "=~", "value": _severity_regex(r)}
                    ],
                    "continue": True,
                }
                for r in receivers
            ],
        },
        "inhibitRules": [
            {
                "sourceMatch": [{"name": "alertname", "matchType": "=", "value": TRACK_DOWN}],
                "targetMatch": [
                    {
                        "name": "alertname",
                        "matchType": "=~",
                        "value": "|".join(INHIBITED_BY_TRACK_DOWN),
                    }
                ],
                "equal": ["track"],
            }
        ],
        "receivers": crd_receivers,
    }


def blackbox_config() -> dict[str, Any]:
    """Blackbox exporter modules: ``http_login`` expects a 2xx from ``/login`` itself.

    Redirects are not followed: without USERNAME/PASSWORD MoonTV redirects every page to
    /warning, which is a broken deployment, not a healthy one.
    """
    return {
        "modules": {
            PROBE_MODULE: {
                "prober": "http",
                "timeout": PROBE_TIMEOUT,
                "http": {
                    "method": "GET",
                    "valid_status_codes": [],  # empty means any 2xx
                    "follow_redirects": False,
                    "preferred_ip_protocol": "ip4",
                    "fail_if_body_not_matches_regexp": ["(?i)<html"],
                },
            }
        }
    }


@dataclass(frozen=True)
class ScrapeTargets:
    """Where Prometheus finds everything on a platform without an operator (host:port)."""

    probes: Mapping[str, str]  # track name -> URL of its /login
    blackbox: str
    alertmanagers: Sequence[str] = ()
    storage_exporter: str | None = None


def prometheus_config(
    targets: ScrapeTargets, settings: MonitoringSettings, rule_files: Sequence[str]
) -> dict[str, Any]:
    """``prometheus.yml``: probe jobs through the blackbox exporter, storage exporter, rules."""
    interval = settings.probe_interval
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": list(rule_files),
        "scrape_configs": [
            {
                "job_name": PROBE_JOB,
                "metrics_path": "/probe",
                "params": {"module": [PROBE_MODULE]},
                "static_configs": [
                    {"targets": [url], "labels": {"track": track}}
                    for track, url in targets.probes.items()
                ],
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": targets.blackbox},
                ],
            }
        ],
    }
    if targets.storage_exporter:
        config["scrape_configs"].append(
            {"job_name": STORAGE_JOB, "static_configs": [{"targets": [targets.storage_exporter]}]}
        )
    if targets.alertmanagers:
        config["alerting"] = {
            "alertmanagers": [{"static_configs": [{"targets": list(targets.alertmanagers)}]}]
        }
    return config
