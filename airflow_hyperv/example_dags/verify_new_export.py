"""Verify every new export when it lands: scheduled on the ``hyperv-exports`` asset alias.

An export task publishes its VM's export Asset with the manifest (every file, its size and SHA-256)
as the event's extra. This DAG re-reads each new export on the host and compares every file with the
manifest — a copy that rotted, was truncated or was tampered with after the export fails the run with
the file named. Set ``copy_to`` (Variable ``hyperv_export_copy_to``, e.g. a second volume) to also
copy the export there and verify the copy the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

import pendulum
from airflow.sdk import DAG, AssetAlias, task

from airflow_hyperv.operators.export import EXPORT_ALIAS

INVENTORY = Path(
    os.environ.get("AIRFLOW_HYPERV_INVENTORY", Path(__file__).parent / "inventory" / "nightly.yaml")
)

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

        from airflow_hyperv.authoring.inventory import conn_id_for_host
        from airflow_hyperv.hooks.hyperv import HyperVHook

        found = [dict(m) for m in (context["dag_run"].conf or {}).get("manifests") or []]
        for events in (context.get("triggering_asset_events") or {}).values():
            found.extend(dict(e.extra) for e in events if (e.extra or {}).get("files"))
        # An alias event arrives under both the alias and the asset: verify each export once.
        manifests = list({(m.get("host"), m["path"]): m for m in found}.values())
        if not manifests:
            print("No export manifest in the triggering events: nothing to verify")
            return []
        results, failures = [], []
        for manifest in manifests:
            # Each export is checked on the host that wrote it (the manifest names it).
            with HyperVHook(conn_id_for_host(INVENTORY, manifest.get("host", ""))) as hv:
                problems = hv.verify_export(manifest)
            results.append({"vm": manifest["vm_name"], "path": manifest["path"], "problems": problems})
            if problems:
                failures.append(f"{manifest['vm_name']} at {manifest['path']}: " + "; ".join(problems))
        for r in results:
            print(f"{r['vm']:<16} {r['path']}: {'intact' if not r['problems'] else 'DAMAGED'}")
        if failures:
            raise AirflowFailException("damaged export(s): " + " | ".join(failures))
        return results

    verify()
