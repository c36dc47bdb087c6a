"""Small read-only views the cmdlets emit for things that are not model objects of their own."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hyperv_emulator.model.checkpoint import Checkpoint
from hyperv_emulator.model.cluster import Cluster, ClusterGroup
from hyperv_emulator.model.host import HostModel
from hyperv_emulator.model.paths import Volume
from hyperv_emulator.model.vm import HardDrive, IntegrationService, VirtualMachine


@dataclass(frozen=True)
class IntegrationView:
    vm: VirtualMachine
    service: IntegrationService


@dataclass(frozen=True)
class DriveView:
    vm: VirtualMachine
    drive: HardDrive
    snapshot: Checkpoint | None = None  # set for a checkpoint's own drive (Get-VMHardDiskDrive -VMSnapshot)


@dataclass(frozen=True)
class HostView:
    host: HostModel


@dataclass(frozen=True)
class FileItem:
    """A file or directory on the host, by its real path (serialised as FileInfo / DirectoryInfo)."""

    host: HostModel
    real: Path


@dataclass(frozen=True)
class FileHashView:
    algorithm: str
    hash: str
    path: str


@dataclass(frozen=True)
class DriveInfoView:
    """A drive as Get-PSDrive shows it (PSDriveInfo)."""

    host: HostModel
    volume: Volume


@dataclass(frozen=True)
class NetworkAdapterView:
    """The one network adapter of a VM (model/importing.py)."""

    vm: VirtualMachine


@dataclass(frozen=True)
class VolumeView:
    """A volume as Get-Volume shows it (an MSFT_Volume CIM instance)."""

    host: HostModel
    volume: Volume


@dataclass(frozen=True)
class ClusterNodeView:
    """A node as Get-ClusterNode shows it."""

    cluster: Cluster
    name: str


@dataclass(frozen=True)
class ClusterGroupView:
    """A clustered role as Get-ClusterGroup shows it."""

    cluster: Cluster
    group: ClusterGroup
