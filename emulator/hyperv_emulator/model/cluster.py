"""A Hyper-V failover cluster: nodes (emulated hosts), Cluster Shared Volumes every node sees, and VMs
as clustered roles (one cluster group per VM, named after it, owned by one node).

What each behaviour is based on: docs/emulator.md, "Failover clusters". In short:

* a node is Up, Down or Paused (CLUSTER_NODE_STATE); a Down node answers nothing (its WinRM listener
  is gone with it), its roles fail over to the next Up node and a running VM is restarted there;
* a group's ``OwnerNode`` is the node the VM runs on; ``Get-VM`` on any other node does not list it
  (``Get-VM -Id`` there answers ObjectNotFound, like any VM the node does not hold);
* a live migration takes emulated time (or until the test completes it): meanwhile the group is
  ``Pending``, the VM's Status reads "Migrating" on the source node, operations that exclude others
  are refused (InvalidState), and the destination node does not list it yet. When it ends the VM
  object (with its checkpoints, whose files are on the CSV) belongs to the destination node.

All nodes of a cluster share one lock (``Cluster.lock`` replaces each node's own), so moving a VM
from one node's table to another's is atomic and no two node locks are ever taken in turn.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hyperv_emulator.model.clock import Clock
from hyperv_emulator.model.enums import ClusterGroupState, ClusterNodeState, VMState
from hyperv_emulator.model.paths import Volume

if TYPE_CHECKING:
    from hyperv_emulator.model.host import HostModel
    from hyperv_emulator.model.vm import VirtualMachine

# How long a live migration takes when the test gives no time (emulated seconds): *decision*.
DEFAULT_LIVE_MIGRATION_SECONDS = 30.0


@dataclass
class SharedStorage:
    """One Cluster Shared Volume: one real folder that every node mounts at ``volume.mount_point``,
    with one table of logical file sizes (a file one node wrote has the same size on every node)."""

    volume: Volume
    real: Path
    sizes: dict[str, int] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)


class Migration:
    """A live migration in progress. ``seen`` is set once a client was told about it (a Pending group
    or an operation refused while it moves): how a test knows the client met it, without sleeping."""

    def __init__(self, cluster: Cluster, vm_id: uuid.UUID, source: str, target: str, ends_at: float | None):
        self.cluster = cluster
        self.vm_id = vm_id
        self.source = source
        self.target = target
        self.ends_at = ends_at  # None: until complete() is called
        self.seen = threading.Event()
        self.done = threading.Event()

    def wait_seen(self, timeout: float) -> bool:
        return self.seen.wait(timeout)

    def complete(self) -> None:
        """End the migration now: the VM belongs to the target node from here on."""
        with self.cluster.lock:
            if not self.done.is_set():
                self.cluster._finish(self)


@dataclass
class ClusterGroup:
    """A clustered role: a VM's cluster group (named after the VM, like Failover Cluster Manager does)."""

    name: str
    vm_id: uuid.UUID
    owner: str
    id: uuid.UUID
    migration: Migration | None = None


