"""DAG files in the test session's dags folder (tests/conftest.py sets ``AIRFLOW__CORE__DAGS_FOLDER``),
and what the tests read back from a ``dag.test()`` run: each task's state and its recorded failure."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

from airflow_hyperv.example_dags import EXAMPLE_DAGS


def dags_folder() -> Path:
    return Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])


def import_file(path: Path, name: str | None = None) -> ModuleType:
    """Import the Python file at ``path`` as module ``name`` (its stem by default)."""
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_dag(dag_id: str, source: str) -> Any:
    """Write ``source`` as ``<dags folder>/<dag_id>.py`` (``dag.test()`` syncs the bundle), import it and
    return its ``dag``. A file that already holds that source is left as it is."""
    path = dags_folder() / f"{dag_id}.py"
    if not path.exists() or path.read_text() != source:
        path.write_text(source)
    return import_file(path, dag_id).dag


def protect_dag_source(dag_id: str, **protect: object) -> str:
    """A one-VM protection DAG: ``protect_vm(**protect)``, manual runs, no retries."""
    args = ", ".join(f"{k}={v!r}" for k, v in protect.items())
    return textwrap.dedent(
        f"""
        import pendulum
        from airflow.sdk import DAG
        from airflow_hyperv.authoring.protect import protect_vm

        with DAG({dag_id!r}, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
                 catchup=False, default_args={{"retries": 0}}) as dag:
            protect_vm({args})
        """
    )


def set_pools(pools: dict[str, int]) -> None:
    """``airflow pools set`` for each host pool (deferred tasks count, as the example DAGs expect)."""
    for pool, slots in pools.items():
        subprocess.run(
            [sys.executable, "-m", "airflow", "pools", "set", pool, str(slots), "Hyper-V host", "--include-deferred"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip


def copy_example_dags() -> Path:
    """The shipped example DAGs (and their inventory) into the dags folder; the folder."""
    folder = dags_folder()
    shutil.copytree(EXAMPLE_DAGS, folder, dirs_exist_ok=True)
    return folder


def task_states(run: Any) -> dict[str, str]:
    """Each task instance's state by its task id without the group (``protect_dc-01.verify`` ->
    ``verify``)."""
    return {ti.task_id.split(".")[-1]: str(ti.state) for ti in run.get_task_instances()}


def failure_reason(run: Any, task_short: str) -> str:
    """The reason the task's on_failure_callback recorded (airflow_hyperv.operators.failures.record_failure)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from airflow_hyperv.hyperv.outcomes import FAILURE_KEY

    ti = next(t for t in run.get_task_instances() if t.task_id.split(".")[-1] == task_short)
    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id, key=FAILURE_KEY)
            .one_or_none()
        )
        value = None if row is None else XComModel.deserialize_value(row)
    return str((value or {}).get("reason", ""))
