"""Maintenance checkpoint: one VM, operator by operator, around a maintenance step.

verify -> checkpoint (setup) -> export -> maintenance -> health check -> merge (teardown), and
retention after the export, beside the maintenance (nothing that can wait sits before the merge)

The operators ``protect_vm`` wires for you, written out one by one: verify the VM (and the free space
of the export root), take this run's checkpoint (production, or a recorded standard one: policy
``fallback``), export and verify it, keep the newest three verified exports, run the maintenance step
(yours: replace ``maintenance``), wait until the guest answers its heartbeat again, and merge the
checkpoint back whatever failed. Triggered by hand. The documentation's operator snippets
(docs/operators.md) are pulled from this file.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

# [START howto_setup]
from airflow_hyperv.operators.checkpoint import HyperVCreateCheckpointOperator, HyperVMergeCheckpointOperator
from airflow_hyperv.operators.export import HyperVExportCheckpointOperator, HyperVRetentionOperator
from airflow_hyperv.operators.verify import HyperVVerifyOperator
from airflow_hyperv.sensors.vm import HyperVVMStateSensor

VM = "web-01"
CONN = "hyperv_hv_01"
EXPORT_ROOT = "D:\\Backups\\maintenance"
# [END howto_setup]

with DAG(
    dag_id="maintenance_checkpoint",
    schedule=None,  # triggered by hand, before a maintenance window
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["hyperv", "backup", "maintenance"],
    doc_md=__doc__,
) as dag:
    # [START howto_operator_hyperv_verify]
    verify = HyperVVerifyOperator(task_id="verify", vm=VM, hyperv_conn_id=CONN, export_path=EXPORT_ROOT)
    # [END howto_operator_hyperv_verify]

    # [START howto_operator_hyperv_create_checkpoint]
    checkpoint = HyperVCreateCheckpointOperator(
        task_id="checkpoint", vm=VM, hyperv_conn_id=CONN, policy="fallback"
    )
    # [END howto_operator_hyperv_create_checkpoint]

    # [START howto_operator_hyperv_export]
    export = HyperVExportCheckpointOperator(
        task_id="export", vm=VM, hyperv_conn_id=CONN, export_root=EXPORT_ROOT
    )
    retention = HyperVRetentionOperator(
        task_id="retention",
        vm=VM,
        hyperv_conn_id=CONN,
        export_root=EXPORT_ROOT,
        keep_last=3,
        verified_export=export.output,  # deletes nothing unless this run's export was verified
    )
    # [END howto_operator_hyperv_export]

    @task
    def maintenance() -> str:
        """Your maintenance goes here (patching, a configuration change). The example only says so."""
        return f"maintenance of {VM} done"

    work = maintenance()

    # [START howto_sensor_hyperv_vm_state]
    healthy = HyperVVMStateSensor(
        task_id="health_check", vm=VM, hyperv_conn_id=CONN, poll_interval=5, timeout=600
    )
    # [END howto_sensor_hyperv_vm_state]

    # [START howto_operator_hyperv_merge_checkpoint]
    merge = HyperVMergeCheckpointOperator(task_id="merge", vm=VM, hyperv_conn_id=CONN)
    checkpoint >> export >> work >> healthy >> merge
    export >> retention  # old exports go while the maintenance runs: nothing waits on it
    merge.as_teardown(setups=[checkpoint])
    # [END howto_operator_hyperv_merge_checkpoint]

    verify >> checkpoint
