"""A checkpoint (VMSnapshot). It carries no production/standard marker a client could read — only
``State`` (Saved with memory, Off without), exactly like real hosts; ``consistency`` is model-only so
tests can prove what really happened."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Literal

from hyperv_emulator.model.disk import VirtualDisk
from hyperv_emulator.model.enums import SnapshotType, VMState

Consistency = Literal["production", "standard", "offline"]


@dataclass(eq=False)
class Checkpoint:
    id: uuid.UUID
    name: str
    vm_id: uuid.UUID
    vm_name: str
    creation_time: float
    state: VMState
    consistency: Consistency
    parent_id: uuid.UUID | None = None
    parent_name: str = ""
    path: str = ""
    snapshot_type: SnapshotType = SnapshotType.Standard
    is_automatic: bool = False
    frozen: dict[int, VirtualDisk] = field(default_factory=dict)  # drive index -> disk holding its state
    memory_bytes: int = 0  # saved memory (the .VMRS) for standard checkpoints of a running VM

    @property
    def has_saved_state(self) -> bool:
        return self.state is VMState.Saved
