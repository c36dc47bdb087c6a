"""The audit log: every cmdlet a client ran, with what it bound and what it touched.

Tests use it to prove negative facts ("the hostile name never touched another VM"), the way a JEA
transcript would on a real host.
"""

from __future__ import annotations

import threading
import time as _time
from dataclasses import dataclass, field


@dataclass
class AuditEntry:
    seq: int
    time: float  # emulated seconds since the epoch
    host: str
    user: str
    cmdlet: str  # the canonical cmdlet name (Get-VMSnapshot even when called as Get-VMCheckpoint)
    parameters: dict[str, str]  # bound parameters as text, canonical names
    targets: list[str] = field(default_factory=list)  # VM ids, snapshot ids, paths acted on
    outcome: str = (
        "running"  # "ok", "error" (non-terminating errors written), "failed" (terminating), "stopped"
    )
    errors: list[str] = field(default_factory=list)  # FullyQualifiedErrorIds written or raised
    invoked_as: str = ""  # the name the client used (alias)
    # Real (not emulated) seconds since the epoch when the call arrived: to line calls up with
    # the start and end of Airflow task instances.
    wall_time: float = field(default_factory=_time.time)
    # Emulated seconds when the cmdlet had processed all its input (None while it runs or when it
    # never ran): how long an operation took, e.g. the AVHDX's life from Checkpoint-VM to its merge.
    ended: float | None = None
    # The pipeline (its WS-Man command id) that ran the call: to group calls by round trip.
    pipeline: str = ""


class AuditLog:
    """Thread-safe, append-only list of ``AuditEntry``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[AuditEntry] = []

    def open(
        self,
        *,
        time: float,
        host: str,
        user: str,
        cmdlet: str,
        parameters: dict[str, str],
        invoked_as: str = "",
        pipeline: str = "",
    ) -> AuditEntry:
        with self._lock:
            entry = AuditEntry(
                len(self._entries) + 1,
                time,
                host,
                user,
                cmdlet,
                dict(parameters),
                invoked_as=invoked_as or cmdlet,
                pipeline=pipeline,
            )
            self._entries.append(entry)
            return entry

    def entries(self, *, host: str | None = None, cmdlet: str | None = None) -> list[AuditEntry]:
        with self._lock:
            return [
                e
                for e in self._entries
                if (host is None or e.host.lower() == host.lower())
                and (cmdlet is None or e.cmdlet.lower() == cmdlet.lower())
            ]

    def touched(self, target: str) -> list[AuditEntry]:
        """Entries that acted on ``target`` (case-insensitive)."""
        t = target.lower()
        with self._lock:
            return [e for e in self._entries if any(x.lower() == t for x in e.targets)]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
