"""Export safety: cancellation, one export per folder, no staging removed while Hyper-V may write,
promotion that never nests, host-specific export paths, Windows' own path limits, checkpoint drives.

Exports are held deterministically with a ManualClock (``auto_advance=False``: Export-VMSnapshot
cannot finish until the test lets time move), never with sleeps or races.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import uuid
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException, TaskDeferred

from airflow_hyperv.hyperv.enums import Consistency
from airflow_hyperv.hyperv.names import checkpoint_name
from airflow_hyperv.operators.export import HyperVExportCheckpointOperator
from hyperv_emulator.api import Emulator
from hyperv_emulator.model.clock import ManualClock
from tests.support.dags import write_dag
from tests.support.emulated import settings_for, uri_for
from tests.support.waiting import wait_for

ROOT = "D:\\Backups"


class MemoryStateStore:
    """What ``context["task_state_store"]`` offers (get/set), kept across "tries" of a test."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def set(self, key: str, value: Any, **_: Any) -> None:
        self.data[key] = value


@pytest.fixture
def held(tmp_path, monkeypatch):
    """An emulated fleet on a ManualClock; ``held.clock.auto_advance = False`` holds long operations."""
    with Emulator(root_dir=tmp_path / "hosts", auth="basic", clock=ManualClock()) as emu:
        monkeypatch.setenv("AIRFLOW_CONN_HYPERV_DEFAULT", uri_for(emu, "hv-01"))
        monkeypatch.setenv("AIRFLOW_CONN_HV_02", uri_for(emu, "hv-02"))
        yield emu


def make_hook(emu: Emulator, host: str = "hv-01") -> Any:
    from airflow_hyperv.hooks.hyperv import HyperVHook

    hv = HyperVHook(settings=settings_for(emu, host))
    hv.retry_wait_multiplier = 0.01
    hv.retry_wait_max = 0.05
    return hv


def provider_checkpoint(emu: Emulator, vm_name: str, host: str = "hv-01", run_id: str = "run-1") -> str:
    """A checkpoint named as a DAG run would name it; returns the name."""
    with make_hook(emu, host) as hv:
        vm = hv.get_vm(name=vm_name)
        name = checkpoint_name(
            dag_id="export_safety",
            run_id=run_id,
            vm_id=str(vm.id),
            logical_date=dt.datetime(2026, 11, 29, 1, tzinfo=dt.timezone.utc),
        )
        hv.create_checkpoint(vm.id, name, consistency=Consistency.APPLICATION)
    return name


def export_op(
    name: str, *, vm: str = "web-01", root: str = ROOT, **kwargs: Any
) -> HyperVExportCheckpointOperator:
    kwargs.setdefault("deferrable", False)
    kwargs.setdefault("poll_interval", 0.1)
    # These tests hold exports on a manual clock, whose writes say nothing of real time: a prediction
    # of the end would be meaningless. The early hand-back is tested on its own (test_export_progress).
    kwargs.setdefault("resume_before_end", 0.0)
    return HyperVExportCheckpointOperator(
        task_id=f"export_{uuid.uuid4().hex[:6]}", vm=vm, checkpoint_name=name, export_root=root, **kwargs
    )


def exports(emu: Emulator) -> list[Any]:
    return emu.audit.entries(cmdlet="Export-VMSnapshot")


def exists(emu: Emulator, path: str, host: str = "hv-01") -> bool:
    return emu.host(host).fs.to_real(path).exists()


def removed(emu: Emulator, path: str) -> list[Any]:
    return [
        e
        for e in emu.audit.entries(cmdlet="Remove-Item")
        if any(path.lower() in t.lower() for t in e.targets)
    ]


# -- cancellation ---------------------------------------------------------------------------------
def test_on_kill_cancels_the_export_and_the_retry_writes_elsewhere(held):
    name = provider_checkpoint(held, "web-01")
    store = MemoryStateStore()
    held.clock.auto_advance = False  # the export cannot finish until the test says so
    first = export_op(name)
    failure: list[BaseException] = []

    def run_first() -> None:
        try:
            first.execute({"task_state_store": store})
        except BaseException as exc:  # handed to the test thread
            failure.append(exc)

    worker = threading.Thread(target=run_first)
    worker.start()
    wait_for(
        lambda: bool(exports(held)) and first._running is not None, 30, what="the export runs on the host"
    )
    staging = exports(held)[0].parameters["Path"]
    first.on_kill()  # what Airflow calls when the task is killed or hits its execution_timeout
    worker.join(30)
    assert not worker.is_alive()
    wait_for(lambda: exports(held)[0].outcome != "running", 30, what="the export ends")
    assert exports(held)[0].outcome == "stopped"  # the host stopped the export
    assert failure and "left in place" in str(failure[0]), failure
    assert exists(held, staging) and not removed(held, staging)  # Hyper-V may have written there

    held.clock.auto_advance = True
    result = export_op(name).execute({"task_state_store": store})  # the retry
    paths = [e.parameters["Path"] for e in exports(held)]
    assert len(paths) == 2 and paths[0].lower() != paths[1].lower()  # never the same folder twice
    assert result["path"].startswith(f"{ROOT}\\hv-01\\") and exists(held, result["path"])
    assert exists(held, staging) and not removed(held, staging)


