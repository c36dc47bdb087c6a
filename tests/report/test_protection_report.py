"""The protection report: what it concludes from asset events, its HTML structure, the plugin view,
and (when Chromium is installed) that a headless browser renders it."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import tempfile
import types
from html.parser import HTMLParser
from pathlib import Path

import pytest

from airflow_hyperv.reporting.fleet_report import collect
from airflow_hyperv.reporting.html import REPORT_FILE, render_html

NOW = dt.datetime(2026, 3, 10, 8, 0, tzinfo=dt.timezone.utc)


def ev(**extra):
    return types.SimpleNamespace(extra=extra, timestamp=extra.pop("ts", None))


def export(vm, stamp, consistency="application", host="hv-01"):
    return ev(
        vm_id=f"id-{vm}", vm_name=vm, host=host, consistency=consistency, total_bytes=10,
        checkpoint_name=f"airflow-hyperv {stamp} 0123456789ab", path=f"D:\\Backups\\id-{vm}\\{stamp}-0123456789ab",
        files=[{"path": "x", "length": 1, "sha256": "AA"}],
    )  # fmt: skip


def restore(vm, when, outcome="restorable", host="hv-01"):
    return ev(vm_id=f"id-{vm}", vm_name=vm, host=host, outcome=outcome, tested_at=when)


def sample():
    exports = [
        export("dc-01", "20260310T0100Z"),
        export("dc-01", "20260309T0100Z"),
        export("app-01", "20260310T0100Z", consistency="crash"),
        export("app-01", "20260302T0100Z"),
        export("file-01", "20260306T0100Z", host="hv-02"),
    ]
    restores = [
        restore("dc-01", "2026-03-09T09:00:00+00:00"),
        restore("app-01", "2026-02-01T09:00:00+00:00"),
        restore("file-01", "2026-03-09T09:00:00+00:00", outcome="failed"),
    ]
    return collect(exports, restores, now=NOW, expected_vms=[("hv-02", "build-01")])


def test_conclusions_per_vm():
    rows = {r.vm_name: r for r in sample()}
    dc, app, file_, build = rows["dc-01"], rows["app-01"], rows["file-01"], rows["build-01"]
    assert dc.in_policy and dc.last_export == dt.datetime(2026, 3, 10, 1, 0, tzinfo=dt.timezone.utc)
    assert app.last_export_consistency == "crash"  # newest export fell back
    assert app.last_app_consistent == dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.timezone.utc)
    assert any("application-consistent" in p for p in app.problems) and any(
        "restore test" in p for p in app.problems
    )
    assert (
        file_.last_restore_test is None and "never restore-tested" in file_.problems
    )  # a failed test is no proof
    assert any("h old" in p for p in file_.problems)
    assert build.problems[0] == "no verified export"
    assert [r.vm_name for r in sample()][-1] == "dc-01"  # out-of-policy VMs first


class Structure(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.rows: list[dict[str, str]] = []
        self.ids: dict[str, str] = {}
        self._id: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "tr" and "data-vm" in a:
            self.rows.append({"vm": a["data-vm"] or "", "class": a.get("class") or ""})
        self._id = a.get("id")

    def handle_data(self, data):
        if self._id and data.strip():
            self.ids[self._id] = data.strip()
            self._id = None


def test_html_structure_and_chart():
    page = render_html(sample(), now=NOW)
    parsed = Structure()
    parsed.feed(page)
    assert "script" not in parsed.tags and "http" not in page.replace("http://www.w3.org/2000/svg", "")
    assert parsed.tags.count("svg") == 1 and parsed.tags.count("rect") == 3  # one bar per VM with an export
    assert parsed.ids["vm-count"] == "4" and parsed.ids["out-count"] == "3"
    assert {r["vm"]: r["class"] for r in parsed.rows} == {
        "app-01": "out", "file-01": "out", "build-01": "out", "dc-01": "ok",
    }  # fmt: skip
    assert "OUT OF POLICY" in page and "policy 26 h" in page and "no export" in page


def test_the_plugin_view_refuses_a_caller_without_the_uis_login():
    from fastapi.testclient import TestClient

    from airflow_hyperv.plugins.report_view import HyperVReportPlugin, app

    client = TestClient(app)
    assert client.get("/").status_code == 401  # no session cookie, no bearer token
    view = HyperVReportPlugin.external_views[0]
    assert not view["href"].startswith(("/", "http"))  # relative: the UI's base URL applies
    assert HyperVReportPlugin.fastapi_apps[0]["url_prefix"] == "/" + view["href"].rstrip("/")


def test_the_stored_rows_render_the_same_page():
    from airflow_hyperv.reporting.fleet_report import rows_from_dicts, rows_to_dicts

    rows = sample()
    assert render_html(rows_from_dicts(rows_to_dicts(rows, NOW)), now=NOW) == render_html(rows, now=NOW)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def screenshot(html_path: Path, png: Path, browser: str) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", "--hide-scrollbars", "--window-size=1100,760",
                f"--screenshot={png}", html_path.as_uri(),
            ],
            check=True, capture_output=True, timeout=90,
        )  # fmt: skip


def test_renders_in_headless_chromium(tmp_path):
    browser = chromium()
    if browser is None:
        pytest.skip(
            "Chromium is not installed (apt-get install chromium); the HTML structure is tested above"
        )
    page = tmp_path / REPORT_FILE
    page.write_text(render_html(sample(), now=NOW))
    png = tmp_path / "report.png"
    screenshot(page, png, browser)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000  # a real, non-blank render


if __name__ == "__main__":  # regenerate docs/protection-report.png
    out = Path(__file__).parents[2] / "docs" / "protection-report.png"
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / REPORT_FILE
        page.write_text(render_html(sample(), now=NOW))
        screenshot(page, out, chromium() or "chromium")
    print(out)


def test_every_inventory_vm_is_in_the_report_with_why_it_is_not_protected(fleet_dags, tmp_path, monkeypatch):
    """After a nightly run on the example fleet, the fleet report lists all seven inventory VMs: the
    refused (file-01) and skipped (build-01) ones too, each with what its last nightly run did."""
    monkeypatch.setenv("AIRFLOW_HYPERV_REPORT_DIR", str(tmp_path))
    nightly = fleet_dags("nightly_checkpoint").test()
    assert str(nightly.state) == "failed"  # file-01 is refused under policy require: the run says so
    report = fleet_dags("protection_report").test()
    assert str(report.state) == "success"
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        value = (
            session.query(XComModel)
            .filter_by(dag_id="protection_report", run_id=report.run_id, task_id="report", key="return_value")
            .one()
        )
        every = XComModel.deserialize_value(value)
    # The test session's DB may hold other tests' export events too (the emulated cluster's VMs, some of
    # the same names): those are listed as well, each under its own host. Keep the example fleet's rows.
    rows = {r["vm"]: r for r in every if r["host"] in {"hv-01", "hv-02"}}
    assert {"dc-01", "sql-01", "web-01", "app-01", "build-01", "legacy-01", "file-01"} <= set(rows)
    assert any(p.startswith("last protection run: refused") for p in rows["file-01"]["problems"]), rows
    assert any(p.startswith("last protection run: skipped") for p in rows["build-01"]["problems"]), rows
    assert not rows["file-01"]["in_policy"] and not rows["build-01"]["in_policy"]
    assert rows["sql-01"]["last_export"], rows["sql-01"]  # protected VMs carry their export
    page = (tmp_path / "protection-report.html").read_text()
    assert 'data-vm="file-01"' in page and 'data-vm="build-01"' in page
    # what the plugin view shows: the newest report rows in the metadata database, not the file
    from airflow_hyperv.plugins.report_view import newest_report
    from airflow_hyperv.reporting.fleet_report import rows_from_dicts

    with create_session() as session:
        found = newest_report(session, "protection_report")
    assert found is not None
    served = render_html(rows_from_dicts(found[0]), now=found[1])
    assert (
        'data-vm="file-01"' in served and 'data-vm="build-01"' in served and "last protection run" in served
    )
