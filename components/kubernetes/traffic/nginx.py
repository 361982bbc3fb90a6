"""ingress-nginx provider: per host of the route table, a main Ingress for the first backend, a
canary Ingress per other backend and an Ingress that rewrites the blocked paths.

ingress-nginx rules respected: one canary Ingress per host/path, same host and path as the main
one; ``canary-by-header`` (and ``-by-cookie``) values ``always``/``never`` override the weight,
header before cookie, as the route table orders them; a canary Ingress at weight 0 is kept (it
still serves the overrides). The blocked paths get ``rewrite-target``: the app answers 404.
With TLS, HTTP is redirected to HTTPS.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import naming
from components.kubernetes.traffic import SERVICE_PORT, RouteArgs, service
from components.release import Route

ANNOTATION = "nginx.ingress.kubernetes.io"


def _path(path: str, name: str) -> dict[str, Any]:
    backend = {"name": name, "port": {"number": SERVICE_PORT}}
    return {"path": path, "pathType": "Prefix", "backend": {"service": backend}}


def canary_annotations(route: Route, track: str, weight: int) -> dict[str, str]:
    annotations = {f"{ANNOTATION}/canary": "true", f"{ANNOTATION}/canary-weight": str(weight)}
    for override in route.overrides:
        if override.track == track:
            annotations[f"{ANNOTATION}/canary-by-{override.kind}"] = override.name
    return annotations


class NginxRouter:
    def declare(self, name: str, args: RouteArgs,
                opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        t, table = args.traffic, args.table
        if any(route.affinity for route in table.routes):  # settings refuse it first, in words
            raise ValueError("the nginx provider cannot render track affinity")
        made: list[pulumi.Resource] = []
        annotations: dict[str, str] = {}
        tls: list[k8s.networking.v1.IngressTLSArgsDict] = []
        if t.tls.issuer:
            annotations["cert-manager.io/cluster-issuer"] = t.tls.issuer
        if t.tls.secret_name or t.tls.issuer:
            # The app's `auth` cookie has no Secure flag: plain HTTP is redirected, always. HSTS
            # is ingress-nginx's default on HTTPS (controller ConfigMap `hsts`); a per-Ingress
            # header would need a snippet annotation, which default controllers reject.
            annotations[f"{ANNOTATION}/force-ssl-redirect"] = "true"
            hosts = [route.host for route in table.routes]
            tls = [{"hosts": hosts, "secretName": t.tls.secret_name or "moontv-tls"}]

        def ingress(resource: str, ingress_name: str, host: str, paths: list[dict[str, Any]],
                    extra: dict[str, str]) -> None:
            spec: k8s.networking.v1.IngressSpecArgsDict = {
                "ingressClassName": t.ingress_class,
                "rules": [{"host": host, "http": {"paths": paths}}],
            }
            if tls:
                spec["tls"] = tls
            made.append(k8s.networking.v1.Ingress(
                resource,
                metadata={"name": ingress_name, "namespace": args.namespace,
                          "labels": args.labels, "annotations": {**annotations, **extra}},
                spec=spec,
                opts=opts,
            ))

        for route in table.routes:
            resource = name if route.role == "public" else f"{name}-{route.role}"
            first, *others = route.backends
            ingress(resource, route.name, route.host, [_path("/", service(route, first))], {})
            ingress(f"{resource}-blocked", naming.resource_name(route.name, "blocked"),
                    route.host, [_path(p, service(route, first)) for p in table.blocked],
                    {f"{ANNOTATION}/rewrite-target": table.not_found})
            for backend in others:
                ingress(f"{resource}-{backend.track}", naming.resource_name(route.name,
                        backend.track), route.host, [_path("/", service(route, backend))],
                        canary_annotations(route, backend.track, backend.weight or 0))
        return made
