"""The shipped nightly DAG over an emulated four-node failover cluster (fleets/cluster.yaml, inventory
example_dags/inventory/cluster.yaml) while its VMs live-migrate and a node goes down, under ``dag.test()``.

``dag.test()`` runs one task at a time, stage after stage (every schedulable task instance of the run,
then the next ones): every VM is verified, then checkpointed, then exported, kept, merged. A controller
thread interleaves the cluster's moves with the run at points the emulator's gates define, never after a
sleep:

* **P1, between checkpoint and export**: the run is held at the first ``Export-VMSnapshot`` (a gate on
  the cmdlet, whichever VM); every other VM, all checkpointed and none exported, is live-migrated to the
  next node, one with a migration still in progress (``until_completed``) that its export task meets
  (``Pending``) and waits for; the test completes it once a task was told it moves (``Migration.seen``).
  The held VM moves when a task next asks the cluster about it after its export (a gate on
  ``Get-ClusterGroup -Name``, re-armed past the export task's own progress reads while it exports),
  unless another VM's merge comes first: then it moves in P2.
* **P2, between export and merge**: the run is held at the first ``Remove-VMSnapshot``; every other
  exported, unmerged VM moves again, and a node (not the held VM's, not the first one the connection
  names) goes down: its VMs (one is sent there first if none is on it) fail over to the next node, where
  they are merged. A VM whose export is still to come (a retry: merges run beside retention, not after
  every export) is left alone, unless it has not moved yet: then it moves before its export.

With two faults on top: one VM's first export runs out of space half-way (a task retry that exports
again) and the answer to the first ``Checkpoint-VM`` is lost (the hook's re-check, no second one).

The invariants (``check_run``) are those of the overlap matrix (tests/e2e/test_overlap_matrix.py) and the
fault matrix, for every VM of the run, read back from the emulator (audit log, files) and the run's
XComs; ``moves`` proves the migrations happened between the VM's own tasks. The positive controls at the
end doctor the real observation and require a named problem for each invariant.

The DAG is the shipped file, copied with these changes only (asserted): its dag_id, the cluster
inventory, a retry delay of 0 and the chain's poll interval of 0.1 s (the shipped 10 s would make the
ten merges alone take two minutes).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from airflow_hyperv.example_dags import EXAMPLE_DAGS
from airflow_hyperv.hooks.cluster import ClusterRouter
from airflow_hyperv.hooks.connection import connection_uri
from tests.support.dags import dags_folder, import_file, set_pools

FLEET = Path(__file__).parents[2] / "emulator" / "hyperv_emulator" / "fleets" / "cluster.yaml"
INVENTORY = EXAMPLE_DAGS / "inventory" / "cluster.yaml"
DAG_ID = "nightly_cluster"
CLUSTER = "hvc-01"
HOLD = 300.0  # a guard against a hang if the run never reaches a gate (seconds); never a pace
LEASES = "C:\\ClusterStorage\\Volume1\\airflow-hyperv\\leases"
FULL_DISK = "web-02"  # its first export runs out of space (the answer of the first Checkpoint-VM is lost)


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"expected {old!r} once in the shipped DAG: it changed, adapt this test"
    return text.replace(old, new)


def write_cluster_dag() -> Any:
    folder = dags_folder()
    (folder / "inventory").mkdir(exist_ok=True)
    (folder / "inventory" / f"{DAG_ID}.yaml").write_text(INVENTORY.read_text())
    text = (EXAMPLE_DAGS / "nightly_checkpoint.py").read_text()
    text = replace_once(text, 'dag_id="nightly_checkpoint"', f'dag_id="{DAG_ID}"')
    text = replace_once(
        text,
        'Path(__file__).parent / "inventory" / "nightly.yaml"',
        f'Path(__file__).parent / "inventory" / "{DAG_ID}.yaml"',
    )
    text = replace_once(text, "pendulum.duration(minutes=2)", "pendulum.duration(seconds=0)")
    text = replace_once(text, "pool=host.pool,", "pool=host.pool, poll_interval=0.1,")
    (folder / f"{DAG_ID}.py").write_text(text)
    return import_file(folder / f"{DAG_ID}.py", DAG_ID).dag


# -- what the run did ------------------------------------------------------------------------------------
@dataclass
class Call:
    """One audited cmdlet call: where it ran, what it named (lower case), how it ended, when."""

    cmdlet: str
    node: str
    text: str
    outcome: str
    wall_time: float


@dataclass
class Move:
    """A move the controller made: ``vm`` from ``source`` to ``target`` between two of its steps."""

    vm: str
    source: str
    target: str
    between: tuple[str, str]  # cmdlets: the step before and the step after
    how: str  # "live migration", "held live migration", "failover"


@dataclass
class Observed:
    """Everything ``check_run`` judges, read after the run."""

    vms: dict[str, str]  # name -> VM Id (lower case)
    digests: dict[str, str]  # name -> the hash of this run's checkpoint name and export folders
    rows: dict[str, dict[str, Any]]  # name -> report row
    exports: dict[str, dict[str, Any]]  # name -> the verified export (XCom)
    export_files: dict[str, dict[str, int]]  # name -> files found under its export path (whole ones)
    windows: dict[tuple[str, str], tuple[float, float]]  # (name, role) -> first start, last end
    calls: list[Call]
    checkpoints_left: dict[str, list[str]]
    avhdx_left: list[str]
    leases_left: list[str]
    types_before: dict[str, str]
    types_after: dict[str, str]
    foreign_before: dict[str, bytes]
    foreign_after: dict[str, bytes]
    moves: list[Move] = field(default_factory=list)


def run_digest(run_id: str, vm_id: str) -> str:
    """The hash part of this run's checkpoint name and export folders (hyperv.names.checkpoint_name)."""
    return hashlib.sha256(f"{DAG_ID}\0{run_id}\0{vm_id.lower()}".encode()).hexdigest()[:12]


