"""Shared fixtures: a fresh emulated fleet per test, reached with the real pypsrp client."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Airflow reads its home and database at import: give the test session its own, before any import.
_HOME = Path(tempfile.mkdtemp(prefix="airflow-hyperv-tests-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_HOME / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME}/airflow.db"
(_HOME / "dags").mkdir()


@pytest.fixture
def emulator(tmp_path):
    from airflow_hyperv.emulator.api import Emulator

    with Emulator(root_dir=tmp_path / "hosts", auth="basic", time_scale=1000.0) as emu:
        yield emu


@pytest.fixture
def hook(emulator):
    from airflow_hyperv.hooks.hyperv import HyperVHook

    hv = HyperVHook(settings=emulator.connection_settings("hv-01"))
    hv.retry_wait_multiplier = 0.01  # keep backoff short in tests; the policy itself is unchanged
    hv.retry_wait_max = 0.05
    with hv:
        yield hv
