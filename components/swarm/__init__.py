"""MoonTV on Docker Swarm.

* :mod:`components.swarm.spec` - pure description of the stack (services, secrets, configs).
* :mod:`components.swarm.traefik` - pure Traefik edge configuration (weighted routing).
* :mod:`components.swarm.compose` - the same stack as a ``docker stack deploy`` compose file.
* :mod:`components.swarm.component` - the Pulumi component ``moontv:swarm:MoonTVSwarm``.
* :mod:`components.swarm.preflight` - checks that the Docker engine is reachable and a Swarm.

This package imports nothing itself, so the pure modules stay free of Pulumi.
"""
