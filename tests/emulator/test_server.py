"""The real pypsrp client against WSManServer, with the tiny CommandHost of tests/support/command_hosts.py."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests
from pypsrp.exceptions import AuthenticationError, WinRMTransportError, WSManFaultError
from pypsrp.powershell import PowerShell, PSInvocationState, RunspacePool
from pypsrp.wsman import WSMan

from hyperv_emulator.counters import Counters
from hyperv_emulator.faults import Fault, FaultPlan
from hyperv_emulator.server import WSManServer
from tests.support.command_hosts import PASSWORD, USER, ScriptedHost, hyperv_error
from tests.support.waiting import wait_for

NOT_FOUND = hyperv_error(
    'Hyper-V was unable to find a virtual machine with name "nope".',
    "InvalidParameter", "ObjectNotFound", "Get-VM", "nope",
)  # fmt: skip


def echo_host(name: str = "hv1") -> ScriptedHost:
    """Echo-X writes its parameters; Sleep-X writes ``Count`` ticks ``Seconds`` apart; Fail-X fails
    (tests/support/command_hosts.py)."""
    return ScriptedHost(name, error=NOT_FOUND)


@pytest.fixture
def host() -> ScriptedHost:
    return echo_host()


@pytest.fixture
def server(host: ScriptedHost) -> Iterator[WSManServer]:
    with WSManServer(
        {"hv1": host, "hv2": echo_host("hv2")}, username=USER, password=PASSWORD, receive_wait_cap=0.3
    ) as srv:
        yield srv


def wsman(srv: WSManServer, host: str | None = None, **overrides: object) -> WSMan:
    kwargs = srv.pypsrp_kwargs(host) | {"operation_timeout": 5, "read_timeout": 10, "connection_timeout": 5}
    return WSMan(**(kwargs | overrides))


def echo(pool: RunspacePool, name: str = "Echo-X", **params: object) -> PowerShell:
    ps = PowerShell(pool)
    ps.add_cmdlet(name)
    for key, value in params.items():
        ps.add_parameter(key, value)
    return ps


# -- WS-Man actions over NTLM + message encryption ---------------------------------------------------


def test_ntlm_encrypted_round_trip_and_routing(server: WSManServer) -> None:
    with RunspacePool(wsman(server)) as pool:
        assert echo(pool, Name="vm1").invoke() == ["hv1:Echo-X:[('Name', 'vm1')]"]
    with RunspacePool(wsman(server, "hv2")) as pool:
        assert echo(pool, Name="vm2").invoke() == ["hv2:Echo-X:[('Name', 'vm2')]"]
    assert server.counters.snapshot().pools_opened == 2


def test_unknown_path_is_404(server: WSManServer) -> None:
    r = requests.post(f"http://127.0.0.1:{server.port}/nohost/wsman", data=b"x", timeout=5)
    assert r.status_code == 404


def test_streams_and_failed_pipeline(server: WSManServer) -> None:
    with RunspacePool(wsman(server)) as pool:
        ps = echo(pool, "Get-VM", Name="nope")
        out = ps.invoke()
        assert ps.state == PSInvocationState.COMPLETED and not ps.had_errors
        assert (
            out and ps.streams.warning[0].message == "careful" and ps.streams.verbose[0].message == "looking"
        )
        err = ps.streams.error[0]
        assert err.exception is not None
        assert err.fq_error == NOT_FOUND.fully_qualified_error_id
        assert str(err) == NOT_FOUND.message
        assert err.exception.adapted_properties["Message"] == NOT_FOUND.message
        assert (
            err.reason == "VirtualizationException" and err.target_name == "nope" and err.activity == "Get-VM"
        )
        assert err.exception.types[0] == NOT_FOUND.exception_type

        ps = echo(pool, "Fail-X")
        ps.invoke()
        assert ps.state == PSInvocationState.FAILED and ps.had_errors
        assert ps.streams.error[0].fq_error == NOT_FOUND.fully_qualified_error_id

        ps = echo(pool, "Crash-X")
        ps.invoke()
        assert ps.state == PSInvocationState.FAILED and "emulator bug" in str(ps.streams.error[0])

        ps = PowerShell(pool)
        ps.add_script("Get-VM | Stop-VM")
        ps.invoke()
        assert ps.state == PSInvocationState.FAILED


def test_statements_and_large_pipeline_via_send(server: WSManServer, host: ScriptedHost) -> None:
    with RunspacePool(wsman(server)) as pool:
        before = server.counters.snapshot()
        ps = echo(pool, Name="a")
        ps.add_cmdlet("Select-X").add_parameter("First", 1)
        ps.add_statement()
        ps.add_cmdlet("Echo-X").add_parameter("Blob", "x" * 400_000)
        out = ps.invoke()
        delta = server.counters.snapshot() - before
    assert len(out) == 3 and delta.by_action.get("Send", 0) >= 1
    assert [[c.name for c in st] for st in host.seen[-1]] == [["Echo-X", "Select-X"], ["Echo-X"]]
    assert delta.cmdlets_run == 3


def test_slow_pipeline_long_polls_then_stop_signal(server: WSManServer, host: ScriptedHost) -> None:
    with RunspacePool(wsman(server)) as pool:
        before = server.counters.snapshot()
        assert echo(pool, "Sleep-X", Count=2, Seconds=0.4).invoke() == ["tick 0", "tick 1"]
        assert (server.counters.snapshot() - before).by_action["Receive"] >= 2  # TimedOut faults re-polled
        ps = echo(pool, "Sleep-X", Count=100, Seconds=0.05)
        ps.begin_invoke()
        ps.poll_invoke()
        ps.stop()
        assert ps.state == PSInvocationState.STOPPED
        wait_for(lambda: host.cancelled, timeout=3)


def test_request_floor_per_pipeline(server: WSManServer) -> None:
    w = wsman(server)
    before = server.counters.snapshot()
    pool = RunspacePool(w)
    pool.open()
    opened = server.counters.snapshot() - before
    assert opened.by_action == {"Create": 1, "Receive": 1}
    assert opened.http_requests == 2 + 3  # + empty POST, NTLM negotiate and authenticate legs
    mid = server.counters.snapshot()
    echo(pool, "Get-X").invoke()
    run = server.counters.snapshot() - mid
    assert run.by_action == {"Command": 1, "Receive": 1} and run.http_requests == 2 and run.pipelines_run == 1
    mid = server.counters.snapshot()
    pool.close()
    assert (server.counters.snapshot() - mid).by_action == {"Delete": 1}


# -- disconnected sessions ---------------------------------------------------------------------------


def test_disconnect_and_reconnect_same_client(server: WSManServer) -> None:
    pool = RunspacePool(wsman(server))
    pool.open()
    ps = echo(pool, "Sleep-X", Count=3, Seconds=0.1)
    ps.begin_invoke()
    pool.disconnect()
    time.sleep(0.5)  # the pipeline finishes while nobody listens
    pool.connect()  # Reconnect
    ps.connect()  # Connect with CommandId, then Receive until done
    assert ps.output == ["tick 0", "tick 1", "tick 2"]
    assert echo(pool, Name="after").invoke()
    pool.close()
    actions = server.counters.snapshot().by_action
    assert actions["Disconnect"] == 1 and actions["Reconnect"] == 1 and actions["Connect"] == 1


def test_new_client_connects_to_disconnected_pipeline(server: WSManServer, host: ScriptedHost) -> None:
    pool_a = RunspacePool(wsman(server))
    pool_a.open()
    ps_a = echo(pool_a, "Sleep-X", Count=4, Seconds=0.15)
    ps_a.begin_invoke()
    pool_a.disconnect()
    pool_a.connection.close()  # client A goes away

    w_b = wsman(server)
    pools = RunspacePool.get_runspace_pools(w_b)
    assert [p.id for p in pools] == [pool_a.id]
    pool_b = pools[0]
    pool_b.connect()  # Connect with connectXml, then a pool Receive
    [ps_b] = pool_b.create_disconnected_power_shells()
    assert ps_b.connect() == ["tick 0", "tick 1", "tick 2", "tick 3"]
    assert ps_b.state == PSInvocationState.COMPLETED
    assert echo(pool_b, Name="b").invoke() == ["hv1:Echo-X:[('Name', 'b')]"]
    pool_b.close()
    assert server.counters.snapshot().by_action["Enumerate"] == 2


def test_disconnected_shell_is_deleted_after_idle_timeout(host: ScriptedHost) -> None:
    with WSManServer({"hv1": host}, username=USER, password=PASSWORD, idle_timeout=0.4) as srv:
        pool = RunspacePool(wsman(srv))
        pool.open()
        echo(pool, "Sleep-X", Count=100, Seconds=0.05).begin_invoke()
        pool.disconnect()
        wait_for(lambda: host.cancelled, timeout=5, interval=0.05)
        assert host.cancelled and not srv.service.shells("hv1")
        assert RunspacePool.get_runspace_pools(wsman(srv)) == []
        with pytest.raises(WSManFaultError) as err:
            pool.connect()
        assert err.value.code == 2150858843


# -- authentication and TLS -------------------------------------------------------------------------


def test_wrong_password_rejected(server: WSManServer) -> None:
    with pytest.raises(AuthenticationError):
        RunspacePool(wsman(server, password="wrong")).open()


def test_plaintext_body_over_http_refused(server: WSManServer) -> None:
    with pytest.raises(AuthenticationError):
        RunspacePool(wsman(server, encryption="never")).open()


def test_basic_over_https_needs_the_ca(host: ScriptedHost) -> None:
    with WSManServer({"hv1": host}, username=USER, password=PASSWORD, auth="basic", tls=True) as srv:
        assert srv.ca_cert_path and srv.url.startswith("https://")
        kwargs = srv.pypsrp_kwargs() | {"connection_timeout": 5}
        with pytest.raises(requests.exceptions.SSLError):
            RunspacePool(WSMan(**(kwargs | {"cert_validation": True}))).open()
        with RunspacePool(WSMan(**kwargs)) as pool:
            assert echo(pool, Name="tls").invoke() == ["hv1:Echo-X:[('Name', 'tls')]"]
        with pytest.raises(AuthenticationError):
            RunspacePool(WSMan(**(kwargs | {"password": "nope"}))).open()


def test_ntlm_over_https_with_channel_binding(host: ScriptedHost) -> None:
    srv = WSManServer({"hv1": host}, username=USER, password=PASSWORD, tls=True).start()
    with srv, RunspacePool(WSMan(**(srv.pypsrp_kwargs() | {"auth": "ntlm"}))) as pool:
        assert echo(pool, Name="n").invoke() == ["hv1:Echo-X:[('Name', 'n')]"]


def test_basic_over_plain_http_for_debugging(host: ScriptedHost) -> None:
    with WSManServer({"hv1": host}, username=USER, password=PASSWORD, auth="basic") as srv:
        with RunspacePool(WSMan(**srv.pypsrp_kwargs())) as pool:
            assert echo(pool).invoke()
        srv.stop()
        srv.stop()  # idempotent


# -- transport faults -------------------------------------------------------------------------------


@pytest.fixture
def faulty(host: ScriptedHost) -> Iterator[WSManServer]:
    with WSManServer(
        {"hv1": host},
        username=USER,
        password=PASSWORD,
        faults=FaultPlan(),
        counters=Counters(),
        receive_wait_cap=0.3,
    ) as srv:
        yield srv


def test_drop_before_run(faulty: WSManServer, host: ScriptedHost) -> None:
    faulty.faults.inject(Fault.DROP_BEFORE_RUN, cmdlet="Checkpoint-VM")
    pool = RunspacePool(wsman(faulty))
    pool.open()
    assert echo(pool, "Get-VM").invoke()
    runs = len(host.seen)
    with pytest.raises(requests.exceptions.ConnectionError):
        echo(pool, "Checkpoint-VM").invoke()
    assert len(host.seen) == runs
    assert faulty.faults.count_fired(Fault.DROP_BEFORE_RUN) == 1
    # The NTLM sealing context died with the TCP connection: pypsrp keeps sealing with it, so this
    # WSMan is unusable (as against Windows); a new client works.
    with pytest.raises(WinRMTransportError):
        echo(pool, "Get-VM").invoke()
    with RunspacePool(wsman(faulty)) as fresh:
        assert echo(fresh, "Checkpoint-VM").invoke()


def test_drop_after_run(faulty: WSManServer, host: ScriptedHost) -> None:
    faulty.faults.inject(Fault.DROP_AFTER_RUN, cmdlet="Sleep-X")
    pool = RunspacePool(wsman(faulty))
    pool.open()
    with pytest.raises(requests.exceptions.ConnectionError):
        echo(pool, "Sleep-X", Count=2, Seconds=0.05).invoke()
    assert host.finished.is_set()


def test_wsman_busy(faulty: WSManServer, host: ScriptedHost) -> None:
    faulty.faults.inject(Fault.WSMAN_BUSY)
    with RunspacePool(wsman(faulty)) as pool:
        with pytest.raises(WSManFaultError) as err:
            echo(pool).invoke()
        assert err.value.code == 2150859174 and not host.seen
        assert echo(pool).invoke()  # the next command goes through on the same pool


def test_wsman_timeout(faulty: WSManServer, host: ScriptedHost) -> None:
    faulty.faults.inject(Fault.WSMAN_TIMEOUT, cmdlet="Echo-X")
    with RunspacePool(wsman(faulty)) as pool:
        with pytest.raises(WSManFaultError) as err:
            echo(pool).invoke()
        assert err.value.code == 2150858793 and not host.seen
        assert echo(pool).invoke()


def test_reject_credentials(faulty: WSManServer) -> None:
    faulty.faults.inject(Fault.REJECT_CREDENTIALS)
    with pytest.raises(AuthenticationError):
        RunspacePool(wsman(faulty)).open()
    with RunspacePool(wsman(faulty)) as pool:
        assert echo(pool).invoke()


def test_latency(faulty: WSManServer) -> None:
    with RunspacePool(wsman(faulty)) as pool:
        faulty.faults.inject(Fault.LATENCY, cmdlet="Slow-X", seconds=0.5, times=None)
        t = time.monotonic()
        echo(pool, "Fast-X").invoke()
        fast = time.monotonic() - t
        t = time.monotonic()
        echo(pool, "Slow-X").invoke()
        slow = time.monotonic() - t
    assert fast < 0.4 and slow >= 1.0  # Command and Receive both wait
