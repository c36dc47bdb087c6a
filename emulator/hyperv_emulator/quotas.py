"""WinRM's quotas on one host: how many shells a user may hold, how many users, how many operations.

A real host refuses a new shell (WS-Man Create) past any of these quotas with a ``wsman:QuotaLimit``
fault whose ``f:WSManFault`` carries the ``wsmerror.h`` code of the quota ([MS-WSMV] 3.1.4.5.2.1).
Two sets apply to a PowerShell shell: WinRM's own (``winrm/config/winrs``, ``winrm/config/service``)
and the quotas of the PowerShell endpoint's plugin (``microsoft.powershell``, or a JEA endpoint).
The defaults are the real ones; docs/emulator.md gives the source of each value and each text.

Like ``faults`` and ``counters`` this module is in no layer: the fleet loader (model) reads a host's
quotas from the fleet file, and the WS-Man service (wsman) enforces them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

# wsmerror.h codes (Windows SDK; the same table is in PowerShell's CimChildJobBase.cs).
ERROR_WSMAN_QUOTA_MAX_SHELLS = 2150859173  # 0x803381A5 winrs MaxShellsPerUser
ERROR_WSMAN_QUOTA_MAX_OPERATIONS = 2150859174  # 0x803381A6 service MaxConcurrentOperationsPerUser
ERROR_WSMAN_QUOTA_MAX_SHELLUSERS = 2150859179  # 0x803381AB winrs MaxConcurrentUsers
ERROR_WSMAN_QUOTA_MAX_SHELLS_PPQ = 2150859236  # 0x803381E4 plugin MaxShellsPerUser
ERROR_WSMAN_QUOTA_MAX_USERS_PPQ = 2150859237  # 0x803381E5 plugin MaxConcurrentUsers
ERROR_WSMAN_QUOTA_MAX_PLUGINSHELLS_PPQ = 2150859238  # 0x803381E6 plugin MaxShells


@dataclass(frozen=True)
class PluginQuotas:
    """The quotas of a PowerShell endpoint's WinRM plugin (``<Quotas>`` of its plugin configuration;
    ``New-PSTransportOption`` names them MaxSessionsPerUser, MaxConcurrentUsers, MaxSessions)."""

    max_shells_per_user: int = 25
    max_concurrent_users: int = 5
    max_shells: int = 25


@dataclass(frozen=True)
class WinRMQuotas:
    """One host's quotas. Every limit must be at least 1 (a real host reads 0 differently per setting;
    the emulator does not model "unlimited")."""

    max_shells_per_user: int = 30  # winrm/config/winrs MaxShellsPerUser
    max_concurrent_users: int = 10  # winrm/config/winrs MaxConcurrentUsers
    max_concurrent_operations_per_user: int = 1500  # winrm/config/service
    plugin: PluginQuotas = PluginQuotas()

    @classmethod
    def from_mapping(cls, raw: dict[str, Any]) -> WinRMQuotas:
        """Build from a fleet file's ``winrm`` mapping; ``ValueError`` names the bad field."""
        plugin_raw = raw.get("plugin") or {}
        if not isinstance(plugin_raw, dict):
            raise ValueError("plugin: must be a mapping")
        top = {k: v for k, v in raw.items() if k != "plugin"}
        plugin = PluginQuotas(**_limits(plugin_raw, PluginQuotas, "plugin."))
        return cls(**_limits(top, cls, ""), plugin=plugin)


def _limits(raw: dict[str, Any], kind: type, prefix: str) -> dict[str, int]:
    names = {f.name for f in fields(kind)} - {"plugin"}
    out: dict[str, int] = {}
    for key, value in raw.items():
        if key not in names:
            raise ValueError(f"{prefix}{key}: unknown quota (one of {', '.join(sorted(names))})")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{prefix}{key}: {value!r} is not a whole number of at least 1")
        out[key] = value
    return out


@dataclass(frozen=True)
class QuotaRefusal:
    """Which quota refused a request: its name, its limit, the wsmerror.h code and the f:Message."""

    quota: str
    limit: int
    code: int
    message: str