def step_node(obs: Observed, vm: str, cmdlet: str) -> str | None:
    """The node where this run's (last successful) ``cmdlet`` for ``vm`` ran."""
    nodes = [c.node for c in obs.calls if c.cmdlet == cmdlet and c.outcome == "ok" and owned(obs, vm, c)]
    return nodes[-1] if nodes else None


def owned(obs: Observed, vm: str, call: Call) -> bool:
    """``call`` is about ``vm``'s checkpoint of this run (its name's hash, or its Id)."""
    if obs.digests[vm] in call.text:
        return True
    return any(cp in call.text for cp in checkpoint_ids(obs, vm))


def checkpoint_ids(obs: Observed, vm: str) -> set[str]:
    made = [
        c
        for c in obs.calls
        if c.cmdlet == "Checkpoint-VM" and c.outcome == "ok" and obs.digests[vm] in c.text
    ]
    ids = {
        t
        for c in made
        for t in re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", c.text)
    }
    ids.discard(obs.vms[vm])
    return ids


def within(obs: Observed, vm: str, roles: tuple[str, ...], t: float) -> bool:
    return any((w := obs.windows.get((vm, r))) is not None and w[0] <= t <= w[1] for r in roles)


def check_run(obs: Observed) -> list[str]:
    """Every invariant of the run; each problem names the VM and what is wrong."""
    problems: list[str] = []
    root = f"{ROOT.lower()}\\{CLUSTER}\\"
    for vm, vm_id in obs.vms.items():
        row = obs.rows.get(vm)
        if row is None or not str(row.get("outcome", "")).startswith("protected"):
            problems.append(f"{vm}: report says {row and row.get('outcome')!r}, not protected")
        export = obs.exports.get(vm)
        if not export:
            problems.append(f"{vm}: no verified export")
        else:
            if not export["path"].lower().startswith(f"{root}{vm_id}\\"):
                problems.append(f"{vm}: export {export['path']} is not under {root}{vm_id}\\")
            wanted = {f["path"]: f["length"] for f in export["files"]}
            if obs.export_files.get(vm) != wanted:
                problems.append(f"{vm}: export {export['path']} is not what it verified")
        made = [
            c
            for c in obs.calls
            if c.cmdlet == "Checkpoint-VM" and c.outcome == "ok" and obs.digests[vm] in c.text
        ]
        if len(made) != 1:
            problems.append(f"{vm}: {len(made)} Checkpoint-VM calls made a checkpoint (one per run)")
        for cp in sorted(checkpoint_ids(obs, vm)):
            removals = [c for c in obs.calls if c.cmdlet == "Remove-VMSnapshot" and cp in c.text]
            if len(removals) != 1:
                problems.append(
                    f"{vm}: its checkpoint was removed {len(removals)} times (once, by its merge)"
                )
            for call in removals:
                if not within(obs, vm, ("merge", "create"), call.wall_time):
                    problems.append(
                        f"{vm}: its checkpoint was removed outside its own merge (on {call.node})"
                    )
        if obs.checkpoints_left.get(vm):
            problems.append(f"{vm}: checkpoints left: {obs.checkpoints_left[vm]}")
        if obs.types_after.get(vm) != obs.types_before.get(vm):
            problems.append(f"{vm}: CheckpointType {obs.types_before.get(vm)} -> {obs.types_after.get(vm)}")
    made_by_no_vm = [c for c in obs.calls if c.cmdlet == "Checkpoint-VM" and c.outcome == "ok"
                     and not any(d in c.text for d in obs.digests.values())]  # fmt: skip
    if made_by_no_vm:
        problems.append(f"{len(made_by_no_vm)} checkpoint(s) no VM of the run owns")
    if obs.avhdx_left:
        problems.append(f"AVHDX files left: {obs.avhdx_left}")
    if obs.leases_left:
        problems.append(f"lease files left: {obs.leases_left}")
    # Files and folders: only a VM's own lease (in its create or merge) and its own export folders (in its
    # export task) are removed or moved; nothing else, the foreign exports least of all.
    for call in obs.calls:
        if call.cmdlet not in ("Remove-Item", "Move-Item"):
            continue
        vm = next((v for v, i in obs.vms.items() if f"{i}.lease" in call.text), None)
        if vm is not None:
            if not within(obs, vm, ("create", "merge"), call.wall_time):
                problems.append(f"{call.cmdlet} of {vm}'s lease outside its checkpoint and merge tasks")
            continue
        vm = next((v for v, d in obs.digests.items() if d in call.text), None)
        if vm is None:
            problems.append(f"{call.cmdlet} on something no VM of the run owns: {call.text[:160]}")
        elif not within(obs, vm, ("export",), call.wall_time):
            problems.append(f"{call.cmdlet} on {vm}'s export outside its export task")
    if obs.foreign_after != obs.foreign_before:
        problems.append("a foreign export (another cluster's, a node's own) was changed or removed")
    problems += move_problems(obs)
    return problems


