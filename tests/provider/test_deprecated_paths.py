"""The old import paths DAG authors use keep working: each re-exports the very objects of the new
module, and warns (DeprecationWarning) when first imported."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

INVENTORY = ("VARIABLE", "HostEntry", "Inventory", "InventoryError", "parse", "load", "vms_for_host",
             "conn_id_for_host")  # fmt: skip
# old module -> {old name: (new module, new name)}
MOVED = {
    "airflow_hyperv.report": {
        "FAILURE_KEY": ("airflow_hyperv.hyperv.outcomes", "FAILURE_KEY"),
        "STEPS": ("airflow_hyperv.hyperv.outcomes", "STEPS"),
        "record_failure": ("airflow_hyperv.operators.failures", "record_failure"),
        "row_for": ("airflow_hyperv.reporting.run_report", "row_for"),
        "collect_report": ("airflow_hyperv.reporting.run_report", "collect_report"),
        "failed_rows": ("airflow_hyperv.reporting.run_report", "failed_rows"),
        "render_table": ("airflow_hyperv.reporting.run_report", "render_table"),
    },
    "airflow_hyperv.protection_report": {
        "Policy": ("airflow_hyperv.reporting.fleet_report", "FreshnessPolicy"),
        "FreshnessPolicy": ("airflow_hyperv.reporting.fleet_report", "FreshnessPolicy"),
        "VMProtection": ("airflow_hyperv.reporting.fleet_report", "VMProtection"),
        "LAST_OUTCOMES_VARIABLE": ("airflow_hyperv.reporting.fleet_report", "LAST_OUTCOMES_VARIABLE"),
        "collect": ("airflow_hyperv.reporting.fleet_report", "collect"),
        "outcome_summary": ("airflow_hyperv.reporting.fleet_report", "outcome_summary"),
        "rows_to_dicts": ("airflow_hyperv.reporting.fleet_report", "rows_to_dicts"),
        "REPORT_FILE": ("airflow_hyperv.reporting.html", "REPORT_FILE"),
        "report_dir": ("airflow_hyperv.reporting.html", "report_dir"),
        "render_html": ("airflow_hyperv.reporting.html", "render_html"),
        "chart_svg": ("airflow_hyperv.reporting.html", "chart_svg"),
    },
    "airflow_hyperv.inventory": {name: ("airflow_hyperv.authoring.inventory", name) for name in INVENTORY},
}


def fresh_import(name: str):  # type: ignore[no-untyped-def]
    """Import ``name`` anew, as an ``import`` statement here would (so a warning names this file)."""
    sys.modules.pop(name, None)
    __import__(name)
    return sys.modules[name]


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_path_warns_and_re_exports_the_same_objects(old):
    with pytest.warns(DeprecationWarning, match=rf"{old} is deprecated") as caught:
        module = fresh_import(old)
    assert all(w.filename == __file__ for w in caught if w.category is DeprecationWarning), [
        w.filename for w in caught
    ]  # the warning points at the code that imports the old path
    for old_name, (new_module, new_name) in MOVED[old].items():
        assert getattr(module, old_name) is getattr(importlib.import_module(new_module), new_name), old_name
    assert set(module.__all__) == set(MOVED[old])


NEW = ("airflow_hyperv.reporting.run_report", "airflow_hyperv.reporting.fleet_report",
       "airflow_hyperv.reporting.html", "airflow_hyperv.authoring.inventory", "airflow_hyperv.authoring.protect",
       "airflow_hyperv.hyperv.outcomes", "airflow_hyperv.operators.failures",
       "airflow_hyperv.plugins.report_view")  # fmt: skip


def test_new_paths_do_not_warn():
    # A fresh interpreter: re-importing the real modules here would give later tests new classes.
    code = "import " + ", ".join(NEW)
    result = subprocess.run(
        [sys.executable, "-W", "error:airflow_hyperv:DeprecationWarning", "-c", code],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_old_operators_path_of_the_chain_warns_and_gives_the_authoring_objects():
    import pytest

    from airflow_hyperv.authoring import protect as authoring
    from airflow_hyperv.operators import protect as operators

    for name in ("protect_vm", "build_protection_chain", "default_group_id"):
        with pytest.warns(DeprecationWarning, match="airflow_hyperv.authoring.protect"):
            assert getattr(operators, name) is getattr(authoring, name)
    with pytest.raises(AttributeError):
        operators.HyperVMergeCheckpointOperator  # noqa: B018 - only the chain builders are forwarded


def test_the_freshness_policy_is_not_the_consistency_policy():
    from airflow_hyperv.hyperv.verify import Policy
    from airflow_hyperv.reporting.fleet_report import FreshnessPolicy

    assert FreshnessPolicy is not Policy and FreshnessPolicy().max_export_age_hours == 26.0
