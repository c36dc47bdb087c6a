"""The provider's metadata as Airflow reads it: valid, and a connection form a user can save."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import airflow
import jsonschema
import pytest

from airflow_hyperv.get_provider_info import get_provider_info
from airflow_hyperv.hooks.connection import ConnectionSettings

NUMBER_FIELDS = (
    "operation_timeout",
    "read_timeout",
    "connection_timeout",
    "retry_attempts",
    "retry_max_seconds",
)


def _connection_type() -> dict:
    return next(c for c in get_provider_info()["connection-types"] if c["connection-type"] == "hyperv")


def test_provider_info_matches_airflows_schema():
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_the_connection_type_is_named_hyper_v():
    assert _connection_type()["hook-name"] == "Hyper-V"


def test_every_number_field_has_the_hooks_default_so_the_form_can_be_saved():
    conn_fields = _connection_type()["conn-fields"]
    defaults = {f.name: f.default for f in fields(ConnectionSettings)}
    for name in NUMBER_FIELDS:
        schema = conn_fields[name]["schema"]
        assert schema["default"] == defaults[name], name
        assert "null" in schema["type"], f"{name}: an emptied field must still be valid"


def test_emptied_number_fields_mean_the_defaults():
    settings = ConnectionSettings.from_connection(
        host="hv-01", port=None, login="u", password="p", extra={name: None for name in NUMBER_FIELDS}
    )
    assert (settings.operation_timeout, settings.retry_attempts, settings.retry_max_seconds) == (
        20.0,
        4,
        60.0,
    )


def test_the_key_path_field_is_not_masked_as_a_password():
    # certificate_key_pem holds a file path; masking it hides what a user typed without protecting anything
    assert "format" not in _connection_type()["conn-fields"]["certificate_key_pem"]["schema"]


def test_every_operator_module_listed_is_importable_under_its_current_name():
    import importlib

    modules = [m for o in get_provider_info()["operators"] for m in o["python-modules"]]
    assert "airflow_hyperv.operators.restore_verification" in modules
    assert not any(m.endswith("restore_test") for m in modules)  # the old name is only an alias
    for module in modules:
        importlib.import_module(module)


def test_the_trigger_list_names_the_module_of_every_trigger_class():
    import importlib
    import inspect
    import pkgutil

    from airflow.triggers.base import BaseTrigger

    import airflow_hyperv.triggers as package

    listed = {m for t in get_provider_info()["triggers"] for m in t["python-modules"]}
    found = set()
    for info in pkgutil.iter_modules(package.__path__, f"{package.__name__}."):
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(cls, BaseTrigger)
                and cls.__module__ == module.__name__
                and not inspect.isabstract(cls)
            ):
                found.add(cls.__module__)
    assert found == {"airflow_hyperv.triggers.hyperv", "airflow_hyperv.triggers.events"}
    assert found <= listed


def test_every_sensor_module_is_listed_and_holds_a_sensor():
    import importlib
    import inspect

    from airflow.sdk.bases.sensor import BaseSensorOperator

    modules = [m for s in get_provider_info()["sensors"] for m in s["python-modules"]]
    sensors = {
        name
        for module in modules
        for name, cls in inspect.getmembers(importlib.import_module(module), inspect.isclass)
        if issubclass(cls, BaseSensorOperator) and cls.__module__ == module
    }
    assert sensors == {"HyperVCheckpointMergedSensor", "HyperVVMStateSensor"}


def test_hyperv_asset_uris_are_sanitized_by_the_declared_handler():
    import uuid

    import pytest
    from airflow.sdk import Asset

    (entry,) = get_provider_info()["asset-uris"]
    assert entry == {"schemes": ["hyperv"], "handler": "airflow_hyperv.hyperv.assets.sanitize_uri"}
    vm = uuid.UUID("6f1c1bde-6f0e-4f5e-9a57-0123456789ab")
    upper = f"hyperv://hv-01/vms/{str(vm).upper()}/exports"
    assert Asset(name="a", uri=upper).uri == f"hyperv://hv-01/vms/{vm}/exports"  # the Id in lower case
    assert Asset(name="b", uri="hyperv://hv-01/events").uri == "hyperv://hv-01/events"
    for bad in (
        "hyperv://hv-01/vms/not-a-guid/exports",
        "hyperv://hv-01/snapshots",
        f"hyperv://hv-01/vms/{vm}/exports?x=1",
        "hyperv://hv-01/",
    ):
        with pytest.raises(ValueError):
            Asset(name="c", uri=bad)


def test_the_hyperv_config_section_declares_what_the_provider_reads(monkeypatch, tmp_path):
    from airflow_hyperv import config

    options = get_provider_info()["config"]["hyperv"]["options"]
    assert set(options) == {
        "report_dir", "report_dag_id", "async_max_threads", "wait_error_budget", "merge_defer_after",
        "export_resume_before_end",
    }  # fmt: skip
    assert float(options["merge_defer_after"]["default"]) == config.merge_defer_after()
    assert float(options["export_resume_before_end"]["default"]) == config.export_resume_before_end()
    assert options["async_max_threads"]["default"] == str(config.async_max_threads())
    assert options["wait_error_budget"]["default"] == str(config.wait_error_budget())
    monkeypatch.setenv("AIRFLOW__HYPERV__WAIT_ERROR_BUDGET", "9")
    monkeypatch.setenv("AIRFLOW__HYPERV__ASYNC_MAX_THREADS", "3")
    monkeypatch.setenv("AIRFLOW__HYPERV__REPORT_DIR", str(tmp_path))
    assert (config.wait_error_budget(), config.async_max_threads(), config.report_dir()) == (9, 3, tmp_path)
    monkeypatch.setenv("AIRFLOW__HYPERV__WAIT_ERROR_BUDGET", "0")
    try:
        config.wait_error_budget()
    except ValueError as exc:
        assert "wait_error_budget" in str(exc)
    else:
        raise AssertionError("a budget of 0 was accepted")
    for option, read in (
        ("merge_defer_after", config.merge_defer_after),
        ("export_resume_before_end", config.export_resume_before_end),
    ):
        monkeypatch.setenv(f"AIRFLOW__HYPERV__{option.upper()}", "0")
        assert read() == 0.0  # 0 is allowed: defer at once / hand back only at the end
        for bad in ("-1", "soon"):
            monkeypatch.setenv(f"AIRFLOW__HYPERV__{option.upper()}", bad)
            with pytest.raises(ValueError, match=option):
                read()


def test_the_report_plugin_is_declared_as_the_entry_point_registers_it():
    from importlib.metadata import entry_points

    (plugin,) = get_provider_info()["plugins"]
    registered = {
        e.value for e in entry_points(group="airflow.plugins") if e.value.startswith("airflow_hyperv")
    }
    assert registered == {
        plugin["plugin-class"].rsplit(".", 1)[0] + ":" + plugin["plugin-class"].rsplit(".", 1)[1]
    }
