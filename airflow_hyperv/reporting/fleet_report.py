"""The fleet report: per VM the last application-consistent checkpoint, the last verified export and
its age, the last successful restore test, and whether the VM is out of (freshness) policy. Rendered as
a page by ``airflow_hyperv.reporting.html``.

Sources are the provider's own asset events (no guessing from the hosts): export events of the
``hyperv-exports`` alias (extra = the verified export's manifest) and restore-test events of the
``hyperv-restore-tests`` alias (extra = the test's result). Pure: no Airflow or transport imports.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# What the newest nightly run did with each VM (written by nightly_checkpoint's report task, read here):
# a Variable, because a failed report task publishes no asset event and every component reads Variables.
LAST_OUTCOMES_VARIABLE = "hyperv_last_protection_outcomes"
_STAMP = re.compile(r"\b(\d{8}T\d{4}Z)\b")


@dataclass(frozen=True)
class FreshnessPolicy:
    """How fresh a VM's protection must be to be in policy (not the consistency ``Policy`` of
    ``airflow_hyperv.hyperv.verify``: what a run does when production is impossible)."""

    max_export_age_hours: float = 26.0  # a daily export, with slack
    max_app_consistent_age_hours: float = 7 * 24.0
    max_restore_test_age_days: float = 7.0


@dataclass
class VMProtection:
    host: str
    vm_name: str
    vm_id: str
    last_app_consistent: dt.datetime | None = None
    last_export: dt.datetime | None = None
    last_export_path: str = ""
    last_export_consistency: str = ""
    last_export_bytes: int = 0
    last_restore_test: dt.datetime | None = None
    problems: list[str] = field(default_factory=list)

    def export_age_hours(self, now: dt.datetime) -> float | None:
        return None if self.last_export is None else (now - self.last_export).total_seconds() / 3600

    @property
    def in_policy(self) -> bool:
        return not self.problems


def _when(event: Any, extra: dict[str, Any]) -> dt.datetime:
    """The checkpoint's time from its provider name (``airflow-hyperv 20260101T0100Z …``), else the
    event's timestamp, else an explicit ``tested_at``."""
    for text in (extra.get("checkpoint_name", ""), extra.get("path", "")):
        m = _STAMP.search(str(text))
        if m:
            return dt.datetime.strptime(m.group(1), "%Y%m%dT%H%MZ").replace(tzinfo=dt.timezone.utc)
    value = extra.get("tested_at") or getattr(event, "timestamp", None)
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
    if value:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
    return dt.datetime.min.replace(tzinfo=dt.timezone.utc)


