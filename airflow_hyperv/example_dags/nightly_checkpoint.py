"""Nightly checkpoint of a whole Hyper-V fleet.

Per host: the VM list (Variable ``hyperv_inventory`` or dags/inventory/nightly.yaml) is mapped over a
task group that verifies, checkpoints (production, or the per-VM fallback policy), exports, keeps
``keep_exports`` verified exports, and merges the checkpoint back whatever failed. One Airflow pool
per host caps concurrent work there; a host's ``queue`` (if the inventory names one) sends all its
tasks to the workers of its site. A final task reports every VM.
"""

from __future__ import annotations

import os
from pathlib import Path

import pendulum
from airflow.sdk import DAG, TriggerRule, task, task_group

from airflow_hyperv.authoring.inventory import VARIABLE, HostEntry, load
from airflow_hyperv.authoring.protect import build_protection_chain

INVENTORY = Path(
    os.environ.get("AIRFLOW_HYPERV_INVENTORY", Path(__file__).parent / "inventory" / "nightly.yaml")
)
inventory = load(INVENTORY)

with DAG(
    dag_id="nightly_checkpoint",
    schedule=inventory.schedule,
    start_date=pendulum.datetime(2026, 1, 1, tz=inventory.timezone),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": pendulum.duration(minutes=2)},
    tags=["hyperv", "backup"],
    doc_md=__doc__,
) as dag:
    # [START howto_protect_group]
    def protect_group(host: HostEntry):  # type: ignore[no-untyped-def]
        """A mapped task group per host (a factory, so each group closes over its own host)."""

        @task(task_id=f"{host.group_id}_vms", **host.task_options)
        def list_vms() -> list[dict[str, str]]:
            from airflow.sdk import Variable

            from airflow_hyperv.authoring.inventory import vms_for_host

            return vms_for_host(INVENTORY, host.name, Variable.get(VARIABLE, default=None))

        merges = []

        @task_group(group_id=host.group_id)
        def protect(vm: str, policy: str) -> None:
            tasks = build_protection_chain(
                vm,
                policy=policy,
                export_root=host.export_root,
                keep_exports=inventory.keep_exports,
                hyperv_conn_id=host.conn_id,
                pool=host.pool,
                queue=host.queue,  # the host's site: its workers run every task of the chain
            )
            merges.append(tasks["merge"])

        protect.expand_kwargs(list_vms())
        return merges[0]  # a group's downstream does not wait for its teardown; the report must

    merges = [protect_group(host) for host in inventory.hosts]
    # [END howto_protect_group]

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def report(**context) -> list[dict]:  # type: ignore[no-untyped-def]
        from airflow.sdk.exceptions import AirflowFailException

        from airflow_hyperv.reporting.run_report import collect_report, failed_rows, render_table

        rows = collect_report(context["ti"], [(h.group_id, h.name) for h in inventory.hosts])
        print(render_table(rows))
        context["ti"].xcom_push(key="report", value=rows)  # kept even when this task fails below
        # The fleet report (protection_report DAG) shows why a VM was not protected last night.
        from airflow.sdk import Variable

        from airflow_hyperv.reporting.fleet_report import LAST_OUTCOMES_VARIABLE, outcome_summary

        Variable.set(LAST_OUTCOMES_VARIABLE, outcome_summary(rows), serialize_json=True)
        if failed := failed_rows(rows):
            # The run fails when a VM is not protected as its policy asks: never report success.
            raise AirflowFailException(
                f"{len(failed)} VM(s) not protected: "
                + "; ".join(f"{r['vm']}: {r['outcome']}" for r in failed)
            )
        return rows

    merges >> report()
