"""A ``hyperv`` connection that names a failover cluster: the real hook and pypsrp against the emulated
four-node cluster (fleets/cluster.yaml). The hook asks the cluster where a VM runs, talks to that node,
waits for a live migration, follows a VM that moved, and steps over a node that is down."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

from airflow_hyperv.hooks.cluster import ClusterRouter
from airflow_hyperv.hooks.connection import ConnectionSettings
from airflow_hyperv.hooks.hyperv import HyperVHook
from airflow_hyperv.hyperv.errors import InvalidInputError, OperationInProgressError, VMNotFoundError

CLUSTER_FLEET = Path(__file__).parents[2] / "emulator" / "hyperv_emulator" / "fleets" / "cluster.yaml"


@pytest.fixture
def emulator(tmp_path):
    from hyperv_emulator.api import Emulator

    with Emulator(CLUSTER_FLEET, root_dir=tmp_path / "hosts", auth="basic", time_scale=1000.0) as emu:
        yield emu


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch):
    monkeypatch.setattr(ClusterRouter, "poll_interval", 0.05)


def cluster_settings(emulator, **overrides) -> ConnectionSettings:
    return ConnectionSettings.from_connection(**emulator.cluster_connection(**overrides).as_fields())


def cluster_hook(emulator, **overrides) -> HyperVHook:
    hv = HyperVHook(settings=cluster_settings(emulator, **overrides))
    hv.retry_wait_multiplier, hv.retry_wait_max = 0.01, 0.05
    return hv


def vm_id(emulator, name: str) -> uuid.UUID:
    return next(g.vm_id for g in emulator.cluster().groups.values() if g.name == name)


def audit(emulator, host: str, cmdlet: str) -> list:
    return [e for e in emulator.audit.entries() if e.host == host and e.cmdlet == cmdlet]


def test_a_cluster_connection_is_parsed_and_checked_before_anything_connects(emulator):
    settings = cluster_settings(emulator)
    assert settings.cluster == "hvc-01" and [n for n, _ in settings.nodes] == [
        "hv-n1",
        "hv-n2",
        "hv-n3",
        "hv-n4",
    ]
    assert settings.lease_folder == "C:\\ClusterStorage\\Volume1\\airflow-hyperv\\leases"  # on the CSV
    assert settings.host_label == "hvc-01"
    node = settings.for_node("hv-n3")
    assert (
        node.endpoint.endswith("/hv-n3/wsman")
        and node.node == "hv-n3"
        and node.lease_folder == settings.lease_folder
    )
    with pytest.raises(InvalidInputError, match="is a folder of one node"):
        cluster_settings(emulator, lease_folder="C:\\ProgramData\\airflow-hyperv\\leases")
    assert cluster_settings(emulator, lease_folder="\\\\filer\\leases").lease_folder == "\\\\filer\\leases"
    with pytest.raises(InvalidInputError, match="set 'cluster' too"):
        ConnectionSettings.from_connection(
            host="hv-01", port=None, login="u", password="p", extra={"nodes": ["hv-n1"], "auth": "ntlm"}
        )
    text = ConnectionSettings.from_connection(
        host="hvc-01",
        port=None,
        login="u",
        password="p",
        extra={"cluster": "hvc-01", "nodes": "a, b=10.0.0.2"},
    )
    assert text.nodes == (("a", "a"), ("b", "10.0.0.2")) and text.node_address("B") == "10.0.0.2"
    # A connection to one host is as it was: its own lease folder default, no cluster.
    single = ConnectionSettings.from_connection(**emulator.client_connection("hv-n1").as_fields())
    assert single.cluster is None and single.lease_folder == "C:\\ProgramData\\airflow-hyperv\\leases"


def test_the_hook_finds_the_owner_node_and_acts_there(emulator):
    with cluster_hook(emulator) as hv:
        vm = hv.get_vm(name="dc-01")
        assert hv.node == "hv-n3" and vm.id == vm_id(emulator, "dc-01")
        assert [c.name for c in hv.list_checkpoints(vm.id)] == []
        file01 = hv.resolve_vm(str(vm_id(emulator, "file-01")))
        assert file01.name == "file-01" and hv.node == "hv-n4"
    # The cluster was asked by bound parameters, the VM on its own node only.
    groups = [e for e in emulator.audit.entries() if e.cmdlet == "Get-ClusterGroup"]
    assert {tuple(sorted(e.parameters)) for e in groups} <= {("Name",), ("VMId",)}
    assert {e.host for e in emulator.audit.entries() if e.cmdlet == "Get-VM"} == {"hv-n3", "hv-n4"}


def test_a_vm_that_moved_answers_not_found_on_its_old_node_and_is_followed_once(emulator):
    sql = vm_id(emulator, "sql-01")
    with cluster_hook(emulator) as hv:
        hv.get_vm(vm_id=sql)
        assert hv.node == "hv-n1"
        emulator.cluster().live_migrate(sql, "hv-n4")
        vm, _ = hv.vm_with_checkpoints(sql)  # the hook still works on hv-n1
        assert vm.name == "sql-01" and hv.node == "hv-n4"
    # Positive control: hv-n1 really answered "not found" (the real error), then hv-n4 answered.
    on_n1 = audit(emulator, "hv-n1", "Get-VM")
    assert any("ObjectNotFound,Microsoft.HyperV.PowerShell.Commands.GetVM" in e.errors for e in on_n1)
    assert audit(emulator, "hv-n4", "Get-VM")


def test_a_vm_in_the_middle_of_a_live_migration_is_waited_for(emulator):
    """Held at two gates: the hook's first look at the role (Pending), then its second look. A hook
    that did not wait would act on the VM instead of looking again (and never reach the second gate)."""
    web = vm_id(emulator, "web-02")
    migration = emulator.cluster().start_live_migration(web, "hv-n1", until_completed=True)
    first = emulator.faults.gate("Get-ClusterGroup", vm=str(web))
    second = emulator.faults.gate("Get-ClusterGroup", vm=str(web))
    found: dict = {}

    def resolve() -> None:
        with cluster_hook(emulator) as hv:
            found["vm"] = hv.get_vm(vm_id=web)
            found["node"] = hv.node

    worker = threading.Thread(target=resolve)
    worker.start()
    assert first.wait_blocked(30)
    first.release()
    assert second.wait_blocked(30), "the hook did not look at the moving VM again"
    assert migration.seen.is_set() and not audit(emulator, "hv-n2", "Get-VM")  # nothing asked of the VM yet
    migration.complete()
    second.release()
    worker.join(30)
    assert found["node"] == "hv-n1" and found["vm"].name == "web-02"


def test_the_wait_for_a_live_migration_is_bounded(emulator):
    web = vm_id(emulator, "web-02")
    emulator.cluster().start_live_migration(web, "hv-n1", until_completed=True)
    with (
        cluster_hook(emulator, migration_timeout=0.3) as hv,
        pytest.raises(OperationInProgressError, match="Pending"),
    ):
        hv.get_vm(vm_id=web)


def test_a_node_that_is_down_is_stepped_over_and_its_vms_are_found_where_they_restarted(emulator):
    moved = emulator.cluster().fail_node("hv-n1")
    assert moved == {"sql-01": "hv-n2", "web-01": "hv-n2"}
    with cluster_hook(emulator) as hv:  # hv-n1 is the first node the connection names
        vm = hv.get_vm(name="sql-01")
        assert vm.state.name == "Running" and hv.node == "hv-n2"
        snapshot = hv.host_state()
    assert str(vm_id(emulator, "sql-01")).lower() in snapshot.vms
    assert len(snapshot.vms) == 10  # every clustered VM, from every node that is up (local-01 is on hv-n1)


def test_a_vm_that_is_no_clustered_role_is_not_found_through_the_cluster(emulator):
    with cluster_hook(emulator) as hv, pytest.raises(VMNotFoundError, match="not a clustered role"):
        hv.get_vm(name="local-01")


def test_a_checkpoint_call_without_a_vm_is_refused_on_a_cluster(emulator):
    from airflow_hyperv.hyperv.errors import HyperVError

    with cluster_hook(emulator) as hv, pytest.raises(HyperVError, match="resolve the VM first"):
        hv.get_checkpoint(uuid.uuid4())
