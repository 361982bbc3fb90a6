"""Operator CLI for progressive releases: ``python -m rollout --help``.

It edits ``moontv:release`` (and ``moontv:image`` on promotion) in the stack config through the
Pulumi Automation API and applies every decision with ``pulumi up``.
"""
