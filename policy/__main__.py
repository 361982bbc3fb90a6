"""CrossGuard policy pack ``moontv-policies``: ``pulumi preview --policy-pack policy``.

The rules live in ``rules.py`` (pure functions) and their CrossGuard wrappers in ``pack.py``;
this file only registers them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pulumi_policy import EnforcementLevel, PolicyPack

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pack import POLICIES  # the pack directory is the import root

PolicyPack(
    name="moontv-policies",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=POLICIES,
)
