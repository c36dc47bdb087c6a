"""The client's view of an emulated host: connection settings and URIs from the emulator's plain fields."""

from __future__ import annotations

from typing import Any

from airflow_hyperv.hooks.connection import ConnectionSettings, connection_uri


def settings_for(emulator: Any, host: str | None = None, **overrides: Any) -> ConnectionSettings:
    """The hook's settings for one emulated host (the emulator's first host when ``host`` is None)."""
    return ConnectionSettings.from_connection(**emulator.client_connection(host, **overrides).as_fields())


def uri_for(emulator: Any, host: str | None = None, **overrides: Any) -> str:
    """An ``AIRFLOW_CONN_...`` value for one emulated host."""
    return connection_uri(**emulator.client_connection(host, **overrides).as_fields())
