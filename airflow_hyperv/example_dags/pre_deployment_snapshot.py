"""Pre-deployment snapshot: checkpoint a VM, deploy, check health; merge on success, roll back on failure.

checkpoint (setup) -> deploy -> health check -> [restore if anything failed] -> merge (teardown) -> outcome

The deploy and health-check steps are yours: replace ``deploy`` with your release task (it gets the
VM name). The checkpoint is production when the guest can quiesce, else a recorded standard one
(``policy`` param). A failed deployment restores the checkpoint, starts the VM again and waits for
its heartbeat, and the checkpoint is merged back; the run ends failed if it rolled back.

The run is green only when the deployment is healthy. A rollback that fails (or is skipped) keeps
the checkpoint (the merge refuses to remove a rollback point that is still needed) and fails the run
with the exact commands to roll back by hand (``outcome`` says what really happened).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param, TriggerRule, task

from airflow_hyperv.operators.checkpoint import (
    HyperVCreateCheckpointOperator,
    HyperVMergeCheckpointOperator,
    HyperVRestoreCheckpointOperator,
)
from airflow_hyperv.operators.verify import HyperVVerifyOperator
from airflow_hyperv.sensors.vm import HyperVVMStateSensor

CONN = "hyperv_hv_01"

with DAG(
    dag_id="pre_deployment_snapshot",
    schedule=None,  # triggered by the release pipeline
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "vm": Param("web-01", type="string", description="exact VM name or Id"),
        "policy": Param("fallback", enum=["require", "fallback"]),
        "simulate_failure": Param(False, type="boolean", description="demo: make the deploy step fail"),
    },
    tags=["hyperv", "deployment"],
    doc_md=__doc__,
) as dag:
    vm = "{{ params.vm }}"
    verify = HyperVVerifyOperator(task_id="verify", vm=vm, hyperv_conn_id=CONN)
    checkpoint = HyperVCreateCheckpointOperator(
        task_id="checkpoint",
        vm=vm,
        hyperv_conn_id=CONN,
        consistency="application",
        policy="{{ params.policy }}",
    )

    @task
    def deploy(params: dict) -> str:  # type: ignore[type-arg]
        """Your release goes here. The example only pretends (and fails on request)."""
        if params["simulate_failure"]:
            raise RuntimeError(f"deployment to {params['vm']} failed (simulated)")
        return f"release deployed to {params['vm']}"

    deployed = deploy()  # type: ignore[call-arg]
    healthy = HyperVVMStateSensor(
        task_id="health_check", vm=vm, hyperv_conn_id=CONN, target_state="Running", require_heartbeat=True,
        poll_interval=5, timeout=600,
    )  # fmt: skip
    # [START howto_rollback_point]
    rollback = HyperVRestoreCheckpointOperator(
        task_id="rollback",
        vm=vm,
        hyperv_conn_id=CONN,
        trigger_rule=TriggerRule.ONE_FAILED,
        skip_if_missing=True,
    )
    # The checkpoint is the rollback point: merged only when the deployment is healthy or the
    # rollback finished. Otherwise it is kept and the merge fails with the commands to roll back by hand.
    merge = HyperVMergeCheckpointOperator(
        task_id="merge", vm=vm, hyperv_conn_id=CONN, keep_unless_succeeded=("health_check", "rollback")
    )
    # [END howto_rollback_point]

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def outcome(**context) -> str:  # type: ignore[no-untyped-def]
        """Say what really happened; green only when the deployment is healthy and the checkpoint merged."""
        from airflow.sdk.exceptions import AirflowFailException

        ti = context["ti"]
        names = ["checkpoint", "deploy", "health_check", "rollback", "merge"]
        states = (ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id], task_ids=names) or {}).get(
            ti.run_id
        ) or {}
        state = {n: str(states.get(n) or "did not run") for n in names}
        merged = ti.xcom_pull(task_ids="merge") or {}
        merge_part = (
            "checkpoint merged"
            if merged.get("merged")
            else "no checkpoint to merge"
            if state["merge"] == "success"
            else f"the checkpoint merge {state['merge']}: see the merge task (an orphaned AVHDX?)"
        )
        if state["health_check"] == "success":
            if state["merge"] != "success":
                raise AirflowFailException(f"deployed and healthy, but {merge_part}")
            return f"deployed and healthy; {merge_part}"
        if state["checkpoint"] != "success":
            raise AirflowFailException(
                f"no checkpoint was taken (checkpoint {state['checkpoint']}); the deployment did not run"
            )
        what = (
            "the deployment failed"
            if state["deploy"] != "success"
            else f"deployed, but the health check did not pass ({state['health_check']})"
        )
        restored = ti.xcom_pull(task_ids="rollback")
        if state["rollback"] == "success" and restored:
            raise AirflowFailException(
                f"{what}; {restored['vm_id']} was rolled back to {restored['checkpoint_name']!r} and is "
                f"{restored['state']}; {merge_part}"
            )
        kept = ti.xcom_pull(task_ids="merge", key="rollback_point")
        if kept:
            raise AirflowFailException(
                f"{what}; the rollback {state['rollback']}: NOT rolled back. The rollback point "
                f"{kept['checkpoint_name']!r} ({kept['checkpoint_id']}) is kept. To roll back by hand, on the "
                "host:\n  " + "\n  ".join(kept["commands"])
            )
        raise AirflowFailException(
            f"{what}; the rollback {state['rollback']} and no rollback point was found ({merge_part})"
        )

    # [START howto_pre_deployment_wiring]
    verify >> checkpoint >> deployed >> healthy >> rollback >> merge
    merge.as_teardown(setups=[checkpoint])
    merge.trigger_rule = TriggerRule.ALL_DONE  # clean up even when the checkpoint task itself failed
    # [END howto_pre_deployment_wiring]
    merge >> outcome()
