"""Deprecated: the fleet inventory moved to ``airflow_hyperv.authoring.inventory``. This module only
re-exports it."""

from __future__ import annotations

import warnings

from airflow_hyperv.authoring.inventory import (
    VARIABLE,
    HostEntry,
    Inventory,
    InventoryError,
    conn_id_for_host,
    load,
    parse,
    vms_for_host,
)

__all__ = [
    "VARIABLE",
    "HostEntry",
    "Inventory",
    "InventoryError",
    "conn_id_for_host",
    "load",
    "parse",
    "vms_for_host",
]

warnings.warn(
    "airflow_hyperv.inventory is deprecated: import from airflow_hyperv.authoring.inventory",
    DeprecationWarning,
    stacklevel=2,
)