def move_problems(obs: Observed) -> list[str]:
    """The VMs really moved during the run: the moves of a VM between two of its steps chain from the node
    where the step before ran to the node where the step after ran, and every VM moved at least once."""
    problems = []
    legs: dict[tuple[str, tuple[str, str]], list[Move]] = {}
    for move in obs.moves:
        legs.setdefault((move.vm, move.between), []).append(move)
    for (vm, between), moves in legs.items():
        before, after = (step_node(obs, vm, c) for c in between)
        path = [moves[0].source] + [m.target for m in moves]
        chained = all(a.target == b.source for a, b in itertools.pairwise(moves))
        if not chained or path[0] != before or path[-1] != after:
            problems.append(
                f"{vm}: moved {' -> '.join(path)} ({', '.join(m.how for m in moves)}) between {between[0]} "
                f"and {between[1]}, but those ran on {before} and {after}"
            )
    unmoved = sorted(set(obs.vms) - {m.vm for m in obs.moves})
    if unmoved:
        problems.append(f"never moved during the run: {unmoved}")
    return problems


# -- the controller: the cluster's moves, at the gates ----------------------------------------------------
def first_blocked(*gates: Any) -> Any:
    """The first of ``gates`` a call is held at (one call runs at a time under ``dag.test()``)."""
    deadline = time.monotonic() + HOLD
    while time.monotonic() < deadline:
        for gate in gates:
            if gate.blocked:
                return gate
        time.sleep(0.01)
    raise AssertionError(f"no call reached any of {[g.cmdlet for g in gates]}")


