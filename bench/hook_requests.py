"""WS-Man requests per hook sequence: how many requests one VM protection step costs on the wire.

The sequence, as a DAG task runs it: resolve a VM by name -> check its integration services (the
Backup/VSS service must be healthy) -> create a checkpoint -> list the VM's checkpoints. The same
cmdlets run in every variant:

* ``Get-VM -Name``
* ``Get-VM -Id | Get-VMIntegrationService``
* ``Get-VM -Id | Checkpoint-VM -SnapshotName -Passthru``
* ``Get-VM -Id | Get-VMSnapshot``

Variants, each on one runspace pool, measured in this process against the emulator:

* ``hyperv_hook``     this project's ``HyperVHook``. Its ``create_checkpoint`` does more than the
  bare cmdlet, on purpose: a read of the VM and its checkpoints first (a checkpoint of the same
  name left by a lost earlier try is returned, not doubled), and ``Set-VM -CheckpointType
  ProductionOnly`` before / the VM's own type after ``Checkpoint-VM`` (same round trip) so an
  application-consistent checkpoint can never fall back to a crash-consistent one silently.
* ``psrp_hook``       the peer provider's ``PsrpHook`` (apache-airflow-providers-microsoft-psrp),
  used as its docs show: ``with PsrpHook(conn_id) as hook`` then ``invoke_cmdlet`` / ``invoke()``,
  one invocation per step. See ``PSRP_HOOK_NOTES`` for what it needed to reach the emulator.
* ``pypsrp_floor``    bare pypsrp doing the minimum: one pool, no key exchange, and the checkpoint
  and the listing combined as two statements of one pipeline. The protocol floor.
* ``pypsrp_same_pipelines``  bare pypsrp replaying exactly the pipelines ``HyperVHook`` runs (its
  safety read and Set-VM statements included): the floor *for the pipelines the hook runs*, which
  is what the project's 1.2x target is about. Its gap to ``hyperv_hook`` is the hook's own overhead.

Every run gets a fresh emulator (same starting state, so request counts are comparable; starting
it is not timed) and a fresh checkpoint name. Run: ``.venv/bin/python -m bench.hook_requests``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from bench.common import (
    Auth,
    add_ratios,
    interleaved,
    median,
    median_count,
    print_table,
    request_bench,
    start_emulator,
)
from hyperv_emulator.api import Emulator
from hyperv_emulator.counters import CountersSnapshot
from tests.support.emulated import settings_for

HOST = "hv-01"  # the example fleet's first host: the default route /wsman reaches it too
VM_NAME = "dc-01"  # Windows guest, VSS healthy, checkpoint type ProductionOnly
PSRP_CONN_ID = "psrp_bench"
ACTIONS = ("Create", "Command", "Send", "Receive", "Signal", "Delete")

PSRP_HOOK_NOTES = (
    "PsrpHook 4.0.1 builds WSMan(conn.host, username=..., password=..., **wsman_options) and never "
    "passes conn.port, so the connection's port is ignored (5985/5986 is always used) and a 'port' "
    "key in the connection extra is refused ('Unexpected extra configuration keys'). Workaround, "
    "no monkeypatching: the port goes in the hook's own documented constructor argument "
    "wsman_options={'port': <emulator port>}. The connection (AIRFLOW_CONN_PSRP_BENCH) carries "
    "host, login, password and the extras it honours: auth ('basic' or 'ntlm') and ssl=false "
    "(WSMan defaults to ssl=True). With Basic over plain HTTP, pypsrp's encryption='auto' raises "
    "(message encryption needs NTLM/Kerberos/CredSSP) and 'encryption' is not an extra PsrpHook "
    "accepts, so wsman_options also gets encryption='never' under basic only. With NTLM it needs "
    "nothing more: WinRM message encryption is on, as on a real host. PsrpHook cannot take a WS-Man "
    "path, so it reaches the emulator's default route /wsman, which serves the first host (hv-01, "
    "the host every variant uses). By default (exchange_keys=True) it also runs a PSRP session-key "
    "exchange on opening, which costs requests; it is counted because that is how the hook runs "
    "unless told otherwise."
)


@dataclass(frozen=True)
class Sample:
    counters: CountersSnapshot
    seconds: float


Variant = Callable[[Emulator, str, str], None]


# -- checks shared by every variant (client side only: no requests) -----------------------------------
def _vm_id(output: Sequence[Any], name: str) -> uuid.UUID:
    from airflow_hyperv.hyperv.records import VirtualMachine

    vms = [VirtualMachine.decode(o) for o in output]
    if len(vms) != 1:
        raise RuntimeError(f"Get-VM -Name {name} returned {len(vms)} VMs")
    return vms[0].id


def _require_backup_service(output: Sequence[Any]) -> None:
    from airflow_hyperv.hyperv.records import IntegrationService

    services = [IntegrationService.decode(o) for o in output]
    if not any(s.is_backup_service and s.healthy for s in services):
        raise RuntimeError("the Backup (VSS) integration service is not healthy")


def _require_checkpoint(names: Sequence[str], checkpoint: str) -> None:
    if checkpoint not in names:
        raise RuntimeError(f"checkpoint {checkpoint!r} is not listed")


def _snapshot_names(output: Sequence[Any]) -> list[str]:
    from airflow_hyperv.hyperv.records import Checkpoint

    return [Checkpoint.decode(o).name for o in output if "VMSnapshot" in " ".join(o.types or [])]


# -- (a) this project's hook --------------------------------------------------------------------------
def run_hyperv_hook(emu: Emulator, vm_name: str, checkpoint: str) -> None:
    from airflow_hyperv.hooks.hyperv import HyperVHook
    from airflow_hyperv.hyperv.enums import Consistency

    with HyperVHook(settings=settings_for(emu, HOST)) as hv:
        vm = hv.get_vm(name=vm_name)
        if not any(s.is_backup_service and s.healthy for s in hv.integration_services(vm.id)):
            raise RuntimeError("the Backup (VSS) integration service is not healthy")
        hv.create_checkpoint(vm.id, checkpoint, consistency=Consistency.APPLICATION)
        _require_checkpoint([c.name for c in hv.list_checkpoints(vm.id)], checkpoint)


# -- (b) the peer provider's PsrpHook ----------------------------------------------------------------
def psrp_connection_uri(emu: Emulator) -> str:
    """A ``psrp`` connection for the emulator, with only the extras PsrpHook accepts."""
    from airflow.sdk import Connection

    extra = {"auth": "ntlm" if emu.auth == "ntlm" else "basic", "ssl": False}
    return str(
        Connection(
            conn_id=PSRP_CONN_ID,
            conn_type="psrp",
            host="127.0.0.1",
            port=emu.port,  # ignored by PsrpHook 4.0.1: see PSRP_HOOK_NOTES
            login=emu.username,
            password=emu.password,
            extra=json.dumps(extra),
        ).get_uri()
    )


def psrp_wsman_options(emu: Emulator) -> dict[str, Any]:
    options: dict[str, Any] = {"port": emu.port}  # the port PsrpHook drops from the connection
    if emu.auth == "basic":
        options["encryption"] = "never"  # pypsrp refuses Basic with message encryption on plain HTTP
    return options


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def run_psrp_hook(emu: Emulator, vm_name: str, checkpoint: str) -> None:
    from airflow.providers.microsoft.psrp.hooks.psrp import PsrpHook

    env_name = f"AIRFLOW_CONN_{PSRP_CONN_ID.upper()}"
    with (
        _env(env_name, psrp_connection_uri(emu)),
        PsrpHook(PSRP_CONN_ID, wsman_options=psrp_wsman_options(emu)) as hook,
    ):
        vm_id = _vm_id(hook.invoke_cmdlet("Get-VM", parameters={"Name": vm_name}).output, vm_name)
        with hook.invoke() as ps:
            ps.add_cmdlet("Get-VM").add_parameter("Id", vm_id)
            ps.add_cmdlet("Get-VMIntegrationService")
        _require_backup_service(ps.output)
        with hook.invoke() as ps:
            ps.add_cmdlet("Get-VM").add_parameter("Id", vm_id)
            ps.add_cmdlet("Checkpoint-VM").add_parameter("SnapshotName", checkpoint).add_parameter("Passthru")
        with hook.invoke() as ps:
            ps.add_cmdlet("Get-VM").add_parameter("Id", vm_id)
            ps.add_cmdlet("Get-VMSnapshot")
        _require_checkpoint(_snapshot_names(ps.output), checkpoint)


# -- (c) bare pypsrp: the protocol floor -------------------------------------------------------------
def pypsrp_wsman_kwargs(emu: Emulator) -> dict[str, Any]:
    """The same transport every variant uses: HTTP, Basic without or NTLM with message encryption."""
    return {
        "server": "127.0.0.1",
        "port": emu.port,
        "path": f"{HOST}/wsman",
        "username": emu.username,
        "password": emu.password,
        "ssl": False,
        "auth": "ntlm" if emu.auth == "ntlm" else "basic",
        "encryption": "auto" if emu.auth == "ntlm" else "never",
        "no_proxy": True,
    }


def run_pypsrp_floor(emu: Emulator, vm_name: str, checkpoint: str) -> None:
    from pypsrp.powershell import PowerShell, RunspacePool
    from pypsrp.wsman import WSMan

    with WSMan(**pypsrp_wsman_kwargs(emu)) as wsman, RunspacePool(wsman) as pool:
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-VM").add_parameter("Name", vm_name)
        vm_id = _vm_id(ps.invoke(), vm_name)
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-VM").add_parameter("Id", vm_id).add_cmdlet("Get-VMIntegrationService")
        _require_backup_service(ps.invoke())
        # The checkpoint and the listing need nothing from each other: two statements, one pipeline.
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-VM").add_parameter("Id", vm_id)
        ps.add_cmdlet("Checkpoint-VM").add_parameter("SnapshotName", checkpoint).add_parameter("Passthru")
        ps.add_statement()
        ps.add_cmdlet("Get-VM").add_parameter("Id", vm_id).add_cmdlet("Get-VMSnapshot")
        output = ps.invoke()
        if ps.had_errors:
            raise RuntimeError("Checkpoint-VM failed")
        _require_checkpoint(_snapshot_names(output), checkpoint)


# -- (c') bare pypsrp running exactly the hook's pipelines ---------------------------------------------
def run_pypsrp_same_pipelines(emu: Emulator, vm_name: str, checkpoint: str) -> None:
    from pypsrp.powershell import RunspacePool
    from pypsrp.wsman import WSMan

    from airflow_hyperv.hooks.transport import invoke
    from airflow_hyperv.hyperv import pipelines
    from airflow_hyperv.hyperv.enums import CheckpointType
    from airflow_hyperv.hyperv.records import VirtualMachine

    with WSMan(**pypsrp_wsman_kwargs(emu)) as wsman, RunspacePool(wsman) as pool:
        vm_id = _vm_id(invoke(pool, pipelines.get_vm_by_name(vm_name)).output, vm_name)
        _require_backup_service(invoke(pool, pipelines.integration_services(vm_id)).output)
        with_checkpoints = pipelines.get_vm_by_id(vm_id).then(pipelines.list_checkpoints(vm_id))
        first = invoke(pool, with_checkpoints).output
        own_type = VirtualMachine.decode(first[0]).checkpoint_type
        invoke(
            pool, pipelines.checkpoint_with_type(vm_id, checkpoint, CheckpointType.ProductionOnly, own_type)
        )
        _require_checkpoint(_snapshot_names(invoke(pool, with_checkpoints).output), checkpoint)


VARIANTS: dict[str, Variant] = {
    "hyperv_hook": run_hyperv_hook,
    "psrp_hook": run_psrp_hook,
    "pypsrp_floor": run_pypsrp_floor,
    "pypsrp_same_pipelines": run_pypsrp_same_pipelines,
}
FLOOR, PEER, SAME = "pypsrp_floor", "psrp_hook", "pypsrp_same_pipelines"


REFERENCES = (
    (FLOOR, "floor"),
    (PEER, "psrp_hook"),
    (SAME, "same_pipelines"),
)  # the ratios' denominators: (variant, suffix)


def run_once(variant: str, auth: Auth) -> Sample:
    """One sequence on a fresh emulator; only the sequence itself is counted and timed."""
    checkpoint = f"airflow-hyperv 20261126T0000Z {uuid.uuid4().hex[:12]}"
    with start_emulator(auth) as emu:
        before = emu.counters.snapshot()
        started = time.perf_counter()
        VARIANTS[variant](emu, VM_NAME, checkpoint)
        seconds = time.perf_counter() - started
        return Sample(emu.counters.snapshot() - before, seconds)


def _action(name: str) -> Callable[[CountersSnapshot], int]:
    return lambda c: c.by_action.get(name, 0)


def summarize(variant: str, auth: Auth, samples: Sequence[Sample]) -> dict[str, Any]:
    others = sorted({k for s in samples for k in s.counters.by_action} - set(ACTIONS))
    by_action = {a: median_count(samples, _action(a)) for a in (*ACTIONS, *others)}
    return {
        "auth": auth,
        "variant": variant,
        "runs": len(samples),
        "pools": median_count(samples, lambda c: c.pools_opened),
        "pipelines": median_count(samples, lambda c: c.pipelines_run),
        "cmdlets": median_count(samples, lambda c: c.cmdlets_run),
        "wsman_requests": median_count(samples, lambda c: c.wsman_requests),
        "http_requests": median_count(samples, lambda c: c.http_requests),
        "by_action": ", ".join(f"{a} {n}" for a, n in by_action.items() if n != 0),
        "wall_ms_median": round(median(s.seconds for s in samples) * 1000.0, 1),
    }


def measure(
    auth: Auth = "basic", *, variants: Sequence[str] = tuple(VARIANTS), iterations: int = 5, warmup: int = 1
) -> list[dict[str, Any]]:
    """Rows (one per variant) of request counts, median wall time and ratios. The variants are
    interleaved, in a rotating order, so drift of the machine spreads evenly over them."""
    samples = interleaved(
        lambda variant: run_once(variant, auth), variants, VARIANTS, iterations=iterations, warmup=warmup
    )
    return add_ratios([summarize(v, auth, samples[v]) for v in variants], REFERENCES)


COUNT_COLUMNS = (
    "auth", "variant", "runs", "pools", "pipelines", "cmdlets",
    "wsman_requests", "http_requests", "wall_ms_median", "by_action",
)  # fmt: skip
RATIO_COLUMNS = (
    "auth", "variant",
    "wsman_vs_floor", "http_vs_floor", "wall_vs_floor",
    "wsman_vs_psrp_hook", "http_vs_psrp_hook", "wall_vs_psrp_hook",
    "wsman_vs_same_pipelines", "http_vs_same_pipelines",
)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    rows = request_bench(
        "bench.hook_requests", __doc__, argv, unit="run", variants=tuple(VARIANTS), measure=measure,
        title="WS-Man requests per hook sequence",
        what=f"Sequence: Get-VM -Name {VM_NAME} -> integration services -> Checkpoint-VM -> Get-VMSnapshot",
    )  # fmt: skip
    print_table(
        rows, COUNT_COLUMNS, title="Requests per sequence (median of the runs; a range when runs differed)"
    )
    print_table(rows, [c for c in RATIO_COLUMNS if any(c in r for r in rows)], title="Ratios")
    print("\nPsrpHook baseline: " + PSRP_HOOK_NOTES)
    return rows


if __name__ == "__main__":
    main()
