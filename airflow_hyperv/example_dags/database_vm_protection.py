"""Database VM protection: application-consistent or nothing.

Every 6 hours each database VM gets a production checkpoint (policy ``require``: a VM whose guest
cannot quiesce fails the run with the reason, it never gets a crash-consistent copy), exported to
the backup share, verified, and only then are older exports beyond ``KEEP`` removed. The checkpoint
is merged back whatever happens.
"""

from __future__ import annotations

# [START howto_protect_vm]
import pendulum
from airflow.sdk import DAG

from airflow_hyperv.authoring.protect import protect_vm

DATABASE_VMS = ["sql-01"]
EXPORT_ROOT = "D:\\Backups\\databases"
KEEP = 7

with DAG(
    dag_id="database_vm_protection",
    schedule="0 */6 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": pendulum.duration(minutes=5)},
    tags=["hyperv", "backup", "database"],
    doc_md=__doc__,
) as dag:
    for name in DATABASE_VMS:
        protect_vm(
            name,
            policy="require",
            export_root=EXPORT_ROOT,
            keep_exports=KEEP,
            hyperv_conn_id="hyperv_hv_01",
            pool="hyperv_hv_01",
        )
# [END howto_protect_vm]