def max_shells(limit: int) -> QuotaRefusal:
    # The text Windows sends (WinRb captures: hashicorp/vagrant#7489, test-kitchen/test-kitchen#656).
    return QuotaRefusal(
        "MaxShellsPerUser",
        limit,
        ERROR_WSMAN_QUOTA_MAX_SHELLS,
        f"The WS-Management service cannot process the request. This user is allowed a maximum number of "
        f"{limit} concurrent shells, which has been exceeded. Close existing shells or raise the quota for "
        "this user. ",
    )


def max_shell_users(limit: int) -> QuotaRefusal:
    # wsmerror.h text (no public capture found).
    return QuotaRefusal(
        "MaxConcurrentUsers",
        limit,
        ERROR_WSMAN_QUOTA_MAX_SHELLUSERS,
        "The WS-Management service cannot process the request. The maximum number of users executing shell "
        "operations has been exceeded. Retry after some time or raise the quota for concurrent shell users.",
    )


def max_operations(limit: int) -> QuotaRefusal:
    # masterzen/winrm#129 capture.
    return QuotaRefusal(
        "MaxConcurrentOperationsPerUser",
        limit,
        ERROR_WSMAN_QUOTA_MAX_OPERATIONS,
        f"The WS-Management service cannot process the request. This user is allowed a maximum number of "
        f"{limit} concurrent operations, which has been exceeded. Close existing operations for this user, "
        "or raise the quota for this user.",
    )


def plugin_max_shells_per_user(limit: int) -> QuotaRefusal:
    # wsmerror.h text (no public capture found).
    return QuotaRefusal(
        "plugin MaxShellsPerUser",
        limit,
        ERROR_WSMAN_QUOTA_MAX_SHELLS_PPQ,
        "The WS-Management service cannot process the request. This user has exceeded the maximum number of "
        "concurrent shells allowed for this plugin. Close at least one open shell or raise the plugin quota "
        "for this user.",
    )


def plugin_max_users(limit: int) -> QuotaRefusal:
    return QuotaRefusal(
        "plugin MaxConcurrentUsers",
        limit,
        ERROR_WSMAN_QUOTA_MAX_USERS_PPQ,
        "The WS-Management service cannot process the request. The maximum number of users executing remote "
        "operations has been exceeded for this plugin. Retry the request later or raise the quota for "
        "concurrent users.",
    )


def plugin_max_shells(limit: int) -> QuotaRefusal:
    return QuotaRefusal(
        "plugin MaxShells",
        limit,
        ERROR_WSMAN_QUOTA_MAX_PLUGINSHELLS_PPQ,
        "The WS-Management service cannot process the request. The maximum number of concurrent shells "
        "allowed for this plugin has been exceeded. Retry the request later or raise the Maximum Shells per "
        "Plugin quota.",
    )


@dataclass(frozen=True)
class ShellCensus:
    """The live (open or disconnected) shells on one host when a new one is asked for."""

    user_shells: int  # this user's, any endpoint
    users: frozenset[str]  # users (lower case) holding at least one shell, any endpoint
    plugin_user_shells: int  # this user's on the requested endpoint
    plugin_users: frozenset[str]  # users holding a shell on the requested endpoint
    plugin_shells: int  # every user's on the requested endpoint


def refuse_new_shell(quotas: WinRMQuotas, user: str, census: ShellCensus) -> QuotaRefusal | None:
    """The quota a new shell for ``user`` would exceed, or None. WinRM's own quotas are checked before
    the plugin's (the order when several are exceeded at once is *unconfirmed*)."""
    me = user.lower()
    if me not in census.users and len(census.users) >= quotas.max_concurrent_users:
        return max_shell_users(quotas.max_concurrent_users)
    if census.user_shells >= quotas.max_shells_per_user:
        return max_shells(quotas.max_shells_per_user)
    plugin = quotas.plugin
    if me not in census.plugin_users and len(census.plugin_users) >= plugin.max_concurrent_users:
        return plugin_max_users(plugin.max_concurrent_users)
    if census.plugin_user_shells >= plugin.max_shells_per_user:
        return plugin_max_shells_per_user(plugin.max_shells_per_user)
    if census.plugin_shells >= plugin.max_shells:
        return plugin_max_shells(plugin.max_shells)
    return None
