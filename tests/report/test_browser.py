"""The UI in a real headless browser (Debian's Chromium, installed by scripts/chromium.sh from
`make test`): the DAG list, the Hyper-V connection form with its fields (and saving it), and the
protection report view, against a real ``airflow api-server`` with the SimpleAuthManager and a
password (no all-admins shortcut), on its own SQLite metadata database.

The report view is served from the metadata database: the report DAG runs once (``airflow dags
test``), its file output goes to a folder that is deleted before the api-server starts, and the
api-server is pointed at another, empty one.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from airflow_hyperv.authoring.inventory import load
from airflow_hyperv.example_dags import EXAMPLE_DAGS
from airflow_hyperv.get_provider_info import get_provider_info
from tests.support.airflow_stack import free_port, tail
from tests.support.browser import INSTALL_HINT, Page, chromium, headless_chromium

BROWSER = chromium()
pytestmark = pytest.mark.skipif(BROWSER is None, reason=INSTALL_HINT)
USER, PASSWORD = "admin", secrets.token_urlsafe(12)
INVENTORY = Path(EXAMPLE_DAGS) / "inventory" / "nightly.yaml"


@dataclass
class UI:
    base: str
    token: str  # the JWT the UI's login hands out (POST /auth/token), set as the UI's own cookie
    report_file_dir: Path


def _env(home: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    base = f"http://127.0.0.1:{port}"
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": base,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
            "AIRFLOW__HYPERV__REPORT_DIR": str(home / "report-files"),
        }
    )
    return env


def _airflow(env: dict[str, str], home: Path, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "airflow", *args],
        env=env, cwd=home, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, (
        f"airflow {' '.join(args)}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UI]:
    home = tmp_path_factory.mktemp("ui-airflow")
    port = free_port()
    env = _env(home, port)
    (home / "passwords.json").write_text(json.dumps({USER: PASSWORD}))
    shutil.copytree(EXAMPLE_DAGS, home / "dags", ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
    _airflow(env, home, "db", "migrate")
    _airflow(env, home, "dags", "reserialize")
    _airflow(env, home, "dags", "test", "protection_report")  # its report rows, in the metadata DB
    assert (home / "report-files" / "protection-report.html").is_file()  # the DAG's own file output
    shutil.rmtree(home / "report-files")  # ... which the view must not need
    env["AIRFLOW__HYPERV__REPORT_DIR"] = str(home / "api-server-has-no-report-files")
    log = home / "api-server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "airflow", "api-server"],
            env=env, cwd=home, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, f"the api-server exited with {proc.returncode}:\n{tail(log)}"
            try:
                if requests.get(f"{base}/api/v2/monitor/health", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, f"the api-server did not answer within 180s:\n{tail(log)}"
            time.sleep(1)
        token = requests.post(
            f"{base}/auth/token", json={"username": USER, "password": PASSWORD}, timeout=30
        ).json()["access_token"]
        yield UI(base, token, home / "report-files")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def page(ui: UI) -> Iterator[Page]:
    assert BROWSER is not None
    with headless_chromium(BROWSER) as tab:
        yield tab


def _log_in(page: Page, ui: UI) -> None:
    page.send("Network.setCookie", name="_token", value=ui.token, url=ui.base + "/")


def _inventory_vms() -> set[str]:
    return {vm["vm"] for host in load(INVENTORY).hosts for vm in host.vms}


def test_the_report_view_needs_the_uis_login(ui: UI, page: Page):
    page.goto(f"{ui.base}/hyperv-report/")
    assert "Not authenticated" in page.wait("document.body.innerText", what="the refusal")
    assert requests.get(f"{ui.base}/hyperv-report/", timeout=30).status_code == 401
    authorized = {"Authorization": f"Bearer {ui.token}"}
    assert requests.get(f"{ui.base}/hyperv-report/", headers=authorized, timeout=30).status_code == 200


def test_the_dag_list_shows_every_example_dag(ui: UI, page: Page):
    expected = {"nightly_checkpoint", "protection_report", "maintenance_checkpoint", "protect_on_change"}
    _log_in(page, ui)
    page.goto(f"{ui.base}/dags")
    checks = " && ".join(f"document.body.innerText.includes({json.dumps(d)})" for d in sorted(expected))
    page.wait(checks, what=f"the DAG list with {sorted(expected)}")


def test_a_hyperv_connection_is_made_and_saved_in_the_form(ui: UI, page: Page):
    conn_type = next(c for c in get_provider_info()["connection-types"] if c["connection-type"] == "hyperv")
    _log_in(page, ui)
    page.goto(f"{ui.base}/connections")
    page.wait("document.body.innerText.includes('Add Connection')", what="the connections page")
    page.click("[...document.querySelectorAll('button')].find(b => b.innerText.trim() === 'Add Connection')")
    page.wait("!!document.querySelector('[role=dialog] input[role=combobox]')", what="the form")
    page.click("document.querySelector('[role=dialog] input[role=combobox]')")
    page.type("Hyper")
    page.wait("[...document.querySelectorAll('[role=option]')].some(o => o.innerText.trim() === 'Hyper-V')",
              what="the connection type Hyper-V")  # fmt: skip
    page.click("[...document.querySelectorAll('[role=option]')].find(o => o.innerText.trim() === 'Hyper-V')")
    page.wait("document.querySelector('[role=dialog]').innerText.includes('Hyper-V host')", what="relabels")
    page.click(
        "[...document.querySelectorAll('[role=dialog] button')].find(b => b.innerText.trim() === 'Extra Fields')"
    )
    page.wait("!!document.querySelector('[name=element_retry_max_seconds]')", what="the extra fields")
    form = page.text()
    for name, field in conn_type["conn-fields"].items():
        assert field["label"] in form and field["description"] in form, name
    values = page.js(
        "Object.fromEntries([...document.querySelectorAll('[role=dialog] input[name^=element_]')]"
        ".map(i => [i.name.slice(8), [i.value, i.type]]))"
    )
    assert values["operation_timeout"][0] == "20" and values["retry_attempts"][0] == "4", values
    assert values["certificate_key_pem"][1] != "password", values  # a path, not a secret
    page.click("document.querySelector('[role=dialog] input[name=connection_id]')")
    page.type("hyperv_from_the_form")
    # On a loaded machine a keystroke can land before the field has focus: the id must be in the field
    # (and Save enabled) before Save is pressed, or the form rightly refuses to save.
    page.wait("document.querySelector('[role=dialog] input[name=connection_id]').value === 'hyperv_from_the_form'",
              what="the connection id in its field")  # fmt: skip
    # The form validates a field when it loses focus, and Save stays disabled until then: leave the field
    # as a user would before pressing Save (pressing a disabled Save only works when the re-render
    # that its own mouse-down's blur causes happens to land before the mouse-up).
    page.js("document.activeElement && document.activeElement.blur()")
    save = "[...document.querySelectorAll('[role=dialog] button')].find(b => b.innerText.trim() === 'Save')"
    page.wait(f"!({save}).disabled", what="Save enabled")
    closed = "!document.querySelector('[role=dialog]')"
    page.click(save)

    def saved_now() -> requests.Response:
        return requests.get(
            f"{ui.base}/api/v2/connections/hyperv_from_the_form",
            headers={"Authorization": f"Bearer {ui.token}"}, timeout=30,
        )  # fmt: skip

    # A press that reached the form makes the page POST the connection. On a loaded machine the
    # press itself can be lost (CI once saw the form stay open for 180 s with no sign of a request):
    # press again, as a user would, only while the page has sent no POST and the connection does not exist.
    for _ in range(2):
        try:
            page.wait(closed, what="the form closing after Save", timeout=45)
            break
        except AssertionError:
            posted = [r for r in page.requests_sent("/api/v2/connections") if r.startswith("POST")]
            if posted or saved_now().status_code == 200:
                break
            page.wait(f"!({save}).disabled", what="Save enabled")
            page.click(save)
    try:
        page.wait(closed, what="the form closing after Save", timeout=180)
    except AssertionError as still_open:  # say what the page asked the server, and what it answered
        raise AssertionError(f"{still_open}\nrequests: {page.responses('/api/v2/connections')}") from None
    saved = saved_now()
    # The page's own request is what saved it (this also shows the request watch above sees the POST).
    assert [r for r in page.requests_sent("/api/v2/connections") if r.startswith("POST")], page.responses("")
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert body["conn_type"] == "hyperv", body
    extra = json.loads(body["extra"] or "{}")
    assert extra.get("auth") == "negotiate" and float(extra.get("operation_timeout")) == 20.0, extra


def test_the_report_view_in_the_ui_lists_every_inventory_vm_from_the_metadata_db(ui: UI, page: Page):
    _log_in(page, ui)
    page.goto(f"{ui.base}/plugin/hyperv-protection")  # Browse -> Hyper-V protection
    where = page.wait(
        "document.querySelector('iframe').contentDocument.querySelector('#vms') "
        "&& document.querySelector('iframe').contentWindow.location.href",
        what="the report in the UI's frame",
    )
    assert where == f"{ui.base}/hyperv-report/"  # the relative link, resolved against the UI's base
    shown = set(
        page.js(
            "[...document.querySelector('iframe').contentDocument.querySelectorAll('tr[data-vm]')]"
            ".map(r => r.dataset.vm)"
        )
    )
    assert shown == _inventory_vms(), shown
    assert not ui.report_file_dir.exists()  # served from the metadata database, not a file
