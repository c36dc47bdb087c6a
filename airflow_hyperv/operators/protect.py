"""Deprecated: the protection chain's builders moved to ``airflow_hyperv.authoring.protect`` (the
authoring layer, above the operators they wire). Importing a name from here still works, with a
DeprecationWarning; the import happens on first attribute access (PEP 562), so this face never
imports the layer above it at import time."""

from __future__ import annotations

import importlib
import warnings
from typing import Any

__all__ = ["build_protection_chain", "default_group_id", "protect_vm"]  # noqa: F822 - served by __getattr__


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"airflow_hyperv.operators.protect.{name} is deprecated: import it from airflow_hyperv.authoring.protect",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module("airflow_hyperv.authoring.protect"), name)
