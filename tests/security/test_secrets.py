"""The connection's password and the emulator's TLS private key never leave their place.

One protection run over HTTPS (NTLM with channel binding) with a known password, and one run whose
credentials the host rejects; then every place a secret could leak to is searched: the task logs
``dag.test()`` prints, XCom values, rendered template fields, exception text, the protection report,
and ``repr()`` / ``str()`` of the settings and hook objects. Each search has a positive control: the
place searched holds this run's own text. ``dag.test()`` writes no task log files; the real task log
files of real Airflow processes are searched by tests/e2e/test_real_airflow.py
(``test_no_secret_in_any_task_log_file``).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from hyperv_emulator.faults import Fault
from tests.support.dags import protect_dag_source, task_states, write_dag
from tests.support.emulated import settings_for, uri_for

PASSWORD = "S3cr3t-pa55word!"
USERNAME = "hyperv-admin"
VM = "web-01"


@pytest.fixture(scope="module")
def airflow_db() -> None:
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, timeout=300
    )


@pytest.fixture
def tls_emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from hyperv_emulator.api import Emulator

    with Emulator(
        root_dir=tmp_path / "hosts",
        auth="ntlm",
        tls=True,
        username=USERNAME,
        password=PASSWORD,
        time_scale=1000.0,
    ) as emu:
        monkeypatch.setenv("AIRFLOW_CONN_HYPERV_DEFAULT", uri_for(emu, "hv-01"))
        yield emu


def private_key_needles(emu: Any) -> list[str]:
    """The server's private key as it would look if it leaked: PEM lines and the DER in base64."""
    key_path = Path(emu.server.ca_cert_path).with_name("key.pem")
    pem = key_path.read_text()
    body = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    return ["PRIVATE KEY", *body]


def password_needles() -> list[str]:
    basic = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
    return [
        PASSWORD,
        urllib.parse.quote(PASSWORD, safe=""),  # as it sits in an AIRFLOW_CONN_ URI
        urllib.parse.quote_plus(PASSWORD),
        json.dumps(PASSWORD)[1:-1],
        basic,  # an Authorization: Basic header
        base64.b64encode(PASSWORD.encode()).decode(),
        PASSWORD.encode("utf-16-le").hex(),
    ]


def leaks(text: str, needles: list[str]) -> list[str]:
    return [n for n in needles if n and n in text]


def load_dag(dag_id: str) -> Any:
    return write_dag(
        dag_id,
        protect_dag_source(
            dag_id, vm=VM, policy="require", export_root="D:\\Backups", deferrable=True, poll_interval=0.1
        ),
    )


def xcom_texts(run: Any) -> list[str]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=run.dag_id, run_id=run.run_id).all()
        return [
            f"{r.task_id}/{r.key}: {json.dumps(XComModel.deserialize_value(r), default=str)}" for r in rows
        ]


def rendered_texts(run: Any) -> list[str]:
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(RenderedTaskInstanceFields).filter_by(dag_id=run.dag_id, run_id=run.run_id).all()
        return [f"{r.task_id}: {json.dumps(r.rendered_fields, default=str)} {r.k8s_pod_yaml}" for r in rows]


def task_log_files() -> list[Path]:
    logs = Path(os.environ["AIRFLOW_HOME"]) / "logs"
    return sorted(p for p in logs.rglob("*") if p.is_file()) if logs.exists() else []


