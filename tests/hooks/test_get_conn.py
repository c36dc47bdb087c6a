"""``HyperVHook.get_conn()``: the hook's own open pypsrp RunspacePool, as first-party hooks return their
client. Against the emulator."""

from __future__ import annotations

from airflow_hyperv.hooks.hyperv import HyperVHook
from tests.support.emulated import settings_for


def test_get_conn_returns_the_hooks_open_runspace_pool(emulator):
    from pypsrp.complex_objects import RunspacePoolState
    from pypsrp.powershell import PowerShell, RunspacePool

    hook = HyperVHook(settings=settings_for(emulator, "hv-01"))
    pool = hook.get_conn()
    try:
        assert isinstance(pool, RunspacePool) and pool.state == RunspacePoolState.OPENED
        assert hook.get_conn() is pool  # the same pool, not a new one per call
        ps = PowerShell(pool)
        ps.add_cmdlet("Get-VM").add_parameter("Name", "dc-01")
        assert [str(o.adapted_properties["Name"]) for o in ps.invoke()] == ["dc-01"]
        assert hook.get_vm(name="dc-01").name == "dc-01"  # the typed methods share it
        assert emulator.counters.snapshot().pools_opened == 1
    finally:
        hook.close()
    assert pool.state != RunspacePoolState.OPENED  # the hook closed it on the host
    with hook:
        assert hook.get_conn() is not pool
    assert emulator.counters.snapshot().pools_opened == 2
