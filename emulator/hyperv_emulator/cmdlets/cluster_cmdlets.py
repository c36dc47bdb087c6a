"""Get-ClusterNode and Get-ClusterGroup (FailoverClusters module), on the nodes of an emulated cluster.

Real cmdlets ("Get-ClusterGroup" and "Get-ClusterNode", learn.microsoft.com/powershell/module/failoverclusters):
``Get-ClusterGroup [[-Name] <StringCollection>] [-VMId <Guid>] [-InputObject <PSObject>] [-Cluster <String>]``
(``-Name`` accepts wildcards), ``Get-ClusterNode [[-Name] <StringCollection>] [-InputObject] [-Cluster]``;
without ``-Cluster`` (or with ``.``) they ask the local cluster. A host that is no cluster node has no
FailoverClusters module in this emulator: the commands are not found there (``cluster_only``).

Not modelled: ``-InputObject`` (pipeline input of a cluster or node), the other FailoverClusters cmdlets
(a test moves roles with ``Cluster.start_live_migration`` / ``live_migrate`` / ``fail_node``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from hyperv_emulator.cmdlets.base import Call, cmdlet
from hyperv_emulator.cmdlets.binding import Param
from hyperv_emulator.cmdlets.output_views import ClusterGroupView, ClusterNodeView
from hyperv_emulator.model.cluster import Cluster
from hyperv_emulator.model.errors import ClusterObjectNotFoundError, ClusterUnreachableError
from hyperv_emulator.model.wildcard import WildcardPattern

NS = "Microsoft.FailoverClusters.PowerShell."
CLUSTER = Param("Cluster", "string")


def _cluster(call: Call) -> Cluster:
    cluster = call.host.cluster
    assert cluster is not None  # cluster_only: the command is not found on a host outside a cluster
    wanted = call.get("Cluster")
    if wanted and wanted != "." and wanted.split(".")[0].lower() != cluster.name.lower():
        raise ClusterUnreachableError(wanted)
    cluster.settle()
    return cluster


@cmdlet(
    "Get-ClusterNode",
    NS + "GetNodeCommand",
    [Param("Name", "strings", position=0), CLUSTER],
    cluster_only=True,
)
def get_cluster_node(call: Call) -> Iterator[Any]:
    cluster = _cluster(call)
    with cluster.lock:
        names = list(cluster.nodes)
    for wanted in call.get("Name") or ["*"]:
        pattern = WildcardPattern(wanted)
        found = [n for n in names if pattern.match(n)]
        if not found:
            call.error(ClusterObjectNotFoundError("node", wanted), wanted)
        for name in found:
            yield ClusterNodeView(cluster, name)


@cmdlet(
    "Get-ClusterGroup",
    NS + "GetClusterGroupCommand",
    [Param("Name", "strings", position=0), Param("VMId", "guid"), CLUSTER],
    cluster_only=True,
)
def get_cluster_group(call: Call) -> Iterator[Any]:
    cluster = _cluster(call)
    with cluster.lock:
        groups = list(cluster.groups.values())
        if call.has("VMId"):
            vm_id = call.get("VMId")
            groups = [g for g in groups if g.vm_id == vm_id]
            if not groups:
                call.error(ClusterObjectNotFoundError("group", str(vm_id)), str(vm_id))
        if call.has("Name"):
            chosen: list[Any] = []
            for wanted in call.get("Name"):
                pattern = WildcardPattern(wanted)
                hits = [g for g in groups if pattern.match(g.name)]
                if not hits:
                    call.error(ClusterObjectNotFoundError("group", wanted), wanted)
                chosen.extend(g for g in hits if g not in chosen)
            groups = chosen
        for group in groups:
            if group.migration is not None:
                group.migration.seen.set()  # a client was told the role is moving
            call.touch(group.vm_id)
    for group in groups:
        yield ClusterGroupView(cluster, group)
