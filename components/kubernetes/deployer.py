"""The deployer identity of one app namespace: what CI may do there, and nothing else.

An admin runs this once per environment (``deploy/deployer``, docs/least-privilege.md). It makes
the app's namespace (Pod Security ``restricted``, as the app stack would) and, in it, the
ServiceAccount ``moontv-deployer`` bound to a Role that manages exactly the kinds the app
program registers (``components/kubernetes/access.py``), plus a read-only ClusterRole for the
preflight's cluster-wide reads (StorageClasses, CRDs). The app stack then runs with
``kubernetes.createNamespace: false`` and a kubeconfig holding a short-lived token of that
ServiceAccount (``tools/deployer-kubeconfig.sh``).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components import naming
from components.kubernetes import access

RBAC_GROUP = "rbac.authorization.k8s.io"


@dataclass(frozen=True)
class DeployerArgs:
    #: The app stack's namespace (its ``moontv:namespace``).
    namespace: str
    #: The app stack's name (the ``app.kubernetes.io/instance`` label of the namespace).
    instance: str
    #: The kinds the deployer manages in the namespace.
    kinds: tuple[str, ...] = access.DEPLOYED_KINDS


class Deployer(pulumi.ComponentResource):
    """Namespace, ServiceAccount ``moontv-deployer``, its Role and read-only ClusterRole."""

    namespace: pulumi.Output[str]
    service_account: pulumi.Output[str]
    role: pulumi.Output[str]
    cluster_role: pulumi.Output[str]

    def __init__(self, name: str, args: DeployerArgs,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("moontv:kubernetes:Deployer", name, None, opts)
        labels = naming.labels(args.instance, "deployer")
        ns = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": args.namespace, "labels": naming.namespace_labels(args.instance)},
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.namespace = ns.metadata.name
        inner = pulumi.ResourceOptions(parent=self, depends_on=[ns])
        meta = {"name": access.SERVICE_ACCOUNT, "namespace": self.namespace, "labels": labels}
        account = k8s.core.v1.ServiceAccount(
            f"{name}-sa", metadata=meta, automount_service_account_token=False, opts=inner)
        role = k8s.rbac.v1.Role(
            f"{name}-role", metadata=meta, rules=access.role_rules(args.kinds), opts=inner)
        subject = {"kind": "ServiceAccount", "name": access.SERVICE_ACCOUNT,
                   "namespace": args.namespace}
        k8s.rbac.v1.RoleBinding(
            f"{name}-role-binding", metadata=meta,
            role_ref={"apiGroup": RBAC_GROUP, "kind": "Role", "name": access.SERVICE_ACCOUNT},
            subjects=[subject], opts=pulumi.ResourceOptions.merge(
                inner, pulumi.ResourceOptions(depends_on=[ns, account, role])))
        # Cluster-scoped names are shared by every namespace: one per deployer.
        cluster_meta = {"name": f"{access.SERVICE_ACCOUNT}-{args.namespace}", "labels": labels}
        cluster_role = k8s.rbac.v1.ClusterRole(
            f"{name}-cluster-read", metadata=cluster_meta, rules=access.cluster_role_rules(),
            opts=pulumi.ResourceOptions(parent=self))
        k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-cluster-read-binding", metadata=cluster_meta,
            role_ref={"apiGroup": RBAC_GROUP, "kind": "ClusterRole",
                      "name": cluster_role.metadata.name},
            subjects=[subject], opts=pulumi.ResourceOptions(parent=self, depends_on=[account]))
        self.service_account = account.metadata.name
        self.role = role.metadata.name
        self.cluster_role = cluster_role.metadata.name
        self.register_outputs({
            "namespace": self.namespace, "serviceAccount": self.service_account,
            "role": self.role, "clusterRole": self.cluster_role,
        })
