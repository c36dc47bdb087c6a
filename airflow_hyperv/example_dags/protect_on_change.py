"""Protect a VM when it is about to be changed: event-driven, from the host's Hyper-V event log.

The Asset ``hyperv-events/hv-01`` is watched by ``HyperVEventTrigger`` (one watcher per host): a VM
that was shut down or turned off (maintenance is about to start) fires one asset event per event-log
record, and each run protects the VMs named in its
triggering events — verify, checkpoint (a stopped VM gets an offline checkpoint: nothing to
quiesce), export, keep three exports, merge. A manual run can name VMs in its conf:
``{"vms": ["<vm id or name>", ...]}``. See docs/events.md.

The provider never triggers itself: failed checkpoints are not change events (its own ProductionOnly
attempts emit them), and the watcher drops events of VMs that are gone or are the restore test's
isolated copy (``protectable_only``).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Asset, AssetWatcher, task, task_group

from airflow_hyperv.authoring.protect import build_protection_chain
from airflow_hyperv.hyperv.events import CHANGE_KINDS
from airflow_hyperv.triggers.events import HyperVEventTrigger  # no transport code: hooks load in run()

CONN = "hyperv_hv_01"
EXPORT_ROOT = "D:\\Backups\\on-change"

# [START howto_asset_watcher]
hv01_changes = Asset(
    name="hyperv-events/hv-01",
    uri="hyperv://hv-01/events",
    watchers=[
        AssetWatcher(
            name="hv-01-vm-changes",
            trigger=HyperVEventTrigger(
                hyperv_conn_id=CONN, kinds=sorted(CHANGE_KINDS), poll_interval=30, protectable_only=True
            ),
        )
    ],
)
# [END howto_asset_watcher]

with DAG(
    dag_id="protect_on_change",
    schedule=[hv01_changes],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": pendulum.duration(minutes=1)},
    tags=["hyperv", "backup", "event-driven"],
    doc_md=__doc__,
) as dag:

    @task
    def changed_vms(**context) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
        """One entry per VM named by the triggering events (several events of one VM: one entry)."""
        wanted: list[str] = list((context["dag_run"].conf or {}).get("vms") or [])
        for events in (context.get("triggering_asset_events") or {}).values():
            for event in events:
                payload = (event.extra or {}).get("payload") or {}
                if payload.get("vm_id") and payload.get("kind") in CHANGE_KINDS:
                    wanted.append(payload["vm_id"])
        unique = list(dict.fromkeys(v.lower() if len(v) == 36 else v for v in wanted))
        print(f"VMs to protect: {unique or 'none'}")
        return [{"vm": v} for v in unique]

    @task_group(group_id="protect")
    def protect(vm: str) -> None:
        build_protection_chain(
            vm,
            policy="fallback",
            export_root=EXPORT_ROOT,
            keep_exports=3,
            hyperv_conn_id=CONN,
            pool="hyperv_hv_01",
        )

    protect.expand_kwargs(changed_vms())