class Controller:
    """Runs P1 and P2 (module docstring) in a thread beside ``dag.test()``."""

    def __init__(self, emu: Any, vms: dict[str, str]):
        self.emu, self.vms = emu, vms
        self.cluster = emu.cluster()
        self.moves: list[Move] = []
        self.errors: list[str] = []
        self.failed_node: str | None = None
        self.held_seen = False
        self.reads_during_export = 0  # cluster reads of the first VM let through while it exported
        self.exporting_at_p2: list[str] = []  # VMs whose export was still to come at the first merge
        self.gates: list[Any] = []
        self.helper: threading.Thread | None = None
        self.thread = threading.Thread(target=self._run, name="cluster-controller", daemon=True)

    def gate(self, cmdlet: str, vm: str) -> Any:
        gate = self.emu.faults.gate(cmdlet, vm=self.vms[vm])
        self.gates.append(gate)
        return gate

    def owner(self, vm: str) -> str:
        return str(self.cluster.owner_of(uuid.UUID(self.vms[vm])))

    def next_up(self, node: str, avoid: set[str]) -> str:
        nodes = list(self.cluster.nodes)
        order = nodes[nodes.index(node) + 1 :] + nodes[: nodes.index(node)]
        return next(n for n in order if n not in avoid and n in self.cluster.up_nodes())

    def done(self, vm: str, cmdlet: str) -> bool:
        vm_id = self.vms[vm]
        return any(
            e.outcome == "ok" and (vm_id in " ".join(e.targets).lower() or vm_id in str(e.parameters).lower())
            for e in self.emu.audit.entries(cmdlet=cmdlet)
        )

    def release_all(self) -> None:
        for gate in self.gates:
            gate.release()

    def _run(self) -> None:
        try:
            self._phases()
        except BaseException as exc:  # reported by the test after the run
            self.errors.append(f"controller: {type(exc).__name__}: {exc}")
        finally:
            self.release_all()

    def vm_named_in(self, text: str) -> str:
        """The VM a held call is about: its Id, or the Id of a checkpoint this run made of it."""
        low = text.lower()
        for vm, vm_id in self.vms.items():
            if vm_id in low:
                return vm
        for entry in self.emu.audit.entries(cmdlet="Checkpoint-VM"):
            ids = [t.lower() for t in entry.targets]
            for vm, vm_id in self.vms.items():
                if vm_id in ids and any(t in low for t in ids if t != vm_id):
                    return vm
        raise AssertionError(f"no VM of the run in the held call {text!r}")

    def _phases(self) -> None:
        p1 = self.emu.faults.gate("Export-VMSnapshot")  # the first export of the run, whichever VM
        self.gates.append(p1)
        if not p1.wait_blocked(HOLD):
            raise AssertionError("the run never reached an Export-VMSnapshot")
        first = self.vm_named_in(
            p1.held
        )  # its export task holds it: it moves later, between export and merge
        # P1: every VM with its checkpoint and no export yet moves; one stays in flight until a task meets it.
        waiting = [v for v in self.vms if v != first and self.done(v, "Checkpoint-VM")
                   and not self.done(v, "Export-VMSnapshot")]  # fmt: skip
        if len(waiting) != len(self.vms) - 1:
            raise AssertionError(f"P1: only {waiting} between checkpoint and export")
        between = ("Checkpoint-VM", "Export-VMSnapshot")
        for vm in waiting:
            source = self.owner(vm)
            target = self.next_up(source, set())
            if vm == waiting[0]:
                migration = self.cluster.start_live_migration(
                    uuid.UUID(self.vms[vm]), target, until_completed=True
                )
                self.moves.append(Move(vm, source, target, between, "held live migration"))
                self.helper = threading.Thread(
                    target=self._complete_when_seen, args=(vm, migration), daemon=True
                )
                self.helper.start()
            else:
                self.cluster.live_migrate(uuid.UUID(self.vms[vm]), target)
                self.moves.append(Move(vm, source, target, between, "live migration"))
        # The next time anything asks the cluster about the first VM after its export (its retention or its
        # merge: they run side by side), it moves, unless another VM's merge comes first: then the first
        # VM is one of those P2 moves. (Tasks resolve a VM by its name: Get-ClusterGroup -Name, what the
        # gate matches.)
        again = self.emu.faults.gate("Get-ClusterGroup", vm=first)
        self.gates.append(again)
        p2 = self.emu.faults.gate("Remove-VMSnapshot")  # the first merge of the run; armed before any starts
        self.gates.append(p2)
        p1.release()
        # The export task itself asks about the VM while its export runs (each progress read goes to the
        # owner node): those reads pass, each behind a fresh gate armed before the held one is let go,
        # until a call comes after the export.
        while first_blocked(again, p2) is again and not self.done(first, "Export-VMSnapshot"):
            self.reads_during_export += 1
            passing, again = again, self.emu.faults.gate("Get-ClusterGroup", vm=first)
            self.gates.append(again)
            passing.release()
        if again.blocked:
            if self.done(first, "Remove-VMSnapshot"):
                raise AssertionError(f"{first} was asked about only after its merge")
            source = self.owner(first)
            target = self.next_up(source, set())
            self.cluster.live_migrate(uuid.UUID(self.vms[first]), target)
            self.moves.append(
                Move(first, source, target, ("Export-VMSnapshot", "Remove-VMSnapshot"), "live migration")
            )
        again.release()  # held: it goes on where the VM is now; not reached yet: it holds nothing
        if not p2.wait_blocked(HOLD):
            raise AssertionError("the run never reached a Remove-VMSnapshot")
        held = self.vm_named_in(p2.held)
        between = ("Export-VMSnapshot", "Remove-VMSnapshot")
        # P2: the other exported, unmerged VMs move again, and a node goes down: not the held VM's, not the
        # first the connection names. Its VMs fail over to the next node (one is sent there first if none
        # is on it); the others live-migrate to a node that stays up.
        held_node = self.owner(held)
        first_node = next(iter(self.cluster.nodes))
        down = next(n for n in reversed(list(self.cluster.nodes)) if n not in (held_node, first_node))
        pending = [v for v in self.vms if v != held and self.done(v, "Export-VMSnapshot")
                   and not self.done(v, "Remove-VMSnapshot")]  # fmt: skip
        # The first merge of the run: no VM is merged yet. A VM whose export is still to come (a retry; the
        # merges run beside the retention, not after every export) moved in P1 and is left alone here.
        if not pending or any(self.done(v, "Remove-VMSnapshot") for v in self.vms):
            raise AssertionError(f"P2: only {pending} between export and merge")
        self.exporting_at_p2 = sorted(set(self.vms) - set(pending) - {held})
        sources = {vm: self.owner(vm) for vm in pending}
        stay = {v for v in pending if sources[v] == down}
        if not stay:
            sent = next(v for v in pending if sources[v] != down)
            self.cluster.live_migrate(uuid.UUID(self.vms[sent]), down)
            stay.add(sent)
        for vm in pending:
            if vm not in stay:
                target = self.next_up(sources[vm], {down})
                self.cluster.live_migrate(uuid.UUID(self.vms[vm]), target)
                self.moves.append(Move(vm, sources[vm], target, between, "live migration"))
        # A VM whose export is still to come and that has not moved yet (the first VM, when its export
        # failed and is retried after another VM's merge began) moves now, before its export.
        for vm in self.exporting_at_p2:
            source = self.owner(vm)
            if source != down and not any(m.vm == vm for m in self.moves):
                target = self.next_up(source, {down})
                self.cluster.live_migrate(uuid.UUID(self.vms[vm]), target)
                self.moves.append(
                    Move(vm, source, target, ("Checkpoint-VM", "Export-VMSnapshot"), "live migration")
                )
        moved = self.cluster.fail_node(down)
        self.failed_node = down
        for vm in stay:
            how = "failover" if sources[vm] == down else "live migration, then failover"
            self.moves.append(Move(vm, sources[vm], moved[vm], between, how))
        for vm in self.exporting_at_p2:  # its export is still to come: it fails over before it
            if vm in moved:
                self.moves.append(
                    Move(vm, down, moved[vm], ("Checkpoint-VM", "Export-VMSnapshot"), "failover")
                )
        p2.release()
        assert self.helper is not None
        self.helper.join(HOLD)

    def _complete_when_seen(self, vm: str, migration: Any) -> None:
        """The held migration ends once a task asked the cluster about the VM and was told it moves."""
        if not migration.wait_seen(HOLD):
            self.errors.append(f"no task met {vm} while it moved")
        self.held_seen = not self.done(vm, "Export-VMSnapshot")  # met before its export, not after
        migration.complete()


