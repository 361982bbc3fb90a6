"""ingress-nginx provider: a main Ingress plus a canary Ingress with canary annotations.

ingress-nginx rules respected: one canary Ingress per host/path, same host and path as the main
one; ``canary-by-header`` values ``always``/``never`` override the weight; a canary Ingress at
weight 0 is kept (it still serves the header override).
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import naming
from components.kubernetes.traffic import CRON_PATH, SERVICE_PORT, RouteArgs, preview_host

ANNOTATION = "nginx.ingress.kubernetes.io"
#: A Service without endpoints: requests for ``/api/cron`` end there with 503.
BLACKHOLE = naming.resource_name(naming.APP, "blackhole")


def _path(path: str, service: str) -> dict[str, Any]:
    return {"path": path, "pathType": "Prefix",
            "backend": {"service": {"name": service, "port": {"number": SERVICE_PORT}}}}


def canary_annotations(weight: int, header: str, cookie: str | None) -> dict[str, str]:
    annotations = {
        f"{ANNOTATION}/canary": "true",
        f"{ANNOTATION}/canary-weight": str(weight),
        f"{ANNOTATION}/canary-by-header": header,
    }
    if cookie:
        annotations[f"{ANNOTATION}/canary-by-cookie"] = cookie
    return annotations


class NginxRouter:
    def declare(self, name: str, args: RouteArgs, parent: pulumi.Resource) -> None:
        t, plan = args.traffic, args.plan
        opts = pulumi.ResourceOptions(parent=parent)
        annotations: dict[str, str] = {}
        tls: list[k8s.networking.v1.IngressTLSArgsDict] = []
        if t.tls.issuer:
            annotations["cert-manager.io/cluster-issuer"] = t.tls.issuer
        if t.tls.secret_name or t.tls.issuer:
            hosts = [t.host] + ([preview_host(t)] if plan.preview else [])
            tls = [{"hosts": hosts, "secretName": t.tls.secret_name or "moontv-tls"}]

        def ingress(
            suffix: str, host: str, paths: list[dict[str, Any]], extra: dict[str, str]
        ) -> None:
            spec: k8s.networking.v1.IngressSpecArgsDict = {
                "ingressClassName": t.ingress_class,
                "rules": [{"host": host, "http": {"paths": paths}}],
            }
            if tls:
                spec["tls"] = tls
            k8s.networking.v1.Ingress(
                f"{name}-{suffix}" if suffix else name,
                metadata={"name": naming.resource_name(naming.APP, suffix),
                          "namespace": args.namespace, "labels": args.labels,
                          "annotations": {**annotations, **extra}},
                spec=spec,
                opts=opts,
            )

        k8s.core.v1.Service(
            f"{name}-blackhole",
            metadata={"name": BLACKHOLE, "namespace": args.namespace, "labels": args.labels},
            spec={"ports": [{"name": "http", "port": SERVICE_PORT}]},
            opts=opts,
        )
        ingress("", t.host, [_path("/", naming.PRIMARY_SERVICE), _path(CRON_PATH, BLACKHOLE)], {})
        canary = next((tr for tr in plan.tracks if tr.role == "canary"), None)
        if canary is not None:
            ingress("canary", t.host, [_path("/", naming.track_name(canary.name))],
                    canary_annotations(canary.weight, plan.header, plan.cookie))
        if plan.preview:
            ingress("preview", preview_host(t),
                    [_path("/", naming.PREVIEW_SERVICE), _path(CRON_PATH, BLACKHOLE)], {})
