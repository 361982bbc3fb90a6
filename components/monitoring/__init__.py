"""Monitoring for MoonTV: probes, alerts, dashboards, log and trace shipping.

The pure generators (``model``, ``rules``, ``config``, ``dashboard``, ``agents``) import nothing
from Pulumi; the platform components live in ``kubernetes`` and ``swarm``. This package module
stays empty so importing a generator never pulls in Pulumi.
"""
