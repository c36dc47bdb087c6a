"""Reliability tests: real Airflow (``dag.test()``) and real pypsrp against an emulator that can be
restarted in place, with faults armed at one step of the chain.

One Airflow DB and one emulator port for the whole session: every case gets a fresh emulated fleet on
the same port, with the same credentials, so the ``hyperv_default`` connection never changes.
"""

from __future__ import annotations

import socket
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.dags import write_dag
from tests.support.emulated import uri_for

USERNAME = "hyperv-admin"
PASSWORD = "reliability-pa55word"
EXAMPLE_FLEET = Path(__file__).parents[2] / "emulator" / "hyperv_emulator" / "fleets" / "example.yaml"


@pytest.fixture(scope="session")
def emulator_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(autouse=True)
def short_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the hook's backoff short (the policy, attempts and classification are unchanged)."""
    from airflow_hyperv.hooks.base import HyperVBaseHook

    monkeypatch.setattr(HyperVBaseHook, "retry_wait_multiplier", 0.01)
    monkeypatch.setattr(HyperVBaseHook, "retry_wait_max", 0.05)


def fleet(**timing: float) -> dict[str, Any]:
    """The example fleet, with its timing section overridden."""
    data = yaml.safe_load(EXAMPLE_FLEET.read_text(encoding="utf-8"))
    data["timing"] = {**data.get("timing", {}), **timing}
    return data


class RestartableEmulator:
    """An ``Emulator`` on a fixed port whose WS-Man server can be restarted while the model (the host's
    VMs, disks and files) persists, as a real host's WinRM service restart would leave it: every
    session, shell and running pipeline is lost, the disks are not."""

    def __init__(self, root: Path, port: int, fleet_data: dict[str, Any], **kwargs: Any) -> None:
        from hyperv_emulator.api import Emulator

        self.emu = Emulator(
            fleet_data,
            root_dir=root,
            port=port,
            auth="basic",
            username=USERNAME,
            password=PASSWORD,
            time_scale=1000.0,
            **kwargs,
        )
        self.restarts = 0

    def __enter__(self) -> Any:
        self.emu.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.emu.stop()

    def restart(self, downtime: float = 0.0) -> None:
        self.emu.stop()  # root_dir is ours: nothing on "disk" is removed
        if downtime:
            time.sleep(downtime)
        for attempt in range(50):
            try:
                self.emu.start()
                break
            except OSError:  # the port is still being released
                time.sleep(0.05 * (attempt + 1))
        self.restarts += 1

    def restart_when(
        self,
        condition: Callable[[], bool],
        *,
        delay: float = 0.0,
        downtime: float = 0.0,
        timeout: float = 60.0,
    ) -> threading.Thread:
        """Restart the server from a watcher thread as soon as ``condition()`` holds."""

        def watch() -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if condition():
                    time.sleep(delay)
                    self.restart(downtime)
                    return
                time.sleep(0.01)

        thread = threading.Thread(target=watch, name="emulator-restarter", daemon=True)
        thread.start()
        return thread


@pytest.fixture
def make_emulator(tmp_path: Path, emulator_port: int, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``make_emulator(**timing)`` -> a started ``RestartableEmulator``; the connection points at it.
    ``clock=ManualClock(...)`` gives the hosts a time that moves only when the test advances it."""
    made: list[RestartableEmulator] = []

    def make(*, clock: Any = None, **timing: float) -> RestartableEmulator:
        holder = RestartableEmulator(tmp_path / "hosts", emulator_port, fleet(**timing), clock=clock)
        holder.__enter__()
        made.append(holder)
        monkeypatch.setenv("AIRFLOW_CONN_HYPERV_DEFAULT", uri_for(holder.emu, "hv-01"))
        return holder

    yield make
    for holder in made:
        holder.__exit__()


@pytest.fixture(scope="session")
def dag_loader(airflow_db: None) -> Callable[[str, str], Any]:  # airflow_db: tests/conftest.py
    return load_dag


def load_dag(dag_id: str, body: str) -> Any:
    """Write a DAG file into the dags folder (``dag.test()`` syncs the bundle) and import it."""
    source = textwrap.dedent(
        """
        import datetime as dt
        import pendulum
        from airflow.sdk import DAG

        """
    ) + textwrap.dedent(body)
    return write_dag(dag_id, source)
