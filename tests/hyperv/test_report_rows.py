"""Report rows say what really happened, from the tasks' XComs alone."""

from __future__ import annotations

from airflow_hyperv.example_dags import EXAMPLE_DAGS
from airflow_hyperv.reporting.run_report import failed_rows, render_table, row_for

MADE = {"consistency": "application", "checkpoint_name": "airflow-hyperv 20261125T0100Z 0123456789ab"}
EXPORT = {"path": "D:\\Backups\\x\\20261125T0100Z-0123456789ab", "total_bytes": 3 * 2**30}


def test_a_merge_retry_that_found_nothing_left_is_clean():
    # The first try merged and was then killed; the retry found no checkpoint: nothing is left.
    row = row_for("hv-01", "sql-01", "require", {
        "production_checkpoint": MADE, "export_production": EXPORT, "expects_export": True,
        "merge": {"merged": False, "checkpoint_left": False},
    })  # fmt: skip
    assert row["outcome"] == "protected, application-consistent" and not failed_rows([row])


def test_a_merge_that_did_not_run_is_reported():
    row = row_for("hv-01", "sql-01", "require", {
        "production_checkpoint": MADE, "export_production": EXPORT, "expects_export": True, "merge!": "boom",
    })  # fmt: skip
    assert "failed at merge" in row["outcome"] and failed_rows([row])


def test_refusal_and_skip_and_table():
    refused = row_for("hv-02", "file-01", "require", {"choose!": "AirflowFailException: VSS disabled"})
    skipped = row_for("hv-02", "build-01", "skip", {
        "verify": {"vm_id": "1", "vm_name": "build-01", "host": "hv-02", "state": "Running",
                   "checkpoint_type": "Disabled", "verdict": "blocked",
                   "findings": [{"code": "checkpoints-disabled", "severity": "blocks", "message": "disabled"}]},
    })  # fmt: skip
    assert refused["outcome"] == "refused" and skipped["outcome"] == "skipped"
    assert failed_rows([refused, skipped]) == [refused]
    table = render_table([refused, skipped])
    assert "why: AirflowFailException: VSS disabled" in table and "why: disabled" in table


def test_conn_id_for_host_reads_the_inventory(tmp_path):

    from airflow_hyperv.authoring.inventory import conn_id_for_host

    inventory = EXAMPLE_DAGS / "inventory" / "nightly.yaml"
    assert conn_id_for_host(inventory, "hv-02") == "hyperv_hv_02"
    assert conn_id_for_host(inventory, "HV-09") == "hyperv_hv_09"  # not listed: the naming convention
    assert conn_id_for_host(tmp_path / "missing.yaml", "hv-01") == "hyperv_hv_01"