# -- reading back -------------------------------------------------------------------------------------------
ROOT = "C:\\ClusterStorage\\Volume2\\Backups"
FOREIGN = {
    "another cluster's": "hvc-02\\{id}\\20260101T0100Z-aaaaaaaaaaaa\\Virtual Hard Disks\\{vm}.vhdx",
    "a node's own": "hv-n1\\{id}\\20260101T0100Z-bbbbbbbbbbbb\\Virtual Hard Disks\\{vm}.vhdx",
}


def foreign_files(emu: Any) -> dict[str, bytes]:
    fs = emu.host("hv-n1").fs
    found = {}
    for top in ("hvc-02", "hv-n1"):
        real = fs.to_real(f"{ROOT}\\{top}")
        for p in sorted(real.rglob("*")) if real.exists() else []:
            if p.is_file():
                found[str(p.relative_to(real.parent))] = p.read_bytes()
    return found


def vm_model(emu: Any, vm_id: str) -> Any:
    owner = emu.cluster().owner_of(uuid.UUID(vm_id))
    return next(v for v in emu.host(owner).vms() if str(v.id).lower() == vm_id)


def windows(run: Any, names: list[str]) -> dict[tuple[str, str], tuple[float, float]]:
    """Per VM and role (create, export, merge): from the first try's start to the last try's end."""
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.utils.session import create_session

    with create_session() as session:
        history = session.query(TaskInstanceHistory).filter_by(dag_id=DAG_ID, run_id=run.run_id).all()
        tries = [(h.task_id, h.map_index, h.start_date, h.end_date) for h in history]
    tries += [(t.task_id, t.map_index, t.start_date, t.end_date) for t in run.get_task_instances()]
    out: dict[tuple[str, str], tuple[float, float]] = {}
    for task_id, index, start, end in tries:
        leaf = task_id.rsplit(".", 1)[-1]
        role = {"production_checkpoint": "create", "standard_checkpoint": "create", "merge": "merge",
                "export_production": "export", "export_standard": "export"}.get(leaf)  # fmt: skip
        if role is None or index < 0 or start is None or end is None:
            continue
        key = (names[index], role)
        lo, hi = out.get(key, (start.timestamp(), end.timestamp()))
        out[key] = (min(lo, start.timestamp()), max(hi, end.timestamp()))
    return out


