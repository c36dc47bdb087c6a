"""The protection report inside Airflow 3's UI: a FastAPI app mounted by the api-server under
``/hyperv-report`` serving the newest page the ``protection_report`` DAG wrote, and a nav link to it
(``external_views``). Register it with ``[project.entry-points."airflow.plugins"]``
``hyperv = "airflow_hyperv.plugins.report_view:HyperVReportPlugin"`` or by placing a file that
imports it in the plugins folder."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from airflow_hyperv.reporting.html import REPORT_FILE, report_dir

URL_PREFIX = "/hyperv-report"

app = FastAPI(title="Hyper-V protection report")


@app.get("/", response_class=HTMLResponse)
def protection_report() -> HTMLResponse:
    path = report_dir() / REPORT_FILE
    if not path.is_file():
        return HTMLResponse(
            "<!DOCTYPE html><title>Hyper-V protection report</title><p>No report yet: run the "
            "<code>protection_report</code> DAG.</p>",
            status_code=404,
        )
    return HTMLResponse(path.read_text(encoding="utf-8"))


class HyperVReportPlugin(AirflowPlugin):
    name = "hyperv_protection_report"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Hyper-V protection report"}]
    external_views = [
        {
            "name": "Hyper-V protection",
            "href": URL_PREFIX + "/",
            "destination": "nav",
            "category": "browse",
            "url_route": "hyperv-protection",
        }
    ]
