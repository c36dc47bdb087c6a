"""The client's enums and the emulator's are written apart on purpose (a value copied wrongly into
both would never be caught); this test makes them agree wherever both name a member."""

from __future__ import annotations

import pytest

from airflow_hyperv.hyperv import enums as client
from hyperv_emulator.model import enums as host

PAIRS = [
    (client.VMState, host.VMState),
    (client.CheckpointType, host.CheckpointType),
    (client.SnapshotType, host.SnapshotType),
    (client.HeartbeatStatus, host.VMHeartbeatStatus),
    (client.OperationalStatus, host.IntegrationStatus),
    (client.VhdType, host.VhdType),
]


@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=lambda e: e.__name__)
def test_shared_members_have_the_same_values(ours, theirs):
    shared = set(ours.__members__) & set(theirs.__members__)
    assert shared, f"{ours.__name__} and {theirs.__name__} share no member names"
    assert {n: ours[n].value for n in shared} == {n: theirs[n].value for n in shared}


@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=lambda e: e.__name__)
def test_every_value_the_emulator_sends_decodes(ours, theirs):
    for member in theirs:
        assert ours.parse(member.value).name == member.name


def test_client_and_emulator_know_the_same_vm_states():
    """Every real VMState (Critical twins included) on both sides: the emulator can send each one and
    the client decodes it by name."""
    assert dict(client.VMState.__members__.items()).keys() == dict(host.VMState.__members__.items()).keys()
    assert {m.name: m.value for m in client.VMState} == {m.name: m.value for m in host.VMState}
