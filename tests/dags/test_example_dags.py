"""The example DAGs: they parse fast without transport code, and do their jobs under dag.test()."""

from __future__ import annotations

import subprocess
import sys

import pytest

from airflow_hyperv.example_dags import EXAMPLE_DAGS

DAGS = EXAMPLE_DAGS
DAG_FILES = sorted(p.name for p in DAGS.glob("*.py") if p.name != "__init__.py")


def test_dag_files_import_no_transport_code():
    code = (
        "import importlib.util, sys\n"
        f"for name in {DAG_FILES!r}:\n"
        f"    spec = importlib.util.spec_from_file_location(name[:-3], {str(DAGS)!r} + '/' + name)\n"
        "    module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "    assert module.dag.tasks, name\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('pypsrp', 'psrpcore', 'spnego', 'requests')\n"
        "          or m.startswith(('airflow_hyperv.hooks', 'hyperv_emulator', 'airflow_hyperv.triggers'))]\n"
        # An Asset watcher needs its trigger at parse time; that module imports no transport code.
        "loaded = [m for m in loaded if m not in ('airflow_hyperv.triggers', 'airflow_hyperv.triggers.events')]\n"
        "print(loaded)\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.fixture
def airflow_db():
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, timeout=300
    )


def report_rows(dag_run):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(run_id=dag_run.run_id, task_id="report", key="return_value")
            .one_or_none()
        )
        return None if row is None else XComModel.deserialize_value(row)


def test_nightly_protects_the_fleet_and_fails_honestly(fleet_dags, emulator, capsys):
    run = fleet_dags("nightly_checkpoint").test()
    assert str(run.state) == "failed"  # file-01 (policy require, VSS disabled) is refused
    out = capsys.readouterr().out
    assert "refused" in out and "Enable-VMIntegrationService" in out
    outcomes = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) > 3 and parts[0] in ("hv-01", "hv-02"):
            outcomes[parts[1]] = " ".join(parts[3:6])
    assert outcomes["dc-01"].startswith("protected, application-consistent")
    assert outcomes["app-01"].startswith("protected, crash-consistent (fallback)")
    assert outcomes["build-01"].startswith("skipped")
    assert outcomes["file-01"].startswith("refused")
    for host in ("hv-01", "hv-02"):
        model = emulator.host(host)
        model.settle()
        assert all(not model.snapshots(vm) for vm in model.vms()), "a checkpoint was left behind"
    assert emulator.faults.fired == []


def test_pre_deployment_success_merges_and_failure_rolls_back(fleet_dags, emulator):
    dag = fleet_dags("pre_deployment_snapshot")
    ok = dag.test(run_conf={"vm": "web-01", "simulate_failure": False})
    states = {ti.task_id: str(ti.state) for ti in ok.get_task_instances()}
    assert str(ok.state) == "success", states
    assert states["rollback"] == "skipped" and states["merge"] == "success"
    assert not emulator.audit.entries(cmdlet="Restore-VMSnapshot")

    bad = dag.test(run_conf={"vm": "web-01", "simulate_failure": True})
    states = {ti.task_id: str(ti.state) for ti in bad.get_task_instances()}
    assert str(bad.state) == "failed" and states["deploy"] == "failed", states
    assert states["rollback"] == "success" and states["merge"] == "success"
    assert len(emulator.audit.entries(cmdlet="Restore-VMSnapshot")) == 1
    web = next(v for v in emulator.host("hv-01").vms() if v.name == "web-01")
    assert web.state.name == "Running"  # started again after the production checkpoint left it Off
    assert not emulator.host("hv-01").snapshots(web)