def report_text(run: Any) -> str:
    """The protection report's row for this VM, as the nightly DAG would render it."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from airflow_hyperv.hyperv.outcomes import FAILURE_KEY, STEPS
    from airflow_hyperv.reporting.run_report import render_table, row_for

    pulled: dict[str, Any] = {"expects_export": True}
    with create_session() as session:
        for step in STEPS:
            for key, slot in (("return_value", step), (FAILURE_KEY, step + "!")):
                row = (
                    session.query(XComModel)
                    .filter_by(run_id=run.run_id, task_id=f"protect_{VM}.{step}", key=key)
                    .one_or_none()
                )
                value = None if row is None else XComModel.deserialize_value(row)
                pulled[slot] = value.get("reason") if key == FAILURE_KEY and value else value
    row = row_for("hv-01", VM, "require", pulled)
    return render_table([row]) + "\n" + json.dumps(row, default=str)


def test_password_and_tls_key_never_leak(airflow_db: None, tls_emulator: Any, capfd: Any) -> None:
    emu = tls_emulator
    needles = password_needles() + private_key_needles(emu)
    # positive control: the needles do find the secret where it legitimately is
    assert leaks(os.environ["AIRFLOW_CONN_HYPERV_DEFAULT"], needles)
    assert leaks(Path(emu.server.ca_cert_path).with_name("key.pem").read_text(), needles)
    dag = load_dag("sec_secrets")

    ok = dag.test()
    ok_states = task_states(ok)
    assert str(ok.state) == "success", ok_states

    # the same DAG once more, with the host rejecting the (right) credentials from the start
    emu.faults.inject(Fault.REJECT_CREDENTIALS, times=None)
    bad = dag.test(logical_date=ok.logical_date + dt.timedelta(days=1))
    bad_states = task_states(bad)
    assert str(bad.state) == "failed" and bad_states["verify"] == "failed", bad_states
    emu.faults.clear()

    out = capfd.readouterr()
    printed = out.out + out.err
    xcoms = xcom_texts(ok) + xcom_texts(bad)
    failure = next((x for x in xcoms if "/hyperv_failure:" in x and ".verify/" in x), "")
    # the rejected run recorded why it failed (the hook turns a rejected login into a no-retry failure)
    assert "rejected the credentials (HTTP 401" in failure, xcoms
    # positive control: what we search is the runs' own task logs, down to the rejected login
    assert f"DagRun Finished: dag_id=sec_secrets, logical_date={bad.logical_date}" in printed
    assert "rejected the credentials (HTTP 401" in printed
    assert leaks(printed, needles) == [], "secret printed by dag.test (stdout/stderr)"
    # dag.test() runs tasks in-process and writes no task log file: nothing to search here, and
    # the e2e test searches real ones. Should it start writing them, search them here too.
    assert task_log_files() == [], "dag.test() wrote task log files: search them for secrets"

    assert leaks("\n".join(xcoms), needles) == [], "secret in an XCom"

    rendered = rendered_texts(ok) + rendered_texts(bad)
    assert rendered, "no rendered template fields were stored"
    assert leaks("\n".join(rendered), needles) == [], "secret in a rendered template field"

    reports = report_text(ok) + report_text(bad)
    assert "failed at verify" in reports
    assert leaks(reports, needles) == [], "secret in the report"


def test_exception_text_never_holds_the_password(tls_emulator: Any) -> None:
    from airflow_hyperv.hooks.hyperv import HyperVHook
    from airflow_hyperv.hyperv.errors import AuthenticationFailedError

    emu = tls_emulator
    needles = password_needles() + private_key_needles(emu)
    emu.faults.inject(Fault.REJECT_CREDENTIALS, times=None)
    hook = HyperVHook(settings=settings_for(emu, "hv-01"))
    with pytest.raises(AuthenticationFailedError) as info, hook:
        hook.get_vm(name=VM)
    emu.faults.clear()
    chain = []
    exc: BaseException | None = info.value
    while exc is not None:  # the whole chain, as a traceback would print it
        chain.append(f"{type(exc).__name__}: {exc!s} {exc!r} {getattr(exc, 'args', '')}")
        exc = exc.__cause__ or exc.__context__
    text = (
        "\n".join(chain)
        + "\n"
        + "".join(info.traceback.format() if hasattr(info.traceback, "format") else "")
    )
    assert leaks(text, needles) == [], text
    # a wrong password is named as such, without echoing either password
    wrong = HyperVHook(settings=settings_for(emu, "hv-01"))
    object.__setattr__(wrong.settings, "password", PASSWORD + "-wrong")
    with pytest.raises(AuthenticationFailedError) as info2, wrong:
        wrong.get_vm(name=VM)
    assert leaks(f"{info2.value!s} {info2.value!r}", [*needles, PASSWORD + "-wrong"]) == []


def test_repr_and_str_of_settings_and_hook(tls_emulator: Any) -> None:
    from airflow_hyperv.hooks.connection import ConnectionSettings
    from airflow_hyperv.hooks.hyperv import HyperVHook

    emu = tls_emulator
    key_pem = Path(emu.server.ca_cert_path).with_name("key.pem").read_text()
    cert_pem = Path(emu.server.ca_cert_path).read_text()
    needles = password_needles() + private_key_needles(emu)
    settings = settings_for(emu, "hv-01")
    # certificate auth carries a client private key in the extra: it must stay out of repr too
    cert_settings = ConnectionSettings.from_connection(
        host="127.0.0.1",
        port=emu.port,
        login=USERNAME,
        password=PASSWORD,
        extra={
            "auth": "certificate",
            "use_tls": True,
            "certificate_pem": cert_pem,
            "certificate_key_pem": key_pem,
        },
    )
    with HyperVHook(settings=settings) as hook:
        hook.get_vm(name=VM)  # an open pool: its WSMan object holds the password
        texts = [
            repr(settings),
            str(settings),
            repr(cert_settings),
            str(cert_settings),
            repr(hook),
            str(hook),
        ]
        texts += [settings.endpoint, cert_settings.endpoint, repr(vars(hook).get("_settings"))]
    for text in texts:
        assert leaks(text, needles) == [], text
