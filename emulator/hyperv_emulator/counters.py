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
    # The same per host and per user (lower case), and the most commands one user had running at once
    # (what MaxConcurrentOperationsPerUser counts here): host -> user -> peak. High-water marks too.
    peak_shells_by_user: dict[str, dict[str, int]] = field(default_factory=dict)
    peak_operations_by_user: dict[str, dict[str, int]] = field(default_factory=dict)
    # Every w:QuotaLimit fault answered, per host: quota refusals and the injected WSMAN_BUSY fault.
    quota_faults_by_host: dict[str, int] = field(default_factory=dict)

    def __sub__(self, other: CountersSnapshot) -> CountersSnapshot:
        actions = Counter(self.by_action)
        actions.subtract(other.by_action)
        rejected = Counter(self.rejected_logins_by_host)
        rejected.subtract(other.rejected_logins_by_host)
        refusals = Counter(self.quota_refusals)
        refusals.subtract(other.quota_refusals)
        faults = Counter(self.quota_faults_by_host)
        faults.subtract(other.quota_faults_by_host)
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
            peak_shells_by_user={h: dict(u) for h, u in self.peak_shells_by_user.items()},
            peak_operations_by_user={h: dict(u) for h, u in self.peak_operations_by_user.items()},
            quota_faults_by_host={k: v for k, v in faults.items() if v},
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
    peak_shells_by_user: dict[tuple[str, str], int] = field(default_factory=dict)  # (host, user)
    peak_operations_by_user: dict[tuple[str, str], int] = field(default_factory=dict)
    quota_faults_by_host: Counter[str] = field(default_factory=Counter)
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

    def count_quota_refusal(self, quota: str, host: str | None = None) -> None:
        """A quota refused a new shell or command (on ``host``: also a QuotaLimit fault of that host)."""
        with self._lock:
            self.quota_refusals_by_quota[quota] += 1
            if host is not None:
                self.quota_faults_by_host[host] += 1
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

    def count_quota_fault(self, host: str) -> None:
        """A QuotaLimit fault no quota caused (the injected WSMAN_BUSY): counted per host only."""
        with self._lock:
            self.quota_faults_by_host[host] += 1

    def quota_faults(self, host: str | None = None) -> int:
        """QuotaLimit faults answered on ``host`` (or on every host), quota refusals and injected ones."""
        with self._lock:
            if host is None:
                return sum(self.quota_faults_by_host.values())
            return self.quota_faults_by_host[host]

    def note_shells(self, host: str, held: int, user: str = "") -> None:
        """Record that ``user`` now holds ``held`` shells on ``host`` (keeps the peaks)."""
        with self._lock:
            if held > self.peak_shells_by_host.get(host, 0):
                self.peak_shells_by_host[host] = held
            key = (host, user.lower())
            if held > self.peak_shells_by_user.get(key, 0):
                self.peak_shells_by_user[key] = held

    def note_operations(self, host: str, user: str, running: int) -> None:
        """Record that ``user`` now has ``running`` commands running on ``host`` (keeps the peak)."""
        with self._lock:
            key = (host, user.lower())
            if running > self.peak_operations_by_user.get(key, 0):
                self.peak_operations_by_user[key] = running

    def peak_operations(self, host: str, user: str) -> int:
        """The most commands ``user`` had running at once on ``host`` since the last reset."""
        with self._lock:
            return self.peak_operations_by_user.get((host, user.lower()), 0)

    def peak_shells_per_user(self, host: str | None = None, user: str | None = None) -> int:
        """The most shells one user (``user``, or any) held at once on ``host`` (or on any host) since
        the last reset."""
        with self._lock:
            if user is not None:
                return max(
                    (n for (h, u), n in self.peak_shells_by_user.items()
                     if u == user.lower() and host in (None, h)),
                    default=0,
                )  # fmt: skip
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
                peak_shells_by_user=_nested(self.peak_shells_by_user),
                peak_operations_by_user=_nested(self.peak_operations_by_user),
                quota_faults_by_host=dict(self.quota_faults_by_host),
            )

    def reset(self) -> None:
        with self._lock:
            self.http_requests = 0
            self.by_action.clear()
            self.rejected_logins_by_host.clear()
            self.quota_refusals_by_quota.clear()
            self.peak_shells_by_host.clear()
            self.peak_shells_by_user.clear()
            self.peak_operations_by_user.clear()
            self.quota_faults_by_host.clear()
            self.pools_opened = self.pipelines_run = self.cmdlets_run = 0


def _nested(flat: dict[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (host, user), n in flat.items():
        out.setdefault(host, {})[user] = n
    return out