class Cluster:
    """The cluster: its nodes in fleet order, their states, its roles and its shared volumes."""

    def __init__(
        self,
        name: str,
        nodes: dict[str, HostModel],
        clock: Clock,
        shared: list[SharedStorage],
        live_migration_seconds: float = DEFAULT_LIVE_MIGRATION_SECONDS,
    ) -> None:
        self.name = name
        self.nodes = nodes
        self.clock = clock
        self.shared = shared
        self.live_migration_seconds = live_migration_seconds
        self.lock = threading.RLock()
        self.node_state = {n: ClusterNodeState.Up for n in nodes}
        self.groups: dict[uuid.UUID, ClusterGroup] = {}
        self.id = uuid.uuid5(uuid.NAMESPACE_DNS, f"cluster/{name}")
        for host in nodes.values():
            host.lock = self.lock
            host.cluster = self

    # --- roles ---------------------------------------------------------------------------------------

    def add_role(self, vm: VirtualMachine, owner: str) -> ClusterGroup:
        group = ClusterGroup(
            name=vm.name, vm_id=vm.id, owner=owner, id=uuid.uuid5(uuid.NAMESPACE_URL, f"group/{vm.id}")
        )
        self.groups[vm.id] = group
        return group

    def group_state(self, group: ClusterGroup) -> ClusterGroupState:
        """Pending while the VM moves (*unconfirmed*: MS-CMRP ApiGetGroupState says Pending when a
        resource is OnlinePending/OfflinePending); Online for a running VM, Offline for one that is Off."""
        if group.migration is not None:
            return ClusterGroupState.Pending
        vm = self.vm(group)
        if vm is None:
            return ClusterGroupState.Unknown
        return (
            ClusterGroupState.Offline
            if vm.state in (VMState.Off, VMState.OffCritical)
            else ClusterGroupState.Online
        )

    def vm(self, group: ClusterGroup) -> VirtualMachine | None:
        host = self.nodes[group.owner]
        return host._vms.get(group.vm_id)  # under the cluster lock; no settle (we are inside one)

    def owner_of(self, vm_id: uuid.UUID) -> str:
        with self.lock:
            self.settle()
            return self.groups[vm_id].owner

    # --- time ----------------------------------------------------------------------------------------

    def settle(self) -> None:
        """End every live migration whose time is up (called by every node's ``settle``)."""
        with self.lock:
            now = self.clock.now()
            for group in list(self.groups.values()):
                m = group.migration
                if m is not None and m.ends_at is not None and now >= m.ends_at:
                    self._finish(m)

    def mark_seen(self, vm_id: uuid.UUID) -> None:
        group = self.groups.get(vm_id)
        if group is not None and group.migration is not None:
            group.migration.seen.set()

    # --- live migration (test tools: a real cluster moves a role with Move-ClusterVirtualMachineRole) --

    def start_live_migration(
        self, vm_id: uuid.UUID, target: str, *, seconds: float | None = None, until_completed: bool = False
    ) -> Migration:
        """Begin a live migration of a running clustered VM to ``target``. It ends after ``seconds``
        emulated seconds (the cluster's default if None), or only on ``Migration.complete()`` with
        ``until_completed``. Refused for a VM that is not running (live migration needs an online VM:
        CLUSCTL_RESOURCE_VM_START_MIGRATION), busy or merging (*decision*), or a target that is not Up."""
        with self.lock:
            self.settle()
            group = self.groups[vm_id]
            target = self._node_name(target)
            if target == group.owner:
                raise ValueError(f"{group.name} already runs on {target}")
            if self.node_state[target] is not ClusterNodeState.Up:
                raise ValueError(f"node {target} is {self.node_state[target].name}, not Up")
            vm = self.vm(group)
            if vm is None or vm.state is not VMState.Running:
                raise ValueError(f"{group.name} is not running: live migration needs a running VM")
            if vm.busy or vm.merge_until is not None or group.migration is not None:
                raise ValueError(f"{group.name} is busy ({vm.busy or 'merging disks'}): not modelled")
            duration = self.live_migration_seconds if seconds is None else seconds
            ends = None if until_completed else self.clock.now() + duration
            m = Migration(self, vm_id, group.owner, target, ends)
            group.migration = m
            vm.busy = "migrating"
            return m

    def live_migrate(self, vm_id: uuid.UUID, target: str) -> None:
        """A whole live migration at once (between two steps of a run)."""
        self.start_live_migration(vm_id, target, until_completed=True).complete()

    def _finish(self, m: Migration) -> None:
        group = self.groups[m.vm_id]
        vm = self.nodes[m.source].detach_vm(m.vm_id)
        vm.busy = ""
        self.nodes[m.target].attach_vm(vm)
        group.owner = m.target
        group.migration = None
        m.done.set()

    # --- nodes ---------------------------------------------------------------------------------------

    def _node_name(self, name: str) -> str:
        found = next((n for n in self.nodes if n.lower() == name.lower()), None)
        if found is None:
            raise ValueError(f"{name} is not a node of cluster {self.name}")
        return found

    def up_nodes(self) -> list[str]:
        return [n for n, s in self.node_state.items() if s is ClusterNodeState.Up]

    def fail_node(self, name: str) -> dict[str, str]:
        """The node goes down: it answers nothing, and each of its roles fails over to the next Up node
        (in node order after it). A VM that was running is restarted there (its memory is lost with the
        node); its files are on the CSV, so its disks and checkpoints are there too. Returns
        {VM name: new owner}. Refused while one of its VMs is busy or migrating (not modelled)."""
        with self.lock:
            self.settle()
            name = self._node_name(name)
            host = self.nodes[name]
            moving = [
                g
                for g in self.groups.values()
                if g.migration is not None and name in (g.migration.source, g.migration.target)
            ]
            busy = [vm.name for vm in host._vms.values() if vm.busy]
            if moving or busy:
                raise ValueError(
                    f"node {name} has work in flight ({', '.join(busy) or 'a migration'}): not modelled"
                )
            self.node_state[name] = ClusterNodeState.Down
            host.down = True
            order = list(self.nodes)
            after = order[order.index(name) + 1 :] + order[: order.index(name)]
            moved: dict[str, str] = {}
            for group in [g for g in self.groups.values() if g.owner == name]:
                target = next((n for n in after if self.node_state[n] is ClusterNodeState.Up), None)
                if target is None:
                    continue  # no node to fail over to: the role stays with the down node
                vm = host.detach_vm(group.vm_id)
                if vm.state is VMState.Running:
                    vm.started_at = self.clock.now()  # restarted on the new node
                self.nodes[target].attach_vm(vm)
                group.owner = target
                moved[group.name] = target
            return moved

    def restore_node(self, name: str) -> None:
        """The node is back (Up); its roles stay where they failed over to."""
        with self.lock:
            name = self._node_name(name)
            self.node_state[name] = ClusterNodeState.Up
            self.nodes[name].down = False

    def pause_node(self, name: str) -> None:
        """Paused: the node runs, keeps its roles, takes no new ones ("ClusNode.Pause method")."""
        with self.lock:
            self.node_state[self._node_name(name)] = ClusterNodeState.Paused
