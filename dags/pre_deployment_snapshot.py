"""Pre-deployment snapshot: checkpoint a VM, deploy, check health; merge on success, roll back on failure.

checkpoint (setup) -> deploy -> health check -> [restore if anything failed] -> merge (teardown) -> outcome

The deploy and health-check steps are yours: replace ``deploy`` with your release task (it gets the
VM name). The checkpoint is production when the guest can quiesce, else a recorded standard one
(``policy`` param). A failed deployment restores the checkpoint, starts the VM again and waits for
its heartbeat; either way the checkpoint is merged back, and the run ends failed if it rolled back.
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
    rollback = HyperVRestoreCheckpointOperator(
        task_id="rollback",
        vm=vm,
        hyperv_conn_id=CONN,
        trigger_rule=TriggerRule.ONE_FAILED,
        skip_if_missing=True,
    )
    merge = HyperVMergeCheckpointOperator(task_id="merge", vm=vm, hyperv_conn_id=CONN)

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def outcome(**context) -> str:  # type: ignore[no-untyped-def]
        from airflow.sdk.exceptions import AirflowFailException

        ti = context["ti"]
        if not ti.xcom_pull(task_ids="merge"):
            raise AirflowFailException("the checkpoint merge failed: see the merge task (an orphaned AVHDX?)")
        restored = ti.xcom_pull(task_ids="rollback")
        if restored:
            raise AirflowFailException(
                f"deployment failed; {restored['vm_id']} was rolled back to {restored['checkpoint_name']!r} "
                f"and is {restored['state']}"
            )
        if not ti.xcom_pull(task_ids="deploy"):
            raise AirflowFailException(
                "the deployment did not run (see the failed task); nothing was changed"
            )
        return "deployed and healthy; checkpoint merged"

    verify >> checkpoint >> deployed >> healthy >> rollback >> merge
    merge.as_teardown(setups=[checkpoint])
    merge.trigger_rule = TriggerRule.ALL_DONE  # clean up even when the checkpoint task itself failed
    merge >> outcome()
