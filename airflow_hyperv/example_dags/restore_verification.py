"""Restore verification: prove the newest verified export of each VM restores and boots.

Daily, for each VM listed: take its newest verified export (the newest event of the
``hyperv-exports`` alias, whose extra is the export manifest; or ``{"export": <manifest>}`` in a
manual run's conf), check every file against the manifest, import it as a copy with a new Id
(``Import-VM -Copy -GenerateNewId``) into ``RESTORE_ROOT``, disconnect its network, boot it, wait for
a healthy heartbeat, record the result (asset ``hyperv-restore-test/<host>/<vm>``, read by the
protection report) and remove the copy and its files whatever happened. A cleanup teardown removes
any copy a crashed worker left behind.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, AssetAlias

from airflow_hyperv.operators.export import EXPORT_ALIAS
from airflow_hyperv.operators.restore_verification import (
    HyperVRestoreCleanupOperator,
    HyperVRestoreTestOperator,
)

CONN = "hyperv_hv_01"
RESTORE_ROOT = "D:\\RestoreTests"
VMS = ["web-01"]

with DAG(
    dag_id="restore_verification",
    schedule="0 9 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["hyperv", "backup", "restore-test"],
    doc_md=__doc__,
) as dag:
    # [START howto_operator_hyperv_restore_test]
    cleanup = HyperVRestoreCleanupOperator(task_id="cleanup", restore_root=RESTORE_ROOT, hyperv_conn_id=CONN)
    for name in VMS:
        test = HyperVRestoreTestOperator(
            task_id=f"restore_test_{name.replace('-', '_')}",
            vm=name,
            export="{{ (dag_run.conf or {}).get('export') | tojson }}",
            restore_root=RESTORE_ROOT,
            hyperv_conn_id=CONN,
            inlets=[AssetAlias(name=EXPORT_ALIAS)],
            boot_timeout=900,
            poll_interval=10,
        )
        test >> cleanup
    cleanup.as_teardown()
    # [END howto_operator_hyperv_restore_test]
