"""Counters a test or benchmark reads to prove how much work a client caused."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CountersSnapshot:
    http_requests: int  # every HTTP request, authentication legs included
    wsman_requests: int  # requests that carried a WS-Man action
    by_action: dict[str, int]  # "Create", "Command", "Send", "Receive", "Signal", "Delete", ...
    pools_opened: int
    pipelines_run: int
    cmdlets_run: int
    # Logins the listener refused although the client presented credentials (wrong password, the
    # REJECT_CREDENTIALS fault): each one counts against an AD account's lockout threshold.
    rejected_logins: int = 0
    rejected_logins_by_host: dict[str, int] = field(default_factory=dict)
    # New shells a WinRM quota refused, by quota name ("MaxShellsPerUser", "plugin MaxShellsPerUser", ...).
    quota_refusals: dict[str, int] = field(default_factory=dict)
    # The most shells (open or disconnected) one user held at once on each host since the last reset.
    # A high-water mark: a difference of two snapshots keeps the later snapshot's peaks.
    peak_shells_per_user: dict[str, int] = field(default_factory=dict)

    def __sub__(self, other: CountersSnapshot) -> CountersSnapshot:
        actions = Counter(self.by_action)
        actions.subtract(other.by_action)
        rejected = Counter(self.rejected_logins_by_host)
        rejected.subtract(other.rejected_logins_by_host)
        refusals = Counter(self.quota_refusals)
        refusals.subtract(other.quota_refusals)
        return CountersSnapshot(
            http_requests=self.http_requests - other.http_requests,
            wsman_requests=self.wsman_requests - other.wsman_requests,
            by_action={k: v for k, v in actions.items() if v},
            pools_opened=self.pools_opened - other.pools_opened,
            pipelines_run=self.pipelines_run - other.pipelines_run,
            cmdlets_run=self.cmdlets_run - other.cmdlets_run,
            rejected_logins=self.rejected_logins - other.rejected_logins,
            rejected_logins_by_host={k: v for k, v in rejected.items() if v},
            quota_refusals={k: v for k, v in refusals.items() if v},
            peak_shells_per_user=dict(self.peak_shells_per_user),
        )


@dataclass
class Counters:
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    http_requests: int = 0
    by_action: Counter[str] = field(default_factory=Counter)
    pools_opened: int = 0
    pipelines_run: int = 0
    cmdlets_run: int = 0
    rejected_logins_by_host: Counter[str] = field(default_factory=Counter)
    quota_refusals_by_quota: Counter[str] = field(default_factory=Counter)
    peak_shells_by_host: dict[str, int] = field(default_factory=dict)
    _refused: threading.Condition = field(default_factory=threading.Condition, repr=False)

    def count_http(self) -> None:
        with self._lock:
            self.http_requests += 1

    def count_action(self, action: str) -> None:
        with self._lock:
            self.by_action[action] += 1

    def count_pool(self) -> None:
        with self._lock:
            self.pools_opened += 1

    def count_pipeline(self, cmdlets: int) -> None:
        with self._lock:
            self.pipelines_run += 1
            self.cmdlets_run += cmdlets

    def count_rejected_login(self, host: str) -> None:
        with self._lock:
            self.rejected_logins_by_host[host] += 1

    def count_quota_refusal(self, quota: str) -> None:
        with self._lock:
            self.quota_refusals_by_quota[quota] += 1
        with self._refused:
            self._refused.notify_all()

    def quota_refusals(self, quota: str | None = None) -> int:
        """New shells refused by ``quota`` (a name such as "MaxShellsPerUser"), or by any quota."""
        with self._lock:
            if quota is None:
                return sum(self.quota_refusals_by_quota.values())
            return self.quota_refusals_by_quota[quota]

    def wait_for_quota_refusals(self, count: int, timeout: float) -> bool:
        """True once at least ``count`` new shells were refused by a quota (within ``timeout`` s): a test
        waits on this event instead of sleeping."""
        with self._refused:
            return self._refused.wait_for(lambda: self.quota_refusals() >= count, timeout)

    def note_shells(self, host: str, held: int) -> None:
        """Record that one user now holds ``held`` shells on ``host`` (keeps the peak)."""
        with self._lock:
            if held > self.peak_shells_by_host.get(host, 0):
                self.peak_shells_by_host[host] = held

    def peak_shells_per_user(self, host: str | None = None) -> int:
        """The most shells one user held at once on ``host`` (or on any host) since the last reset."""
        with self._lock:
            if host is None:
                return max(self.peak_shells_by_host.values(), default=0)
            return self.peak_shells_by_host.get(host, 0)

    def rejected_logins(self, host: str | None = None) -> int:
        """Rejected logins on ``host``, or on every host of this listener."""
        with self._lock:
            if host is None:
                return sum(self.rejected_logins_by_host.values())
            return self.rejected_logins_by_host[host]

    def snapshot(self) -> CountersSnapshot:
        with self._lock:
            return CountersSnapshot(
                http_requests=self.http_requests,
                wsman_requests=sum(self.by_action.values()),
                by_action=dict(self.by_action),
                pools_opened=self.pools_opened,
                pipelines_run=self.pipelines_run,
                cmdlets_run=self.cmdlets_run,
                rejected_logins=sum(self.rejected_logins_by_host.values()),
                rejected_logins_by_host=dict(self.rejected_logins_by_host),
                quota_refusals=dict(self.quota_refusals_by_quota),
                peak_shells_per_user=dict(self.peak_shells_by_host),
            )

    def reset(self) -> None:
        with self._lock:
            self.http_requests = 0
            self.by_action.clear()
            self.rejected_logins_by_host.clear()
            self.quota_refusals_by_quota.clear()
            self.peak_shells_by_host.clear()
            self.pools_opened = self.pipelines_run = self.cmdlets_run = 0
