"""Shared fixtures: a fresh emulated fleet per test, reached with the real pypsrp client."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from airflow_hyperv.example_dags import EXAMPLE_DAGS
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
    folder = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])

    def make(dag_id: str, **protect: object):
        protect.setdefault("poll_interval", 0.1)
        args = ", ".join(f"{k}={v!r}" for k, v in protect.items())
        source = textwrap.dedent(
            f"""
            import pendulum
            from airflow.sdk import DAG
            from airflow_hyperv.authoring.protect import protect_vm

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


DAGS = EXAMPLE_DAGS


@pytest.fixture
def fleet_dags(airflow_db, emulator, monkeypatch):
    """The example DAGs in the test dags folder, with connections and pools for the example fleet."""
    folder = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    shutil.copytree(DAGS, folder, dirs_exist_ok=True)
    monkeypatch.setenv("AIRFLOW_CONN_HYPERV_HV_01", uri_for(emulator, "hv-01"))
    monkeypatch.setenv("AIRFLOW_CONN_HYPERV_HV_02", uri_for(emulator, "hv-02"))
    for pool, slots in (("hyperv_hv_01", "2"), ("hyperv_hv_02", "1")):
        subprocess.run(
            [sys.executable, "-m", "airflow", "pools", "set", pool, slots, "Hyper-V host", "--include-deferred"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.dag

    return load
