"""Shared pytest set-up: the repository root on sys.path, and the engine requirement switch."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

REQUIRE_ENGINE = os.environ.get("MOONTV_REQUIRE_ENGINE") == "1"


def skip_or_fail(reason: str) -> None:
    """Skip with ``reason``; under MOONTV_REQUIRE_ENGINE=1 (CI) a missing dependency fails."""
    if REQUIRE_ENGINE:
        pytest.fail(f"MOONTV_REQUIRE_ENGINE=1 but {reason}")
    pytest.skip(reason)
