"""Shared fixtures: a fresh emulated fleet per test, reached with the real pypsrp client."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support.dags import copy_example_dags, import_file, protect_dag_source, set_pools, write_dag
from tests.support.emulated import settings_for, uri_for

# Airflow reads its home and database at import: give the test session its own, before any import.
_HOME = Path(tempfile.mkdtemp(prefix="airflow-hyperv-tests-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_HOME / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME}/airflow.db"
(_HOME / "dags").mkdir()


@pytest.fixture
def emulator(tmp_path):
    from hyperv_emulator.api import Emulator

    with Emulator(root_dir=tmp_path / "hosts", auth="basic", time_scale=1000.0) as emu:
        yield emu


@pytest.fixture
def hook(emulator):
    from airflow_hyperv.hooks.hyperv import HyperVHook

    hv = HyperVHook(settings=settings_for(emulator, "hv-01"))
    hv.retry_wait_multiplier = 0.01  # keep backoff short in tests; the policy itself is unchanged
    hv.retry_wait_max = 0.05
    with hv:
        yield hv


@pytest.fixture(scope="session")
def airflow_db() -> None:
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, timeout=300
    )


@pytest.fixture
def dag_factory(airflow_db, emulator, monkeypatch):
    """Write a one-VM protection DAG into the dags folder, import it, and hand it back."""
    monkeypatch.setenv("AIRFLOW_CONN_HYPERV_DEFAULT", uri_for(emulator, "hv-01"))
    monkeypatch.setenv("AIRFLOW_CONN_HV_02", uri_for(emulator, "hv-02"))

    def make(dag_id: str, **protect: object):
        protect.setdefault("poll_interval", 0.1)
        return write_dag(dag_id, protect_dag_source(dag_id, **protect))

    return make


@pytest.fixture
def fleet_dags(airflow_db, emulator, monkeypatch):
    """The example DAGs in the test dags folder, with connections and pools for the example fleet."""
    folder = copy_example_dags()
    monkeypatch.setenv("AIRFLOW_CONN_HYPERV_HV_01", uri_for(emulator, "hv-01"))
    monkeypatch.setenv("AIRFLOW_CONN_HYPERV_HV_02", uri_for(emulator, "hv-02"))
    set_pools({"hyperv_hv_01": 2, "hyperv_hv_02": 1})

    def load(name: str):
        return import_file(folder / f"{name}.py").dag

    return load