def collect(
    export_events: Iterable[Any],
    restore_events: Iterable[Any],
    *,
    now: dt.datetime,
    policy: FreshnessPolicy = FreshnessPolicy(),
    expected_vms: Iterable[tuple[str, str]] = (),
    last_outcomes: Iterable[dict[str, Any]] = (),
) -> list[VMProtection]:
    """One row per VM seen in any event or listed in ``expected_vms`` as (host, name), sorted: a VM
    that was never protected is in the report, with why. ``last_outcomes`` (the nightly report's rows:
    host, vm, outcome, reason) says what its last protection run did when that was not a protection."""
    rows: dict[str, VMProtection] = {}

    def row(extra: dict[str, Any]) -> VMProtection:
        # Per host: a VM Id is not unique across hosts (an import without -GenerateNewId, a replica),
        # and one host's export says nothing about the other host's VM.
        vm_key = str(extra.get("vm_id") or extra.get("vm_name")).lower()
        key = f"{str(extra.get('host', '')).lower()}|{vm_key}"
        if key not in rows:
            rows[key] = VMProtection(str(extra.get("host", "")), str(extra.get("vm_name", "")), vm_key)
        return rows[key]

    for event in export_events:
        extra = dict(getattr(event, "extra", None) or {})
        if not extra.get("files"):
            continue
        r, when = row(extra), _when(event, extra)
        if r.last_export is None or when > r.last_export:
            r.last_export, r.last_export_path = when, str(extra.get("path", ""))
            r.last_export_consistency = str(extra.get("consistency", ""))
            r.last_export_bytes = int(extra.get("total_bytes") or 0)
        if extra.get("consistency") == "application" and (
            r.last_app_consistent is None or when > r.last_app_consistent
        ):
            r.last_app_consistent = when
    for event in restore_events:
        extra = dict(getattr(event, "extra", None) or {})
        if extra.get("outcome") != "restorable":
            continue
        r, when = row(extra), _when(event, {"tested_at": extra.get("tested_at")})
        if r.last_restore_test is None or when > r.last_restore_test:
            r.last_restore_test = when
    for host, name in expected_vms:
        if not any(_same_vm(r, host, name) for r in rows.values()):
            rows[f"{host.lower()}|{name.lower()}"] = VMProtection(host, name, "")
    for r in rows.values():
        for last in last_outcomes:
            outcome = str(last.get("outcome") or "")
            if _same_vm(r, str(last.get("host") or ""), str(last.get("vm") or "")) and not outcome.startswith(
                "protected"
            ):
                reason = str(last.get("reason") or "").strip()
                r.problems.append(f"last protection run: {outcome}" + (f" ({reason})" if reason else ""))
        age = r.export_age_hours(now)
        if age is None:
            r.problems.append("no verified export")
        elif age > policy.max_export_age_hours:
            r.problems.append(f"newest export is {age:.0f} h old (policy {policy.max_export_age_hours:g} h)")
        if r.last_app_consistent is None:
            r.problems.append("no application-consistent checkpoint")
        elif (now - r.last_app_consistent).total_seconds() / 3600 > policy.max_app_consistent_age_hours:
            r.problems.append("application-consistent checkpoint too old")
        if r.last_restore_test is None:
            r.problems.append("never restore-tested")
        elif (now - r.last_restore_test).days > policy.max_restore_test_age_days:
            r.problems.append(f"last restore test {(now - r.last_restore_test).days} days ago")
    return sorted(rows.values(), key=lambda r: (r.in_policy, r.host, r.vm_name.lower()))


def outcome_summary(rows: Iterable[dict[str, Any]]) -> list[dict[str, str]]:
    """The part of the nightly report's rows the fleet report needs (no paths, no sizes)."""
    return [
        {k: str(r.get(k) or "") for k in ("host", "vm", "outcome", "reason")} for r in rows if r.get("vm")
    ]


def _same_vm(row: VMProtection, host: str, name: str) -> bool:
    return row.vm_name.lower() == name.lower() and (
        not row.host or not host or row.host.lower() == host.lower()
    )


def rows_to_dicts(rows: list[VMProtection], now: dt.datetime) -> list[dict[str, Any]]:
    def iso(v: dt.datetime | None) -> str | None:
        return v.isoformat() if v else None

    return [
        {
            "host": r.host,
            "vm": r.vm_name,
            "vm_id": r.vm_id,
            "last_app_consistent": iso(r.last_app_consistent),
            "last_export": iso(r.last_export),
            "export_age_hours": None
            if r.export_age_hours(now) is None
            else round(r.export_age_hours(now) or 0, 2),
            "last_restore_test": iso(r.last_restore_test),
            "in_policy": r.in_policy,
            "problems": list(r.problems),
            "last_export_path": r.last_export_path,
            "last_export_consistency": r.last_export_consistency,
            "last_export_bytes": r.last_export_bytes,
        }
        for r in rows
    ]


def rows_from_dicts(data: Iterable[dict[str, Any]]) -> list[VMProtection]:
    """The rows back from ``rows_to_dicts`` (the report task's XCom), for the report view. Rows of a
    0.1 report task, without the export's path, consistency and size, come back with those empty."""

    def when(value: Any) -> dt.datetime | None:
        return dt.datetime.fromisoformat(str(value)) if value else None

    return [
        VMProtection(
            host=str(d.get("host") or ""),
            vm_name=str(d.get("vm") or ""),
            vm_id=str(d.get("vm_id") or ""),
            last_app_consistent=when(d.get("last_app_consistent")),
            last_export=when(d.get("last_export")),
            last_export_path=str(d.get("last_export_path") or ""),
            last_export_consistency=str(d.get("last_export_consistency") or ""),
            last_export_bytes=int(d.get("last_export_bytes") or 0),
            last_restore_test=when(d.get("last_restore_test")),
            problems=[str(p) for p in d.get("problems") or []],
        )
        for d in data
    ]
