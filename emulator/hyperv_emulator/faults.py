"""Fault injection shared by the emulator's transport and its Hyper-V model.

A test arms a rule (``emulator.faults.inject(Fault.DROP_AFTER_RUN, cmdlet="Checkpoint-VM")``); the layer
that owns the fault asks ``take()`` at the moment it applies and, when a rule matches, acts it out the way
a real host or network would. Every fault that fired is kept in ``fired`` so a test can prove it happened.

A ``Gate`` is not a fault but a sequencing point: the first matching cmdlet call blocks (before it
changes anything) until the test releases it, and the test can wait until it is blocked. Tests use it
to order concurrent runs explicitly ("B starts while A is in its export") instead of sleeping.
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


class Gate:
    """Holds the first call of ``cmdlet`` (for ``vm``, a VM Id or name, if given) until ``release()``."""

    def __init__(self, cmdlet: str, vm: str | None = None) -> None:
        self.cmdlet, self.vm = cmdlet, vm
        self._blocked = threading.Event()
        self._released = threading.Event()
        self.held: str = ""  # what was held (cmdlet and bound parameters), once blocked

    def matches(self, cmdlet: str, vms: Iterable[str]) -> bool:
        if cmdlet.lower() != self.cmdlet.lower():
            return False
        return self.vm is None or self.vm.lower() in {v.lower() for v in vms}

    def hold(self, detail: str, cancelled: threading.Event | None = None) -> bool:
        """Block the calling cmdlet until released; False if ``cancelled`` was set first."""
        self.held = detail
        self._blocked.set()
        while not self._released.wait(0.05):
            if cancelled is not None and cancelled.is_set():
                return False
        return True

    def wait_blocked(self, timeout: float) -> bool:
        """True once a matching call is held (within ``timeout`` seconds)."""
        return self._blocked.wait(timeout)

    @property
    def blocked(self) -> bool:
        return self._blocked.is_set()

    def release(self) -> None:
        self._released.set()


class FaultPlan:
    """Thread-safe set of armed faults and the record of those that fired."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._gates: list[Gate] = []
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

    def gate(self, cmdlet: str, *, vm: str | None = None) -> Gate:
        """Arm a gate: the next call of ``cmdlet`` (on ``vm``) blocks until ``Gate.release()``."""
        gate = Gate(cmdlet, vm)
        with self._lock:
            self._gates.append(gate)
        return gate

    def take_gate(self, cmdlet: str, vms: Iterable[str]) -> Gate | None:
        """The armed gate this call must stop at (each gate holds one call), if any."""
        vms = list(vms)
        with self._lock:
            for gate in self._gates:
                if gate.matches(cmdlet, vms):
                    self._gates.remove(gate)
                    return gate
        return None

    def armed(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self._gates.clear()

    def count_fired(self, fault: Fault) -> int:
        with self._lock:
            return sum(1 for f in self.fired if f.fault is fault)
