"""The emulated failover cluster (fleets/cluster.yaml), driven through the command host: nodes, roles,
Cluster Shared Volumes, live migration and a node going down (docs/emulator.md, "Failover clusters")."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from hyperv_emulator.cmdlets import AuditLog, HyperVCommandHost
from hyperv_emulator.faults import FaultPlan
from hyperv_emulator.host_runtime import (
    BoundParameter,
    CommandInvocation,
    ErrorSpec,
    PipelineContext,
    TerminatingError,
)
from hyperv_emulator.model import Fleet, ManualClock
from hyperv_emulator.model.fleet import FleetError

FLEETS = Path(__file__).parents[2] / "emulator" / "hyperv_emulator" / "fleets"
CSV1 = "C:\\ClusterStorage\\Volume1"


class Sink:
    def __init__(self) -> None:
        self.output: list[Any] = []
        self.errors: list[ErrorSpec] = []

    def write_output(self, obj: Any) -> None:
        self.output.append(obj)

    def write_error(self, error: ErrorSpec, target_object: Any = None) -> None:
        self.errors.append(error)

    def write_warning(self, message: str) -> None:
        pass

    def write_verbose(self, message: str) -> None:
        pass


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    return Fleet.load(FLEETS / "cluster.yaml", root_dir=tmp_path, clock=ManualClock(), faults=FaultPlan())


def run(fleet: Fleet, node: str, *commands: tuple[str, dict[str, Any]]) -> Sink:
    """One statement (``commands`` piped into each other) on ``node``, as a client would send it."""
    host = HyperVCommandHost(fleet.hosts[node], audit=AuditLog())
    sink = Sink()
    statement = tuple(
        CommandInvocation(name, False, tuple(BoundParameter(k, v) for k, v in params.items()))
        for name, params in commands
    )
    host.run([statement], sink, PipelineContext(node, "u", uuid.uuid4(), uuid.uuid4()))
    return sink


def prop(obj: Any, name: str) -> Any:
    """A property as the client reads it; an enum by its name."""
    value = getattr(obj, name)
    return value.name if hasattr(value, "value") and hasattr(value, "name") else value


def vm_id(fleet: Fleet, name: str) -> uuid.UUID:
    return next(g.vm_id for g in fleet.clusters["hvc-01"].groups.values() if g.name == name)


def test_every_vm_of_a_node_is_a_role_it_owns_and_the_csv_is_one_folder_for_all(fleet: Fleet) -> None:
    cluster = fleet.clusters["hvc-01"]
    owners = {g.name: g.owner for g in cluster.groups.values()}
    assert owners == {
        "sql-01": "hv-n1",
        "web-01": "hv-n1",
        "web-02": "hv-n2",
        "app-01": "hv-n2",
        "dc-01": "hv-n3",
        "sql-02": "hv-n3",
        "web-03": "hv-n3",
        "file-01": "hv-n4",
        "lin-01": "hv-n4",
        "app-02": "hv-n4",
    }
    assert "local-01" not in owners  # clustered: false
    n1, n4 = fleet.hosts["hv-n1"].fs, fleet.hosts["hv-n4"].fs
    n1.write_standin(f"{CSV1}\\probe.bin", {"kind": "probe"}, 7 << 30)
    assert n4.to_real(f"{CSV1}\\probe.bin") == n1.to_real(f"{CSV1}\\probe.bin")
    assert n4.logical_size(n4.to_real(f"{CSV1}\\PROBE.bin")) == 7 << 30
    assert n4.free(n4.volume_for(CSV1)) == n1.free(n1.volume_for(CSV1))
    assert n1.free("C") == 140 << 30  # C: counts nothing of the CSV
    assert n1.to_real("D:\\VMs") != n4.root / "D"  # a node's own drives stay its own


def test_a_clustered_vm_must_live_on_shared_storage(tmp_path: Path) -> None:
    fleet = {
        "clusters": [{"name": "c1", "nodes": ["a", "b"], "shared_volumes": {CSV1: {"capacity_gb": 100}}}],
        "hosts": [{"name": "a", "vms": [{"name": "v", "path": "C:\\Hyper-V\\v"}]}, {"name": "b"}],
    }
    with pytest.raises(FleetError, match="a clustered VM lives on the cluster's shared volumes"):
        Fleet.load(fleet, root_dir=tmp_path / "1", clock=ManualClock(), faults=FaultPlan())
    fleet["hosts"][0]["vms"][0]["clustered"] = False  # type: ignore[index]
    Fleet.load(fleet, root_dir=tmp_path / "2", clock=ManualClock(), faults=FaultPlan())  # positive control
    with pytest.raises(FleetError, match="'z' is not a host of this fleet"):
        Fleet.load(
            {
                **fleet,
                "clusters": [{"name": "c1", "nodes": ["z"], "shared_volumes": {CSV1: {"capacity_gb": 1}}}],
            },
            root_dir=tmp_path / "3",
            clock=ManualClock(),
            faults=FaultPlan(),
        )


def test_get_cluster_node_and_group_answer_with_real_types_and_values(fleet: Fleet) -> None:
    nodes = run(fleet, "hv-n3", ("Get-ClusterNode", {})).output
    assert [prop(n, "Name") for n in nodes] == ["hv-n1", "hv-n2", "hv-n3", "hv-n4"]
    assert nodes[0].PSObject.type_names[0] == "Microsoft.FailoverClusters.PowerShell.ClusterNode"
    assert {prop(n, "State") for n in nodes} == {"Up"}
    group = run(fleet, "hv-n3", ("Get-ClusterGroup", {"Name": ["sql-01"]})).output
    assert len(group) == 1 and prop(group[0], "OwnerNode") == "hv-n1" and prop(group[0], "State") == "Online"
    assert prop(group[0], "GroupType") == "VirtualMachine" and int(group[0].GroupType.value) == 111
    by_id = run(fleet, "hv-n2", ("Get-ClusterGroup", {"VMId": vm_id(fleet, "dc-01")})).output
    assert [prop(g, "Name") for g in by_id] == ["dc-01"]
    assert (
        len(run(fleet, "hv-n1", ("Get-ClusterGroup", {"Name": ["web-*"]})).output) == 3
    )  # -Name takes wildcards
    own = run(fleet, "hv-n1", ("Get-ClusterGroup", {"Name": ["dc-01"], "Cluster": "hvc-01"})).output
    assert len(own) == 1  # -Cluster naming its own cluster


def test_what_a_cluster_cannot_answer_is_an_error_and_no_cluster_means_no_cmdlets(
    fleet: Fleet, tmp_path: Path
) -> None:
    missing = run(fleet, "hv-n1", ("Get-ClusterGroup", {"Name": ["nope"]}))
    assert not missing.output and missing.errors[0].category == "ObjectNotFound"
    other = run(fleet, "hv-n1", ("Get-ClusterGroup", {"Cluster": "other-cluster"}))
    assert not other.output and other.errors[0].fully_qualified_error_id.startswith("ClusterCmdletException")
    standalone = Fleet.load(
        FLEETS / "example.yaml", root_dir=tmp_path / "x", clock=ManualClock(), faults=FaultPlan()
    )
    with pytest.raises(TerminatingError) as err:
        run(standalone, "hv-01", ("Get-ClusterGroup", {}))
    assert err.value.error.fully_qualified_error_id == "CommandNotFoundException"


def test_a_live_migration_is_pending_refuses_checkpoints_and_then_the_vm_answers_only_on_its_new_node(
    fleet: Fleet,
) -> None:
    cluster = fleet.clusters["hvc-01"]
    sql = vm_id(fleet, "sql-01")
    assert not run(fleet, "hv-n1", ("Checkpoint-VM", {"Name": ["sql-01"], "SnapshotName": "before"})).errors
    migration = cluster.start_live_migration(sql, "hv-n2", until_completed=True)
    assert not migration.seen.is_set()
    group = run(fleet, "hv-n4", ("Get-ClusterGroup", {"VMId": sql})).output[0]
    assert (
        prop(group, "State") == "Pending" and prop(group, "OwnerNode") == "hv-n1" and migration.seen.is_set()
    )
    moving = run(fleet, "hv-n1", ("Get-VM", {"Id": sql})).output[0]
    assert prop(moving, "Status") == "Migrating"
    refused = run(fleet, "hv-n1", ("Get-VM", {"Id": sql}), ("Checkpoint-VM", {"SnapshotName": "during"}))
    assert (
        refused.errors[0].fully_qualified_error_id
        == "InvalidState,Microsoft.HyperV.PowerShell.Commands.CheckpointVM"
    )
    not_yet = run(fleet, "hv-n2", ("Get-VM", {"Id": sql}))
    assert not not_yet.output and not_yet.errors[0].fully_qualified_error_id.startswith("ObjectNotFound,")
    migration.complete()
    gone = run(fleet, "hv-n1", ("Get-VM", {"Id": sql}))
    assert not gone.output
    assert (
        gone.errors[0].fully_qualified_error_id == "ObjectNotFound,Microsoft.HyperV.PowerShell.Commands.GetVM"
    )
    assert "unable to find a virtual machine" in gone.errors[0].message
    here = run(fleet, "hv-n2", ("Get-VM", {"Id": sql}), ("Get-VMSnapshot", {})).output
    assert [prop(o, "Name") for o in here] == ["before"]  # the checkpoint moved with it
    after = run(fleet, "hv-n3", ("Get-ClusterGroup", {"VMId": sql})).output[0]
    assert prop(after, "State") == "Online" and prop(after, "OwnerNode") == "hv-n2"


def test_a_timed_live_migration_ends_by_the_clock_and_busy_vms_are_not_moved(fleet: Fleet) -> None:
    cluster, clock = fleet.clusters["hvc-01"], fleet.hosts["hv-n1"].clock
    web = vm_id(fleet, "web-02")
    cluster.start_live_migration(web, "hv-n3", seconds=20)
    assert cluster.owner_of(web) == "hv-n2"
    clock.advance(19.9)  # type: ignore[attr-defined]
    assert cluster.owner_of(web) == "hv-n2"
    clock.advance(0.2)  # type: ignore[attr-defined]
    assert cluster.owner_of(web) == "hv-n3"
    with pytest.raises(ValueError, match="already runs on"):
        cluster.start_live_migration(web, "hv-n3")
    off = fleet.hosts["hv-n1"].vms()[1]
    off.state = type(off.state).Off
    with pytest.raises(ValueError, match="live migration needs a running VM"):
        cluster.start_live_migration(off.id, "hv-n2")


def test_a_node_going_down_answers_nothing_and_its_roles_restart_on_the_next_up_node(fleet: Fleet) -> None:
    cluster = fleet.clusters["hvc-01"]
    moved = cluster.fail_node("hv-n2")
    assert moved == {"web-02": "hv-n3", "app-01": "hv-n3"}
    assert fleet.hosts["hv-n2"].down and not HyperVCommandHost(fleet.hosts["hv-n2"]).reachable
    nodes = run(fleet, "hv-n1", ("Get-ClusterNode", {})).output
    assert {prop(n, "Name"): prop(n, "State") for n in nodes}["hv-n2"] == "Down"
    app = run(fleet, "hv-n3", ("Get-VM", {"Name": ["app-01"]})).output
    assert len(app) == 1 and prop(app[0], "State") == "Running"
    with pytest.raises(ValueError, match="is Down, not Up"):
        cluster.start_live_migration(vm_id(fleet, "dc-01"), "hv-n2")
    cluster.restore_node("hv-n2")
    assert cluster.owner_of(vm_id(fleet, "app-01")) == "hv-n3"  # roles do not fail back by themselves
