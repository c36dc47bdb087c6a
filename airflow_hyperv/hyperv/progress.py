"""How far a long write (an export) has got: what to watch, what to expect, and the log line. Pure: no I/O.

An export's progress is read from the files it writes: the hook sums the ``Length`` of every file under
the export's own staging folder (``Get-ChildItem -LiteralPath <staging> -Recurse -File``) and compares
it with what the checkpoint's disks hold (``expected_export_bytes``, from the Get-VHD records the export
operator reads anyway). ``ProgressPacer`` decides when a line is due: at once, then at most every
``interval`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_hyperv.hyperv.enums import VhdType
from airflow_hyperv.hyperv.records import DiskChain

GiB = 2**30
DEFAULT_PROGRESS_INTERVAL = 60.0


@dataclass(frozen=True)
class OutputProgress:
    """What a wait watches to say how far an operation has got: the bytes under ``folder`` (the files
    the operation writes, and nothing else) against ``expected_bytes``; ``name`` is what the line names
    (the VM)."""

    folder: str
    expected_bytes: int
    name: str

    def to_dict(self) -> dict[str, Any]:
        return {"folder": self.folder, "expected_bytes": self.expected_bytes, "name": self.name}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutputProgress:
        return cls(
            folder=str(data["folder"]),
            expected_bytes=int(data.get("expected_bytes") or 0),
            name=str(data["name"]),
        )


def expected_export_bytes(chains: Iterable[DiskChain]) -> int:
    """What an export of a checkpoint writes for its disks: one disk per drive, the chain flattened.

    A fixed disk is copied whole (its file size); a dynamic chain holds at most the sum of its files'
    sizes, and never more than the disk's virtual size. Configuration files (kilobytes to a few
    megabytes) and a standard checkpoint's saved memory are not counted: the percentage is of the disks.
    """
    total = 0
    for chain in chains:
        if not chain.disks:
            continue
        base = chain.disks[-1]
        if base.vhd_type is VhdType.Fixed:
            total += base.file_size
        else:
            data = sum(d.file_size for d in chain.disks)
            total += min(data, base.size) if base.size else data
    return total


def format_duration(seconds: float) -> str:
    """``200`` -> ``3m20s``; ``7260`` -> ``2h01m``; under a minute, ``45s``."""
    seconds = max(int(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def progress_line(name: str, written: int | None, expected: int, elapsed: float, *, unknown: str = "") -> str:
    """``Export of sql-01: 12.4 of 40.0 GiB (31 %), 3m20s elapsed``.

    More written than expected (a saved memory state, configuration files): the bytes written and the
    disks' total, without a percentage above 100. Nothing read (``written`` None): why, in ``unknown``.
    """
    took = f"{format_duration(elapsed)} elapsed"
    if written is None:
        return f"Export of {name}: still running, {took} (bytes written not known: {unknown or 'not read'})"
    if expected <= 0:
        return f"Export of {name}: {written / GiB:.1f} GiB written, {took}"
    if written > expected:
        return (
            f"Export of {name}: {written / GiB:.1f} GiB written, more than the {expected / GiB:.1f} GiB its "
            f"disks hold (memory state and configuration are not counted), {took}"
        )
    percent = written * 100 // expected  # rounded down: 100 % only once all is written
    return f"Export of {name}: {written / GiB:.1f} of {expected / GiB:.1f} GiB ({percent} %), {took}"


class ProgressPacer:
    """When a progress line is due: the first time asked, then not before ``interval`` seconds (of the
    monotonic clock) since the last one. ``interval`` 0 makes every round's line due."""

    def __init__(self, interval: float) -> None:
        if interval < 0:
            raise ValueError(f"a progress interval must be 0 or more, not {interval}")
        self.interval = interval
        self._last: float | None = None

    def is_due(self, now: float | None = None) -> bool:
        """Whether a line would be due now, without counting it as logged."""
        now = time.monotonic() if now is None else now
        return self._last is None or now - self._last >= self.interval

    def due(self, now: float | None = None) -> bool:
        """Whether a line is due now; if so it counts as logged from now on."""
        now = time.monotonic() if now is None else now
        if self._last is not None and now - self._last < self.interval:
            return False
        self._last = now
        return True
