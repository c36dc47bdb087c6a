"""Run DAGs with ``dag.test()`` against the emulator: real Airflow, real pypsrp, real operators."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def airflow_db() -> None:
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, timeout=300
    )


@pytest.fixture
def dag_factory(airflow_db, emulator, monkeypatch):
    """Write a one-VM protection DAG into the dags folder, import it, and hand it back."""
    monkeypatch.setenv("AIRFLOW_CONN_HYPERV_DEFAULT", emulator.connection_uri("hv-01"))
    monkeypatch.setenv("AIRFLOW_CONN_HV_02", emulator.connection_uri("hv-02"))
    folder = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])

    def make(dag_id: str, **protect: object):
        protect.setdefault("poll_interval", 0.1)
        args = ", ".join(f"{k}={v!r}" for k, v in protect.items())
        source = textwrap.dedent(
            f"""
            import pendulum
            from airflow.sdk import DAG
            from airflow_hyperv.operators.protect import protect_vm

            with DAG({dag_id!r}, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
                     catchup=False, default_args={{"retries": 0}}) as dag:
                protect_vm({args})
            """
        )
        path = folder / f"{dag_id}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(dag_id, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.dag

    return make