def xcom(run: Any, task_id: str, map_index: int = -1, key: str = "return_value") -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=DAG_ID, run_id=run.run_id, task_id=task_id, map_index=map_index, key=key)
            .one_or_none()
        )
        return None if row is None else XComModel.deserialize_value(row)


def observe(
    emu: Any, run: Any, vms: dict[str, str], before: dict[str, str], foreign: dict[str, bytes]
) -> Observed:
    from hyperv_emulator.model.paths import read_standin_header, standin_bytes

    names = [spec["vm"] for spec in xcom(run, "host_hvc_01_vms")]
    rows = {r["vm"]: r for r in xcom(run, "report", key="report") or []}
    exports: dict[str, dict[str, Any]] = {}
    files: dict[str, dict[str, int]] = {}
    fs = emu.host("hv-n1").fs
    for index, vm in enumerate(names):
        export = xcom(run, "host_hvc_01.export_production", index) or xcom(
            run, "host_hvc_01.export_standard", index
        )
        if not export:
            continue
        exports[vm] = export
        folder = fs.to_real(export["path"])
        found = [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
        files[vm] = {
            str(p.relative_to(folder)).replace("/", "\\").lower(): fs.logical_size(p)
            for p in found
            if (h := read_standin_header(p)) is not None and p.read_bytes() == standin_bytes(h)
        }
    calls = [
        Call(
            e.cmdlet,
            e.host,
            (" ".join(e.parameters.values()) + " " + " ".join(e.targets)).lower(),
            e.outcome,
            e.wall_time,
        )
        for e in emu.audit.entries()
        if e.cmdlet in ("Checkpoint-VM", "Export-VMSnapshot", "Remove-VMSnapshot", "Remove-Item", "Move-Item")
    ]
    for host in emu.fleet.hosts.values():
        host.settle()
    export_real = fs.to_real(ROOT)
    return Observed(
        vms=vms,
        digests={vm: run_digest(run.run_id, vm_id) for vm, vm_id in vms.items()},
        rows=rows,
        exports=exports,
        export_files=files,
        windows=windows(run, names),
        calls=calls,
        checkpoints_left={vm: [c.name for c in vm_model(emu, i).checkpoints] for vm, i in vms.items()},
        avhdx_left=sorted(
            str(p)
            for p in emu.root_dir.rglob("*")
            if p.suffix.lower() == ".avhdx" and export_real not in p.parents
        ),
        leases_left=sorted(str(p) for p in emu.root_dir.rglob("*.lease")),
        types_before=before,
        types_after={vm: vm_model(emu, i).checkpoint_type.name for vm, i in vms.items()},
        foreign_before=foreign,
        foreign_after=foreign_files(emu),
    )


# -- the test ---------------------------------------------------------------------------------------------
@pytest.fixture
def cluster(airflow_db, tmp_path, monkeypatch):
    from hyperv_emulator.api import Emulator

    monkeypatch.setattr(ClusterRouter, "poll_interval", 0.05)
    with Emulator(FLEET, root_dir=tmp_path / "hosts", auth="basic", time_scale=1000.0) as emu:
        monkeypatch.setenv(
            "AIRFLOW_CONN_HYPERV_HVC_01", connection_uri(**emu.cluster_connection().as_fields())
        )
        set_pools({"hyperv_hvc_01": 4})
        yield emu


def test_the_nightly_run_protects_every_vm_of_a_cluster_while_they_move(cluster):
    inventory = yaml.safe_load(INVENTORY.read_text())
    names = [v["name"] for v in inventory["hosts"][0]["vms"]]
    groups = {g.name: str(g.vm_id).lower() for g in cluster.cluster().groups.values()}
    vms = {name: groups[name] for name in names}
    assert len(vms) == 10 and len({cluster.cluster().owner_of(uuid.UUID(i)) for i in vms.values()}) == 4
    before = {vm: vm_model(cluster, i).checkpoint_type.name for vm, i in vms.items()}
    fs = cluster.host("hv-n1").fs
    for what, pattern in FOREIGN.items():
        path = f"{ROOT}\\" + pattern.format(id=vms["sql-01"], vm="sql-01")
        fs.write_standin(path, {"kind": "foreign export", "whose": what}, 20 << 30)
    foreign = foreign_files(cluster)
    cluster.faults.inject("disk-full-during-export", vm=vms[FULL_DISK])
    # Transport faults narrow to a VM by name only (wsman/pipeline.py) and the chain names VMs by Id:
    # the first Checkpoint-VM of the run, whichever VM it is for.
    cluster.faults.inject("drop-after-run", cmdlet="Checkpoint-VM")

    dag = write_cluster_dag()
    controller = Controller(cluster, vms)
    controller.thread.start()
    try:
        run = dag.test()
    finally:
        controller.release_all()
        controller.thread.join(HOLD)
    assert controller.errors == [], controller.errors
    states = {(t.task_id, t.map_index): str(t.state) for t in run.get_task_instances()}
    assert str(run.state) == "success", {k: v for k, v in states.items() if v not in ("success", "skipped")}

    # The faults really happened: an export retried after the full disk, a lost answer re-checked.
    fired = sorted(f.fault.value for f in cluster.faults.fired)
    assert fired == ["disk-full-during-export", "drop-after-run"], fired
    retried = [
        t for t in run.get_task_instances() if t.task_id.endswith("export_production") and t.try_number > 1
    ]
    assert len(retried) == 1, [(t.map_index, t.try_number) for t in retried]
    # The moves: P1 held one migration that a task met before its export; a node went down.
    assert controller.held_seen and controller.failed_node is not None
    assert {"live migration", "held live migration"} <= {m.how for m in controller.moves}
    assert any(m.how.endswith("failover") for m in controller.moves)

    obs = observe(cluster, run, vms, before, foreign)
    obs.moves = controller.moves
    assert check_run(obs) == [], (check_run(obs), controller.moves)
    assert {m.how for m in obs.moves} >= {"live migration", "held live migration"}

    # Positive controls: the same observation, doctored, breaks each invariant by name.
    for doctor, expected in DOCTORED:
        bad = doctor(copy.deepcopy(obs))
        problems = check_run(bad)
        assert any(expected in p for p in problems), (expected, problems)


def _unprotect(o: Observed) -> Observed:
    o.rows["dc-01"]["outcome"] = "failed at export_production"
    return o


def _second_checkpoint(o: Observed) -> Observed:
    made = next(
        c
        for c in o.calls
        if c.cmdlet == "Checkpoint-VM" and c.outcome == "ok" and o.digests["web-01"] in c.text
    )
    o.calls.append(dataclasses.replace(made, wall_time=made.wall_time + 0.5))
    return o


def _removed_twice(o: Observed) -> Observed:
    removal = next(c for c in o.calls if c.cmdlet == "Remove-VMSnapshot" and owned(o, "app-01", c))
    o.calls.append(dataclasses.replace(removal, outcome="error"))
    return o


def _removed_by_another_merge(o: Observed) -> Observed:
    removal = next(c for c in o.calls if c.cmdlet == "Remove-VMSnapshot" and owned(o, "file-01", c))
    removal.wall_time = o.windows[("web-03", "merge")][0] + 1e-3
    return o


def _export_not_whole(o: Observed) -> Observed:
    files = o.export_files["sql-02"]
    files.pop(next(iter(files)))
    return o


def _export_elsewhere(o: Observed) -> Observed:
    o.exports["lin-01"] = {
        **o.exports["lin-01"],
        "path": o.exports["lin-01"]["path"].replace("hvc-01", "hv-n4"),
    }
    return o


def _foreign_touched(o: Observed) -> Observed:
    o.foreign_after = {k: v for k, v in list(o.foreign_after.items())[1:]}
    o.calls.append(Call("Remove-Item", "hv-n1", f"{ROOT.lower()}\\hvc-02", "ok", o.calls[-1].wall_time))
    return o


def _left_behind(o: Observed) -> Observed:
    o.checkpoints_left["web-01"] = ["airflow-hyperv ..."]
    o.avhdx_left = ["C:\\ClusterStorage\\Volume1\\web-01\\web-01_0A1B.avhdx"]
    o.leases_left = [f"{LEASES}\\{o.vms['web-01']}.lease"]
    return o


def _type_changed(o: Observed) -> Observed:
    o.types_after["sql-01"] = "ProductionOnly"
    return o


def _never_moved(o: Observed) -> Observed:
    o.moves = [m for m in o.moves if m.vm != "app-02"]
    return o


def _moved_at_another_time(o: Observed) -> Observed:
    move = next(m for m in o.moves if m.between == ("Checkpoint-VM", "Export-VMSnapshot"))
    move.between = ("Export-VMSnapshot", "Remove-VMSnapshot")  # not where it happened
    return o


DOCTORED = [
    (_unprotect, "dc-01: report says 'failed at export_production'"),
    (_second_checkpoint, "web-01: 2 Checkpoint-VM calls"),
    (_removed_twice, "app-01: its checkpoint was removed 2 times"),
    (_removed_by_another_merge, "file-01: its checkpoint was removed outside its own merge"),
    (_export_not_whole, "sql-02: export"),
    (_export_elsewhere, "lin-01: export"),
    (_foreign_touched, "a foreign export"),
    (_foreign_touched, "Remove-Item on something no VM of the run owns"),
    (_left_behind, "web-01: checkpoints left"),
    (_left_behind, "AVHDX files left"),
    (_left_behind, "lease files left"),
    (_type_changed, "sql-01: CheckpointType"),
    (_never_moved, "never moved during the run: ['app-02']"),
    (_moved_at_another_time, "but those ran on"),
]
