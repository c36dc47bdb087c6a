"""The phases and beat of the shared host polls (``hyperv.cadence``): deterministic, in range, spread
over the interval, and steady on the clock (a slow poll shifts nothing). Pure: simulated clocks."""

from __future__ import annotations

import itertools
import random
import subprocess
import sys

import pytest

from airflow_hyperv.hyperv.cadence import PhasePlan, after_poll, hash_phase, next_slot, widest_gap_middle

KEYS = [f"hyperv_hv_{i:02d}" for i in range(10)]


def min_circular_gap(phases: list[float], interval: float) -> float:
    ordered = sorted(phases)
    gaps = [b - a for a, b in itertools.pairwise(ordered)] + [ordered[0] + interval - ordered[-1]]
    return min(gaps)


def test_the_hash_phase_is_deterministic_in_range_and_the_same_in_another_process():
    phases = [hash_phase(k, 10.0) for k in KEYS]
    assert phases == [hash_phase(k, 10.0) for k in KEYS]
    assert all(0.0 <= p < 10.0 for p in phases) and len(set(phases)) == len(phases)
    assert hash_phase("x", 0.0) == 0.0
    code = (
        "from airflow_hyperv.hyperv.cadence import hash_phase; print(repr(hash_phase('hyperv_hv_03', 10.0)))"
    )
    other = subprocess.run(  # another interpreter, another PYTHONHASHSEED: hash() would differ
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123"},
    )
    assert float(other.stdout) == phases[3]


@pytest.mark.parametrize("interval", [10.0, 0.05, 300.0])
def test_the_plan_spreads_the_loops_of_one_process_over_the_interval(interval):
    plan = PhasePlan()
    phases = []
    for n, key in enumerate(KEYS * 5, start=1):
        phases.append(plan.take(key, interval))
        assert all(0.0 <= p < interval for p in phases)
        if n > 1:  # never closer than interval / (2 n): the middle of the widest gap
            assert min_circular_gap(phases, interval) >= interval / (2 * n) - 1e-9, (n, phases)
    assert phases[0] == hash_phase(KEYS[0], interval)  # the first loop sits at its own hash phase
    assert plan.phases(interval) == sorted(phases)
    again = PhasePlan()
    assert [again.take(k, interval) for k in KEYS * 5] == phases  # deterministic for one order of arrival


def test_the_spread_check_fails_for_loops_in_step():
    """Positive control: the check above does catch loops that poll in step (all at one phase) or
    hashed phases that happen to bunch up."""
    assert min_circular_gap([0.0] * 10, 10.0) < 10.0 / 20
    assert min_circular_gap([1.0, 1.01, 5.0], 10.0) < 10.0 / 6


def test_a_released_phase_is_free_again_and_other_intervals_are_apart():
    plan = PhasePlan()
    a, b, c = (plan.take(k, 10.0) for k in KEYS[:3])
    other = plan.take(KEYS[1], 60.0)
    assert other == hash_phase(KEYS[1], 60.0)  # alone on its interval
    plan.release(10.0, b)
    assert plan.phases(10.0) == sorted([a, c])
    assert plan.take(KEYS[5], 10.0) == widest_gap_middle([a, c], 10.0)
    for phase in plan.phases(10.0):
        plan.release(10.0, phase)
    plan.release(60.0, other)
    assert plan.phases(10.0) == [] and plan.phases(60.0) == []
    plan.release(10.0, 1.0)  # releasing twice or unknown: nothing happens


def test_next_slot_is_the_first_beat_at_or_after():
    assert next_slot(3.0, 10.0, not_before=0.0) == 3.0
    assert next_slot(3.0, 10.0, not_before=3.0) == 3.0
    assert next_slot(3.0, 10.0, not_before=3.5) == 13.0
    assert next_slot(3.0, 10.0, not_before=-18.0) == -17.0
    assert next_slot(3.0, 0.0, not_before=7.5) == 7.5


def simulate(
    phase: float, interval: float, durations: list[float], start: float, lateness: float
) -> list[float]:
    """A poll loop on a simulated clock: the first poll at ``start``, each later one at the slot
    ``after_poll`` names, woken ``lateness`` late (sleep overshoot); each poll takes the next duration."""
    starts = [start]
    for took in durations:
        due = after_poll(phase, interval, started=starts[-1], now=starts[-1] + took)
        starts.append(due + lateness)
    return starts


def test_the_beat_is_steady_on_the_clock_and_skips_rather_than_bursts():
    rng = random.Random(7)
    interval, phase = 10.0, 2.5
    durations = [rng.choice([0.1, 0.5, 3.0, 9.9, 14.0, 31.0]) for _ in range(200)]
    starts = simulate(phase, interval, durations, start=1234.567, lateness=0.004)
    for i, (before, after, took) in enumerate(zip(starts, starts[1:], durations, strict=False)):
        beat = after - 0.004
        assert abs((beat - phase) / interval - round((beat - phase) / interval)) < 1e-6  # on the beat
        assert after - before >= interval / 2  # never a burst
        if i and took < interval / 2:
            assert beat - (before - 0.004) == pytest.approx(interval)  # a quick poll: the very next beat
        assert beat >= before + took  # an overrun skips to the first free beat, it does not queue
    # The first poll comes at once, the second on the beat, at least half an interval later.
    assert starts[0] == 1234.567 and starts[1] - starts[0] >= interval / 2


def test_two_loops_do_not_drift_into_step():
    """Loops with different phases keep their distance, however their polls take: the beat is the
    clock's, not the end of the last poll (sleeping a whole interval after each poll drifts)."""
    rng = random.Random(11)
    interval = 10.0
    a = simulate(1.0, interval, [rng.uniform(0.1, 4.0) for _ in range(300)], start=0.0, lateness=0.01)
    b = simulate(6.0, interval, [rng.uniform(0.1, 4.0) for _ in range(300)], start=0.0, lateness=0.01)
    assert {round(t % interval, 3) for t in a[1:]} == {1.01} and {round(t % interval, 3) for t in b[1:]} == {
        6.01
    }

    # Positive control: the old rule (sleep the interval after the poll ends) drifts with the polls.
    drift = [0.0]
    for took in [rng.uniform(0.1, 4.0) for _ in range(300)]:
        drift.append(drift[-1] + took + interval)
    assert len({round(t % interval, 3) for t in drift[1:]}) > 1
