"""pre_deployment_snapshot says what really happened: green only when the deployment is healthy, and a
rollback point a failed rollback still needs is never merged away (docs/operators.md, pre-deployment)."""

from __future__ import annotations

from typing import Any

import pytest

from hyperv_emulator.faults import Fault


def vm_named(emulator: Any, name: str) -> Any:
    return next(v for v in emulator.host("hv-01").vms() if v.name == name)


def states_of(run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def task_output(capfd: Any) -> str:
    """What the tasks printed (dag.test() writes task logs and their exceptions to the console)."""
    out, err = capfd.readouterr()
    return out + err


def quick_waits(dag: Any) -> None:
    """The health check and the rollback's heartbeat wait give up after a second (600 s / 30 min in the DAG)."""
    health = dag.get_task("health_check")
    health.timeout, health.poke_interval = 1.0, 0.1
    rollback = dag.get_task("rollback")
    rollback.wait_timeout, rollback.poll_interval, rollback.deferrable = 1.0, 0.1, False
    merge = dag.get_task("merge")
    merge.wait_timeout, merge.poll_interval = 5.0, 0.1


@pytest.fixture
def pre_deployment(fleet_dags: Any) -> Any:
    dag = fleet_dags("pre_deployment_snapshot")
    quick_waits(dag)
    return dag


def test_unhealthy_deployment_whose_rollback_fails_keeps_the_rollback_point(
    pre_deployment: Any, emulator: Any, capfd: Any
) -> None:
    """deploy ok -> health fails -> rollback fails: the run fails, the checkpoint stays, and the log
    gives the commands (by Id) to roll back by hand."""
    web = vm_named(emulator, "web-01")
    web.guest_heartbeat = False  # the release broke the guest: no heartbeat, before and after the restore
    run = pre_deployment.test(run_conf={"vm": "web-01", "simulate_failure": False})
    log = task_output(capfd)
    st = states_of(run)
    assert str(run.state) == "failed", st
    assert st["deploy"] == "success" and st["health_check"] == "failed", st
    assert st["rollback"] == "failed" and st["merge"] == "failed" and st["outcome"] == "failed", st
    assert len(emulator.audit.entries(cmdlet="Restore-VMSnapshot")) == 1  # it tried
    assert not emulator.audit.entries(cmdlet="Remove-VMSnapshot")  # the merge never removed it
    kept = emulator.host("hv-01").snapshots(web)
    assert len(kept) == 1, "the rollback point must survive a failed rollback"
    commands = [
        f"Get-VMSnapshot -Id {kept[0].id} | Restore-VMSnapshot -Confirm:$false",
        f"Get-VM -Id {web.id} | Start-VM",
        f"Get-VMSnapshot -Id {kept[0].id} | Remove-VMSnapshot",
    ]
    for command in commands:
        assert command in log, command
    assert "NOT rolled back" in log and "deployed and healthy" not in log


def test_failed_deployment_rolled_back_then_merged_fails_the_run_and_says_so(
    pre_deployment: Any, emulator: Any, capfd: Any
) -> None:
    run = pre_deployment.test(run_conf={"vm": "web-01", "simulate_failure": True})
    log = task_output(capfd)
    st = states_of(run)
    assert str(run.state) == "failed", st
    assert st["deploy"] == "failed" and st["rollback"] == "success" and st["merge"] == "success", st
    web = vm_named(emulator, "web-01")
    assert web.state.name == "Running" and not emulator.host("hv-01").snapshots(web)
    assert "the deployment failed" in log and "was rolled back to" in log
    assert "checkpoint merged" in log


def test_healthy_deployment_whose_merge_fails_is_not_green(
    pre_deployment: Any, emulator: Any, capfd: Any
) -> None:
    emulator.faults.inject(Fault.MERGE_FAILURE, vm="web-01")
    run = pre_deployment.test(run_conf={"vm": "web-01", "simulate_failure": False})
    log = task_output(capfd)
    st = states_of(run)
    assert emulator.faults.count_fired(Fault.MERGE_FAILURE) == 1
    assert str(run.state) == "failed", st
    assert st["health_check"] == "success" and st["rollback"] == "skipped" and st["merge"] == "failed", st
    assert "deployed and healthy, but the checkpoint merge failed" in log
