"""Disconnected-session operations: the real pypsrp client against WSManServer and the tiny CommandHost of tests/support/."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from airflow_hyperv.hooks.connection import ConnectionSettings
from airflow_hyperv.hooks.disconnected import (
    DisconnectedOperation,
    cancel_disconnected,
    poll_disconnected,
    start_disconnected,
)
from airflow_hyperv.hyperv.errors import AuthenticationFailedError, InvalidInputError
from airflow_hyperv.hyperv.pipelines import Pipeline, bound_command, single_statement
from hyperv_emulator.server import WSManServer
from tests.support.command_hosts import PASSWORD, USER, ScriptedHost, hyperv_error
from tests.support.waiting import wait_for

CAP = 0.2  # the server's receive_wait_cap: one Receive long-polls at most this long
DENIED = hyperv_error(
    "The export path is not accessible.", "AccessDenied", "PermissionDenied", "Export-VMSnapshot", "snap"
)


def slow_host() -> ScriptedHost:
    """``Export-X -Ticks N`` sleeps N x CAP then writes one object; ``Early-X`` writes before and after
    sleeping; ``Warn-X`` ends with a non-terminating error; ``Fail-X`` raises a terminating one
    (tests/support/command_hosts.py)."""
    return ScriptedHost(
        "hv1",
        error=DENIED,
        tick=CAP,
        reply=lambda _host, command, params: f"{command}:{params.get('Name', '')}",
    )


@pytest.fixture
def host() -> ScriptedHost:
    return slow_host()


@pytest.fixture
def server(host: ScriptedHost) -> Iterator[WSManServer]:
    with WSManServer(
        {"hv1": host}, username=USER, password=PASSWORD, auth="basic", receive_wait_cap=CAP
    ) as srv:
        yield srv


def settings_for(srv: WSManServer, **extra: object) -> ConnectionSettings:
    """A fresh ConnectionSettings each call, as another process would build from the Airflow connection."""
    base: dict[str, object] = {"auth": "basic", "encryption": "never", "wsman_path": "hv1/wsman"}
    return ConnectionSettings.from_connection(
        host="127.0.0.1", port=srv.port, login=USER, password=PASSWORD, extra=base | extra
    )


def export(ticks: int, name: str = "Export-X") -> Pipeline:
    return single_statement(bound_command(name, Name="snap", Ticks=ticks), label="export")


def travel(op: DisconnectedOperation) -> DisconnectedOperation:
    """Through JSON, as trigger kwargs and XCom carry it."""
    return DisconnectedOperation.from_dict(json.loads(json.dumps(op.to_dict())))


def test_start_poll_running_then_completed_from_another_client(
    server: WSManServer, host: ScriptedHost
) -> None:
    before = server.counters.snapshot()
    op = start_disconnected(settings_for(server), export(5))
    started = server.counters.snapshot() - before
    assert started.by_action == {"Create": 1, "Receive": 1, "Command": 1, "Disconnect": 1}
    assert uuid.UUID(op.shell_id) and uuid.UUID(op.command_id) and op.label == "export"
    assert PASSWORD not in json.dumps(op.to_dict()) and USER not in json.dumps(op.to_dict())
    [shell] = server.service.shells("hv1")
    assert shell.shell_id == op.shell_id and shell.state.name == "DISCONNECTED"

    # A "still running" poll: 5 WS-Man requests (Basic auth: one HTTP request each).
    mid = server.counters.snapshot()
    running = poll_disconnected(settings_for(server), travel(op), wait_seconds=CAP)
    delta = server.counters.snapshot() - mid
    assert running.state == "running" and running.result is None and running.partial is None
    assert not running.finished
    assert delta.by_action == {"Connect": 2, "Receive": 2, "Disconnect": 1}
    assert delta.wsman_requests == 5 and delta.http_requests == 5
    assert "Enumerate" not in server.counters.snapshot().by_action
    assert server.service.shells("hv1")[0].state.name == "DISCONNECTED"  # the work goes on

    # The final poll, from yet another settings/WSMan object: 5 requests, and nothing left on the host.
    assert host.finished.wait(5)
    mid = server.counters.snapshot()
    done = poll_disconnected(settings_for(server), travel(op), wait_seconds=CAP)
    delta = server.counters.snapshot() - mid
    assert done.state == "completed" and done.finished and done.result is not None
    assert done.result.output == ["Export-X:snap"] and not done.result.errors and not done.result.failed
    assert done.result.seconds >= 5 * CAP
    assert delta.by_action == {"Connect": 2, "Receive": 2, "Delete": 1} and delta.wsman_requests == 5
    assert server.service.shells("hv1") == []
    assert poll_disconnected(settings_for(server), op).state == "gone"


def test_one_poll_waits_up_to_wait_seconds(server: WSManServer) -> None:
    op = start_disconnected(settings_for(server), export(2))
    mid = server.counters.snapshot()
    done = poll_disconnected(settings_for(server), op, wait_seconds=5)  # several capped Receives
    assert done.state == "completed" and done.result and done.result.output == ["Export-X:snap"]
    assert (server.counters.snapshot() - mid).by_action["Receive"] >= 3


def test_non_terminating_error_completes_with_errors(server: WSManServer) -> None:
    op = start_disconnected(settings_for(server), export(0, "Warn-X"))
    done = poll_disconnected(settings_for(server), op, wait_seconds=2)
    assert done.state == "completed" and done.result is not None and not done.result.failed
    assert done.result.output == ["Warn-X:snap"]
    [error] = done.result.errors
    assert error.fully_qualified_error_id == DENIED.fully_qualified_error_id
    assert error.category == "PermissionDenied" and error.target_name == "snap"


def test_terminating_error_fails(server: WSManServer) -> None:
    op = start_disconnected(settings_for(server), export(1, "Fail-X"))
    done = poll_disconnected(settings_for(server), op, wait_seconds=2)
    assert done.state == "failed" and done.result is not None and done.result.failed
    assert done.result.output == []
    assert done.result.errors[0].fully_qualified_error_id == DENIED.fully_qualified_error_id
    assert server.service.shells("hv1") == []


def test_output_read_by_a_running_poll_comes_back_as_partial(server: WSManServer) -> None:
    op = start_disconnected(settings_for(server), export(3, "Early-X"))
    running = poll_disconnected(settings_for(server), op, wait_seconds=CAP)
    assert running.state == "running" and running.partial is not None
    assert running.partial.output == ["early"]
    done = poll_disconnected(settings_for(server), op, wait_seconds=5)
    assert done.state == "completed" and done.result and done.result.output == ["Early-X:snap"]


def test_cancel_stops_the_pipeline_and_deletes_the_shell(server: WSManServer, host: ScriptedHost) -> None:
    op = start_disconnected(settings_for(server), export(100))
    mid = server.counters.snapshot()
    assert cancel_disconnected(settings_for(server), op) is True
    assert (server.counters.snapshot() - mid).by_action == {"Connect": 1, "Receive": 1, "Delete": 1}
    wait_for(lambda: host.cancelled, timeout=5)
    assert server.service.shells("hv1") == []
    assert poll_disconnected(settings_for(server), op).state == "gone"
    assert cancel_disconnected(settings_for(server), op) is False


def test_shell_reaped_after_idle_timeout_is_gone(host: ScriptedHost) -> None:
    with WSManServer(
        {"hv1": host}, username=USER, password=PASSWORD, auth="basic", receive_wait_cap=CAP, idle_timeout=0.4
    ) as srv:
        op = start_disconnected(settings_for(srv), export(100))
        wait_for(lambda: not srv.service.shells("hv1"), timeout=5)
        wait_for(lambda: host.cancelled, timeout=5)
        assert poll_disconnected(settings_for(srv), op).state == "gone"
        assert cancel_disconnected(settings_for(srv), op) is False


def test_unknown_command_in_a_live_shell_is_gone(server: WSManServer) -> None:
    op = start_disconnected(settings_for(server), export(100))
    lost = DisconnectedOperation(op.shell_id, str(uuid.uuid4()).upper(), op.label, op.started_at)
    assert poll_disconnected(settings_for(server), lost).state == "gone"
    assert server.service.shells("hv1") == []  # the dedicated shell went with it


def test_start_translates_transport_errors(server: WSManServer) -> None:
    bad = ConnectionSettings.from_connection(
        host="127.0.0.1",
        port=server.port,
        login=USER,
        password="wrong",
        extra={"auth": "basic", "encryption": "never", "wsman_path": "hv1/wsman"},
    )
    with pytest.raises(AuthenticationFailedError) as err:
        start_disconnected(bad, export(1))
    assert "wrong" not in str(err.value)
    assert server.service.shells("hv1") == []


def test_operation_dict_is_validated() -> None:
    op = DisconnectedOperation(str(uuid.uuid4()).upper(), str(uuid.uuid4()).upper(), "export", 12.5)
    assert travel(op) == op
    with pytest.raises(InvalidInputError):
        DisconnectedOperation.from_dict({"shell_id": "x", "command_id": op.command_id})
    with pytest.raises(InvalidInputError):
        DisconnectedOperation.from_dict({"shell_id": op.shell_id})
    with pytest.raises(InvalidInputError):
        DisconnectedOperation.from_dict(["not", "a", "dict"])


def test_ntlm_with_message_encryption(host: ScriptedHost) -> None:
    with WSManServer({"hv1": host}, username=USER, password=PASSWORD, receive_wait_cap=CAP) as srv:
        settings = settings_for(srv, auth="ntlm", encryption="auto")
        op = start_disconnected(settings, export(5))
        mid = srv.counters.snapshot()
        running = poll_disconnected(settings_for(srv, auth="ntlm", encryption="auto"), op, wait_seconds=CAP)
        delta = srv.counters.snapshot() - mid
        assert running.state == "running"
        assert delta.wsman_requests == 5 and delta.http_requests == 5 + 3  # + empty POST and NTLM legs
        assert host.finished.wait(5)
        done = poll_disconnected(settings_for(srv, auth="ntlm", encryption="auto"), op)
        assert done.state == "completed" and done.result and done.result.output == ["Export-X:snap"]
        assert srv.service.shells("hv1") == []
