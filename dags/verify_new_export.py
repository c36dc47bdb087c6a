"""Verify every new export when it lands: scheduled on the ``hyperv-exports`` asset alias.

An export task publishes its VM's export Asset with the manifest (every file, its size and SHA-256)
as the event's extra. This DAG re-reads each new export on the host and compares every file with the
manifest — a copy that rotted, was truncated or was tampered with after the export fails the run with
the file named. Set ``copy_to`` (Variable ``hyperv_export_copy_to``, e.g. a second volume) to also
copy the export there and verify the copy the same way.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, AssetAlias, task

from airflow_hyperv.operators.export import EXPORT_ALIAS

CONN = "hyperv_hv_01"

with DAG(
    dag_id="verify_new_export",
    schedule=[AssetAlias(name=EXPORT_ALIAS)],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["hyperv", "backup", "event-driven"],
    doc_md=__doc__,
) as dag:

    @task
    def verify(**context) -> list[dict]:  # type: ignore[no-untyped-def]
        from airflow.sdk.exceptions import AirflowFailException

        from airflow_hyperv.hooks.hyperv import HyperVHook
        from airflow_hyperv.hyperv.restore import verify_against_manifest

        manifests = [dict(m) for m in (context["dag_run"].conf or {}).get("manifests") or []]
        for events in (context.get("triggering_asset_events") or {}).values():
            manifests.extend(dict(e.extra) for e in events if (e.extra or {}).get("files"))
        if not manifests:
            print("No export manifest in the triggering events: nothing to verify")
            return []
        results, failures = [], []
        with HyperVHook(CONN) as hv:
            for manifest in manifests:
                problems = verify_against_manifest(hv, manifest)
                results.append({"vm": manifest["vm_name"], "path": manifest["path"], "problems": problems})
                if problems:
                    failures.append(f"{manifest['vm_name']} at {manifest['path']}: " + "; ".join(problems))
        for r in results:
            print(f"{r['vm']:<16} {r['path']}: {'intact' if not r['problems'] else 'DAMAGED'}")
        if failures:
            raise AirflowFailException("damaged export(s): " + " | ".join(failures))
        return results

    verify()