def test_a_worker_export_past_its_wait_timeout_is_cancelled(held):
    name = provider_checkpoint(held, "web-01")
    held.clock.auto_advance = False  # the export cannot finish: only the wait's own deadline ends it
    with pytest.raises(AirflowException, match=r"not done after 0\.3s; cancelled") as failed:
        export_op(name, wait_timeout=0.3).execute({"task_state_store": MemoryStateStore()})
    assert "left in place" in str(failed.value)
    wait_for(lambda: exports(held)[0].outcome != "running", 30, what="the export ends")
    assert exports(held)[0].outcome == "stopped"  # the host stopped the export


def test_a_worker_export_wait_ends_at_the_first_rejected_login(held):
    from airflow.sdk.exceptions import AirflowFailException

    from hyperv_emulator.faults import Fault

    name = provider_checkpoint(held, "web-01")
    held.clock.auto_advance = False
    op = export_op(name)
    store = MemoryStateStore()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            op.execute({"task_state_store": store})
        except BaseException as exc:  # handed to the test thread
            failure.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    wait_for(lambda: bool(exports(held)) and op._running is not None, 30, what="the export runs on the host")
    held.faults.inject(Fault.REJECT_CREDENTIALS, times=None)  # the password changes while it waits
    worker.join(30)
    assert not worker.is_alive()
    assert failure and isinstance(failure[0], AirflowFailException), failure
    assert str(failure[0]).startswith("polling the export of web-01: ")
    # One rejected poll, never retried (before the shared waiter: five). The second rejected login is
    # the operator's own hook closing its runspace pool on the way out (the hook's close, not the wait).
    assert held.counters.rejected_logins("hv-01") == 2
    held.faults.clear()
    op._cancel(settings_for(held, "hv-01"), op._operation(op._load({"task_state_store": store}, None)))


def test_trigger_on_kill_cancels_the_deferred_export(held):
    from airflow_hyperv.hooks.disconnected import poll_disconnected
    from airflow_hyperv.triggers.hyperv import HyperVOperationTrigger

    name = provider_checkpoint(held, "web-01")
    held.clock.auto_advance = False
    with pytest.raises(TaskDeferred) as deferred:
        export_op(name, deferrable=True).execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, HyperVOperationTrigger)
    assert exports(held)[0].outcome == "running"
    asyncio.run(trigger.on_kill())  # the triggerer calls it when the user marks / clears the task
    wait_for(lambda: exports(held)[0].outcome != "running", 30, what="the export ends")
    assert exports(held)[0].outcome == "stopped"
    op = trigger.target.operation
    from airflow_hyperv.hooks.disconnected import DisconnectedOperation

    poll = poll_disconnected(settings_for(held, "hv-01"), DisconnectedOperation.from_dict(op))
    assert poll.state == "gone"


def test_deferral_timeout_cancels_the_export_recorded_in_the_state_store(held):
    """Airflow's own deferral timeout resumes the task with ``__fail__`` and no event."""
    from airflow.sdk.exceptions import TaskDeferralTimeout

    name = provider_checkpoint(held, "web-01")
    store = MemoryStateStore()
    held.clock.auto_advance = False
    op = export_op(name, deferrable=True)
    with pytest.raises(TaskDeferred):
        op.execute({"task_state_store": store})
    with pytest.raises(TaskDeferralTimeout):
        op.resume_execution("__fail__", {"error": "Trigger timeout"}, {"task_state_store": store})
    wait_for(lambda: exports(held)[0].outcome != "running", 30, what="the export ends")
    assert exports(held)[0].outcome == "stopped"


# -- one export per folder; no staging removed while the export may write ---------------------------
def test_a_retry_reattaches_to_the_running_export_instead_of_starting_another(held):
    name = provider_checkpoint(held, "web-01")
    store = MemoryStateStore()
    held.clock.auto_advance = False
    with pytest.raises(TaskDeferred):
        export_op(name, deferrable=True).execute({"task_state_store": store})
    staging = exports(held)[0].parameters["Path"]
    # The try dies here (worker and triggerer gone, no on_kill): the export runs on.
    held.clock.auto_advance = True
    result = export_op(name).execute({"task_state_store": store})
    assert len(exports(held)) == 1  # reattached: no second export
    assert exports(held)[0].outcome == "ok"
    assert not removed(held, staging)  # never removed under the running export
    assert exists(held, result["path"]) and not exists(held, staging)  # promoted by rename


