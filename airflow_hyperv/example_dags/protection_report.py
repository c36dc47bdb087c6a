"""Fleet protection report: per VM the last application-consistent checkpoint, the last verified
export and its age, the last successful restore test, and which VMs are out of policy.

Reads the provider's asset events (exports through the ``hyperv-exports`` alias, restore tests
through ``hyperv-restore-tests``), writes a self-contained HTML page with an inline SVG chart to
``$AIRFLOW_HYPERV_REPORT_DIR`` (default ``$AIRFLOW_HOME/hyperv-reports``), shown in Airflow by the
``hyperv_protection_report`` plugin at ``/hyperv-report/`` (nav: Browse → Hyper-V protection).
"""

from __future__ import annotations

import os
from pathlib import Path

import pendulum
from airflow.sdk import DAG, AssetAlias, task

from airflow_hyperv.operators.export import EXPORT_ALIAS

RESTORE_ALIAS = "hyperv-restore-tests"  # airflow_hyperv.operators.restore_verification.RESTORE_ALIAS
# Every VM of the nightly inventory is in the report, protected or not (the nightly DAG's inventory).
INVENTORY = Path(
    os.environ.get("AIRFLOW_HYPERV_INVENTORY", Path(__file__).parent / "inventory" / "nightly.yaml")
)

with DAG(
    dag_id="protection_report",
    schedule="30 7 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["hyperv", "report"],
    doc_md=__doc__,
) as dag:

    @task(inlets=[AssetAlias(name=EXPORT_ALIAS), AssetAlias(name=RESTORE_ALIAS)])
    def report(**context) -> list[dict]:  # type: ignore[no-untyped-def]
        import datetime as dt

        from airflow.sdk import Variable

        from airflow_hyperv.authoring.inventory import VARIABLE, load, vms_for_host
        from airflow_hyperv.reporting.fleet_report import LAST_OUTCOMES_VARIABLE, collect, rows_to_dicts
        from airflow_hyperv.reporting.html import REPORT_FILE, render_html, report_dir

        variable = Variable.get(VARIABLE, default=None)
        expected = [
            (host.name, vm["vm"])
            for host in load(INVENTORY).hosts
            for vm in vms_for_host(INVENTORY, host.name, variable)
        ]
        # What the newest nightly run did with each VM (refused, skipped, failed), when there is one.
        last = Variable.get(LAST_OUTCOMES_VARIABLE, default=None, deserialize_json=True)
        inlet_events = context["inlet_events"]
        exports = list(inlet_events[AssetAlias(name=EXPORT_ALIAS)])
        restores = list(inlet_events[AssetAlias(name=RESTORE_ALIAS)])
        now = dt.datetime.now(dt.timezone.utc)
        rows = collect(
            exports,
            restores,
            now=now,
            expected_vms=expected,
            last_outcomes=last if isinstance(last, list) else [],
        )
        folder = report_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / REPORT_FILE
        path.write_text(render_html(rows, now=now), encoding="utf-8")
        print(f"Protection report of {len(rows)} VM(s) written to {path}")
        return rows_to_dicts(rows, now)

    report()
