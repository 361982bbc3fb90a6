"""components.quantity: the Kubernetes client's quantity parser, loaded without the client."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal

import pytest
from kubernetes.utils.quantity import parse_quantity as client_parse_quantity

from components.quantity import parse_quantity
from tests.conftest import ROOT

QUANTITIES = ("250m", "0.5", "2", "100Ki", "512Mi", "1Gi", "1G", "1e3", "1.5Gi")


@pytest.mark.parametrize("quantity", QUANTITIES)
def test_given_a_quantity_then_it_parses_exactly_as_the_client_does(quantity: str) -> None:
    assert parse_quantity(quantity) == client_parse_quantity(quantity)


def test_given_millicores_and_mebibytes_then_the_values_are_exact() -> None:
    assert parse_quantity("250m") == Decimal("0.25")
    assert parse_quantity("512Mi") == 512 * 2**20


@pytest.mark.parametrize("bad", ["abc", "1Xi", ""])
def test_given_a_bad_quantity_then_value_error(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_quantity(bad)


def test_given_settings_imported_then_the_kubernetes_client_package_is_not() -> None:
    code = "import sys, components.settings; print('kubernetes' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
