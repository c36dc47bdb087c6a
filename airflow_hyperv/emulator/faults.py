"""Fault injection shared by the emulator's transport and its Hyper-V model.

A test arms a rule (``emulator.faults.inject(Fault.DROP_AFTER_RUN, cmdlet="Checkpoint-VM")``); the layer
that owns the fault asks ``take()`` at the moment it applies and, when a rule matches, acts it out the way
a real host or network would. Every fault that fired is kept in ``fired`` so a test can prove it happened.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum


class Fault(str, Enum):
    # Transport: acted out by the WS-Man server.
    DROP_BEFORE_RUN = "drop-before-run"  # connection closed on the Command request; nothing ran
    DROP_AFTER_RUN = "drop-after-run"  # the pipeline ran to the end; the connection with its answer dropped
    DROP_WHILE_RUNNING = "drop-while-running"  # a Receive answer is lost while the pipeline still runs
    WSMAN_BUSY = "wsman-busy"  # a WS-Man fault saying the service cannot take the request now
    WSMAN_TIMEOUT = "wsman-timeout"  # the request times out on the server; nothing ran
    REJECT_CREDENTIALS = "reject-credentials"  # 401 for credentials that are otherwise right
    LATENCY = "latency"  # every matching request waits ``seconds`` before it is answered
    # Host: acted out by the Hyper-V model.
    GUEST_CANNOT_QUIESCE = "guest-cannot-quiesce"  # VSS / fsfreeze fails inside the guest
    DISK_FULL_DURING_EXPORT = "disk-full-during-export"  # the export target runs out of space half-way
    MERGE_FAILURE = "merge-failure"  # the host's background merge of a removed checkpoint fails
    SET_VM_FAILURE = "set-vm-failure"  # Set-VM cannot change the VM's settings (an OperationFailed error)
    # Checkpoint-VM made the snapshot under its default name and the session ended before the rename:
    # the rest of the invocation never runs (arm DROP_AFTER_RUN too so the client loses the answer)
    SESSION_LOST_BEFORE_RENAME = "session-lost-before-rename"

    @property
    def is_transport(self) -> bool:
        return self in _TRANSPORT


_TRANSPORT = {
    Fault.DROP_BEFORE_RUN,
    Fault.DROP_AFTER_RUN,
    Fault.DROP_WHILE_RUNNING,
    Fault.WSMAN_BUSY,
    Fault.WSMAN_TIMEOUT,
    Fault.REJECT_CREDENTIALS,
    Fault.LATENCY,
}


@dataclass
class FaultRule:
    """An armed fault. ``cmdlet``/``vm`` narrow where it applies; ``times=None`` means until cleared."""

    fault: Fault
    cmdlet: str | None = None
    vm: str | None = None
    times: int | None = 1
    seconds: float = 0.0

    def matches(self, cmdlets: Iterable[str], vms: Iterable[str]) -> bool:
        if self.cmdlet is not None and self.cmdlet.lower() not in {c.lower() for c in cmdlets}:
            return False
        return self.vm is None or self.vm.lower() in {v.lower() for v in vms}


@dataclass(frozen=True)
class FiredFault:
    fault: Fault
    detail: str


class FaultPlan:
    """Thread-safe set of armed faults and the record of those that fired."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self.fired: list[FiredFault] = []

    def inject(
        self,
        fault: Fault | str,
        *,
        cmdlet: str | None = None,
        vm: str | None = None,
        times: int | None = 1,
        seconds: float = 0.0,
    ) -> FaultRule:
        fault = Fault(fault)
        if times is not None and times < 1:
            raise ValueError(f"times must be at least 1 (or None for always), not {times}")
        if fault is Fault.LATENCY and seconds <= 0:
            raise ValueError("a latency fault needs seconds > 0")
        rule = FaultRule(fault, cmdlet=cmdlet, vm=vm, times=times, seconds=seconds)
        with self._lock:
            self._rules.append(rule)
        return rule

    def take(
        self,
        fault: Fault,
        *,
        cmdlets: Iterable[str] = (),
        vms: Iterable[str] = (),
        detail: str = "",
    ) -> FaultRule | None:
        """Consume one use of the first armed rule for ``fault`` that matches, and record it."""
        cmdlets, vms = list(cmdlets), list(vms)
        with self._lock:
            for rule in self._rules:
                if rule.fault is fault and rule.matches(cmdlets, vms):
                    if rule.times is not None:
                        rule.times -= 1
                        if rule.times == 0:
                            self._rules.remove(rule)
                    self.fired.append(FiredFault(fault, detail or ",".join(cmdlets + vms)))
                    return rule
        return None

    def armed(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def count_fired(self, fault: Fault) -> int:
        with self._lock:
            return sum(1 for f in self.fired if f.fault is fault)