def test_a_lost_session_leaves_the_staging_of_a_still_running_export(held):
    name = provider_checkpoint(held, "web-01")
    held.clock.auto_advance = False
    op = export_op(name, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({})
    saved = deferred.value.trigger.resume_state
    # an event fired by a triggerer before the rename carries the state as "echo": still read
    event = {"status": "error", "message": "export: the host no longer has the session", "echo": saved}
    with pytest.raises(AirflowException, match="left in place"):
        op.execute_complete({}, event)
    assert exports(held)[0].outcome == "running"  # the export really still writes
    assert exists(held, saved["staging"]) and not removed(held, saved["staging"])
    op._cancel(settings_for(held, "hv-01"), op._operation(op_plan(saved)))  # let the host stop


def op_plan(saved: dict[str, Any]) -> Any:
    from airflow_hyperv.operators.export import ExportPlan

    return ExportPlan.from_dict(saved)


# -- promotion ------------------------------------------------------------------------------------
def test_move_item_onto_an_existing_folder_moves_the_source_inside_it(hook):
    """Real PowerShell (Move-Item docs, example 2); the emulator does the same."""
    hook.make_directory("D:\\Moves\\src\\inner")
    hook.make_directory("D:\\Moves\\dst")
    hook.move_item("D:\\Moves\\src", "D:\\Moves\\dst")
    assert hook.path_exists("D:\\Moves\\dst\\src\\inner") and not hook.path_exists("D:\\Moves\\src")


def test_promotion_refuses_a_final_folder_that_appeared(held):
    name = provider_checkpoint(held, "web-01")
    op = export_op(name, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute({})
    saved = deferred.value.trigger.resume_state
    wait_for(lambda: exports(held)[0].outcome == "ok", 30, what="the export finishes")
    with make_hook(held) as hv:
        hv.make_directory(saved["final"])  # someone else made the final folder meanwhile
    with pytest.raises(AirflowException, match="not promoting"):
        op.execute_complete({}, {"status": "success", "resume_state": saved})
    final = held.host("hv-01").fs.to_real(saved["final"])
    assert list(final.iterdir()) == []  # nothing nested inside it
    assert exists(held, saved["staging"])


def test_a_promoted_export_with_nested_staging_is_rejected(held):
    name = provider_checkpoint(held, "web-01")
    result = export_op(name).execute({})
    with make_hook(held) as hv:  # what an old promotion onto an existing folder left behind
        nested = f"{result['path']}\\.staging-20261129T0100Z-0123456789ab"
        hv.make_directory(nested)
        hv.export_checkpoint(uuid.UUID(result["checkpoint_id"]), nested)
    with pytest.raises(AirflowException, match="unexpected content"):
        export_op(name).execute({})


# -- export paths distinguish hosts ---------------------------------------------------------------
TWIN_ID = "6f1f2b52-43d5-4c55-9d36-1b2a0e9a7c01"
SHARE = "\\\\backup01\\exports"


def twin_fleet() -> dict[str, Any]:
    vm = {"name": "twin", "id": TWIN_ID, "guest": "windows", "disks": [{"size_gb": 20, "file_gb": 4}]}
    return {
        "hosts": [
            {"name": "hv-01", "volumes": {"C": {"capacity_gb": 500}}, "vms": [dict(vm)]},
            {"name": "hv-02", "volumes": {"C": {"capacity_gb": 500}}, "vms": [dict(vm)]},
        ]
    }


def test_same_vm_id_on_two_hosts_gets_two_export_paths_on_one_share(tmp_path, monkeypatch):
    with Emulator(twin_fleet(), root_dir=tmp_path / "hosts", auth="basic", time_scale=1000.0) as emu:
        for host in emu.host_names:  # one file server both hosts write to
            emu.host(host).fs.add_share(SHARE, tmp_path / "fileserver" / "exports", 10**13)
        monkeypatch.setenv("AIRFLOW_CONN_HYPERV_DEFAULT", uri_for(emu, "hv-01"))
        monkeypatch.setenv("AIRFLOW_CONN_HV_02", uri_for(emu, "hv-02"))
        names = [provider_checkpoint(emu, "twin", host) for host in ("hv-01", "hv-02")]
        assert names[0] == names[1]  # same run, same VM Id: the same checkpoint name on both hosts
        first = export_op(names[0], vm="twin", root=SHARE).execute({})
        second = export_op(names[1], vm="twin", root=SHARE, hyperv_conn_id="hv_02").execute({})
        assert first["path"] == f"{SHARE}\\hv-01\\{TWIN_ID}\\{first['path'].rsplit(chr(92), 1)[-1]}"
        assert second["path"].startswith(f"{SHARE}\\hv-02\\{TWIN_ID}\\")
        assert len(exports(emu)) == 2  # the second host exported its own VM
        for result in (first, second):
            assert (
                tmp_path / "fileserver" / "exports" / result["path"][len(SHARE) + 1 :].replace("\\", "/")
            ).is_dir()


# -- path lengths ---------------------------------------------------------------------------------
def test_a_long_vm_name_exports(held):
    vm = next(v for v in held.host("hv-01").vms() if v.name == "web-01")
    vm.name = "w" * 100  # the longest name Hyper-V Manager takes
    name = provider_checkpoint(held, vm.name)
    result = export_op(name, vm=vm.name).execute({})
    longest = max(len(f"{result['path']}\\{f['path']}") for f in result["files"])
    assert longest > 200  # past the user-input limit, within Windows' MAX_PATH
    assert exists(held, result["path"])


def test_an_export_windows_could_not_write_fails_before_anything_changes(held):
    from airflow.sdk.exceptions import AirflowFailException

    vm = next(v for v in held.host("hv-01").vms() if v.name == "web-01")
    vm.name = "w" * 100
    name = provider_checkpoint(held, vm.name)
    root = "D:\\" + "\\".join(["b" * 40] * 3)
    with pytest.raises(AirflowFailException, match="MAX_PATH"):
        export_op(name, vm=vm.name, root=root).execute({})
    changed = {"New-Item", "Export-VMSnapshot", "Move-Item", "Remove-Item"}
    assert not [e for e in held.audit.entries() if e.cmdlet in changed]


# -- verification uses the checkpoint's own drives -------------------------------------------------
def test_a_disk_added_after_the_checkpoint_does_not_fail_verification(held):
    from hyperv_emulator.model.disk import GiB, VirtualDisk, derive_content
    from hyperv_emulator.model.vm import HardDrive

    name = provider_checkpoint(held, "web-01")
    host = held.host("hv-01")
    vm = next(v for v in host.vms() if v.name == "web-01")
    path = "C:\\ProgramData\\Microsoft\\Windows\\Virtual Hard Disks\\web-01-added.vhdx"
    added = VirtualDisk(path=path, size=10 * GiB, file_size=GiB, content=derive_content(str(vm.id), path))
    host.fs.write_standin(path, added.header(), added.file_size)
    vm.hard_drives.append(HardDrive(added, controller_location=len(vm.hard_drives)))
    result = export_op(name).execute({})
    with make_hook(held) as hv:  # Get-VMSnapshot -Id | Get-VMHardDiskDrive: the checkpoint's own drives
        drives = hv.checkpoint_drives(uuid.UUID(result["checkpoint_id"]))
    assert [d.path.rsplit("\\", 1)[-1] for d in drives] == ["web-01.vhdx"]
    assert [f["path"].rsplit("\\", 1)[-1] for f in result["files"] if f["path"].endswith(".vhdx")] == [
        "web-01.vhdx"
    ]


# -- a deferred export that runs past its wait_timeout, in real Airflow ---------------------------
TIMEOUT_DAG = """
import pendulum
from airflow.sdk import DAG
from airflow_hyperv.operators.checkpoint import HyperVCreateCheckpointOperator, HyperVMergeCheckpointOperator
from airflow_hyperv.operators.export import HyperVExportCheckpointOperator

with DAG("t_export_timeout", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
         catchup=False, default_args={"retries": 0}) as dag:
    checkpoint = HyperVCreateCheckpointOperator(task_id="checkpoint", vm="web-01", consistency="application")
    export = HyperVExportCheckpointOperator(task_id="export", vm="web-01", export_root="D:\\\\Backups",
                                            deferrable=True, poll_interval=0.1, wait_timeout=3)
    merge = HyperVMergeCheckpointOperator(task_id="merge", vm="web-01", deferrable=False, poll_interval=0.1,
                                          trigger_rule="all_done")
    checkpoint >> export >> merge
"""


def test_a_deferred_export_past_its_wait_timeout_is_cancelled(airflow_db, emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_HYPERV_DEFAULT", uri_for(emulator, "hv-01"))
    emulator.host("hv-01").timing.export_mb_per_s = 0.01  # hours of emulated time: it cannot finish
    run = write_dag("t_export_timeout", TIMEOUT_DAG).test()
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states["export"] == "failed", states
    wait_for(lambda: exports(emulator)[0].outcome != "running", 30, what="the export ends")
    assert exports(emulator)[0].outcome == "stopped"  # cancelled on the host, not left running
    assert states["merge"] == "success", states  # the VM was free again: the checkpoint merged
    staging = exports(emulator)[0].parameters["Path"]
    assert exists(emulator, staging) and not removed(emulator, staging)
