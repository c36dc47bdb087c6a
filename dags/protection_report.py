"""Fleet protection report: per VM the last application-consistent checkpoint, the last verified
export and its age, the last successful restore test, and which VMs are out of policy.

Reads the provider's asset events (exports through the ``hyperv-exports`` alias, restore tests
through ``hyperv-restore-tests``), writes a self-contained HTML page with an inline SVG chart to
``$AIRFLOW_HYPERV_REPORT_DIR`` (default ``$AIRFLOW_HOME/hyperv-reports``), shown in Airflow by the
``hyperv_protection_report`` plugin at ``/hyperv-report/`` (nav: Browse → Hyper-V protection).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, AssetAlias, task

from airflow_hyperv.operators.export import EXPORT_ALIAS

RESTORE_ALIAS = "hyperv-restore-tests"  # airflow_hyperv.operators.restore_test.RESTORE_ALIAS

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

        from airflow_hyperv.protection_report import (
            REPORT_FILE,
            collect,
            render_html,
            report_dir,
            rows_to_dicts,
        )

        inlet_events = context["inlet_events"]
        exports = list(inlet_events[AssetAlias(name=EXPORT_ALIAS)])
        restores = list(inlet_events[AssetAlias(name=RESTORE_ALIAS)])
        now = dt.datetime.now(dt.timezone.utc)
        rows = collect(exports, restores, now=now)
        folder = report_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / REPORT_FILE
        path.write_text(render_html(rows, now=now), encoding="utf-8")
        print(f"Protection report of {len(rows)} VM(s) written to {path}")
        return rows_to_dicts(rows, now)

    report()
