"""The deployer identity of one environment (docs/least-privilege.md): run by a cluster admin.

``pulumi -C deploy/deployer up --stack staging`` makes the namespace of the app stack
``staging`` and, in it, the ServiceAccount ``moontv-deployer`` with the narrowest Role the app
program needs; ``tools/deployer-kubeconfig.sh`` then writes the kubeconfig CI deploys with.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pulumi

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: components/

from components import settings  # noqa: E402
from components.errors import ConfigError  # noqa: E402


def main() -> None:
    from components.kubernetes import provider
    from components.kubernetes.deployer import Deployer, DeployerArgs

    config = settings.load_deployer()
    target = settings.KubernetesSettings(context=config.kubernetes.context,
                                         kubeconfig=config.kubernetes.kubeconfig)
    deployer = Deployer("moontv-deployer", DeployerArgs(
        namespace=config.namespace, instance=pulumi.get_stack()),
        opts=pulumi.ResourceOptions(providers=[provider("kubernetes", target)]))
    pulumi.export("namespace", deployer.namespace)
    pulumi.export("serviceAccount", deployer.service_account)
    pulumi.export("role", deployer.role)
    pulumi.export("clusterRole", deployer.cluster_role)


if __name__ == "__main__":
    try:
        main()
    except ConfigError as exc:
        pulumi.log.error(str(exc))
        sys.exit(1)
