"""The protection report inside Airflow 3's UI: a FastAPI app mounted by the api-server under
``/hyperv-report`` and a nav link to it (``external_views``, Browse → Hyper-V protection).

The page is rendered from the metadata database, which every Airflow component shares: the rows the
newest run of the report DAG (``[hyperv] report_dag_id``, default ``protection_report``) stored as
its ``report`` task's XCom. It reads no file, so no worker's disk has to be shared with the
api-server. It needs the same login as the UI (the session cookie the UI sets, or a bearer token) and
the right to read that DAG's XComs; without them it answers 401 / 403.

Registered by the package's ``airflow.plugins`` entry point and declared in the provider metadata.
"""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep
from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI, HTTPException, status
from fastapi.responses import HTMLResponse

URL_PREFIX = "/hyperv-report"
REPORT_TASK_ID = "report"

app = FastAPI(title="Hyper-V protection report")


def newest_report(session: Any, dag_id: str) -> tuple[list[dict[str, Any]], dt.datetime] | None:
    """The rows of the newest ``report`` task XCom of ``dag_id`` and when they were stored, or None.

    :param session: a SQLAlchemy session on the metadata database.
    :param dag_id: the report DAG's id.
    """
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    row = session.execute(
        select(XComModel)
        .where(
            XComModel.dag_id == dag_id,
            XComModel.task_id == REPORT_TASK_ID,
            XComModel.key == "return_value",
            XComModel.map_index == -1,
        )
        .order_by(XComModel.timestamp.desc())
        .limit(1)
    ).scalar_one_or_none()
    if row is None:
        return None
    rows = XComModel.deserialize_value(row)
    stored = row.timestamp if row.timestamp.tzinfo else row.timestamp.replace(tzinfo=dt.timezone.utc)
    return (rows if isinstance(rows, list) else []), stored


@app.get("/", response_class=HTMLResponse)
def protection_report(user: GetUserDep, session: SessionDep) -> HTMLResponse:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    from airflow_hyperv.config import report_dag_id
    from airflow_hyperv.reporting.fleet_report import rows_from_dicts
    from airflow_hyperv.reporting.html import render_html

    dag_id = report_dag_id()
    if not get_auth_manager().is_authorized_dag(
        method="GET", access_entity=DagAccessEntity.XCOM, details=DagDetails(id=dag_id), user=user
    ):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"no access to the XComs of {dag_id}")
    found = newest_report(session, dag_id)
    if found is None:
        # A relative link: the app may sit under a base URL path (``[api] base_url``).
        return HTMLResponse(
            "<!DOCTYPE html><title>Hyper-V protection report</title><p>No report yet: run the "
            f'<a href="../dags/{html.escape(dag_id)}"><code>{html.escape(dag_id)}</code></a> DAG.</p>',
            status_code=404,
        )
    rows, stored = found
    return HTMLResponse(render_html(rows_from_dicts(rows), now=stored))


class HyperVReportPlugin(AirflowPlugin):
    name = "hyperv_protection_report"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Hyper-V protection report"}]
    external_views = [
        {
            "name": "Hyper-V protection",
            "href": URL_PREFIX.lstrip("/") + "/",  # relative: resolved against the UI's base URL
            "destination": "nav",
            "category": "browse",
            "url_route": "hyperv-protection",
        }
    ]
