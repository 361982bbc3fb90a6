from __future__ import annotations

import functools

import pytest

from tests.program import Run, run_stack

STACKS = ("dev", "staging", "testing", "prod")


@functools.cache
def _cached(stack: str) -> Run:
    return run_stack(stack)


@pytest.fixture(params=STACKS)
def stack_run(request) -> Run:
    """The whole program run under mocks for each shipped stack file (cached: runs are pure)."""
    return _cached(request.param)


@pytest.fixture
def run():
    """Run a stack with overrides: ``run("dev", {"moontv:replicas": 3})``."""
    return run_stack
