"""``parse_quantity`` of the Kubernetes Python client, without importing the client.

``import kubernetes.utils.quantity`` runs the ``kubernetes`` package's ``__init__``, which
imports the whole API client: about a quarter of a rendered stack's program start, for one
function that needs nothing but :mod:`decimal`. This loads that one file of the installed
package instead, so the parser stays the client's own.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import cast


def _load() -> Callable[[object], Decimal]:
    package = importlib.util.find_spec("kubernetes")  # finds the package without running it
    if package is None or package.origin is None:
        raise ImportError("the kubernetes Python client is not installed (see requirements.txt)")
    path = Path(package.origin).parent / "utils" / "quantity.py"
    spec = importlib.util.spec_from_file_location("components._kubernetes_quantity", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return cast(Callable[[object], Decimal], module.parse_quantity)


#: ``parse_quantity("250m") == Decimal("0.25")``; raises ``ValueError`` on a bad quantity.
parse_quantity = _load()
