"""The shared per-token rate limit: slots come from one UPDATE on the team's
queue row (the two-worker test in test_engine_workers.py checks it over HTTP)."""

import time

import pytest

from ximilar_portal.submissions.models import TeamQueue
from ximilar_portal.submissions.ratelimit import (
    MAX_WAIT_SECONDS,
    catch_up_slots,
    slot_reserve,
)

pytestmark = pytest.mark.django_db


def reserve(team, rate, count):
    """`count` slots in a row: the waits slot_reserve returned, and the slots
    themselves (microseconds), read exactly, however slow this machine is."""
    waits, slots = [], []
    for _ in range(count):
        waits.append(slot_reserve(team_id=team.pk, rate=rate))
        slots.append(TeamQueue.objects.get(team=team).next_slot_us - int(1_000_000 / rate))
    return waits, slots


def spacing(slots):
    return [later - earlier for earlier, later in zip(slots, slots[1:], strict=False)]


def test_slots_are_spaced_one_interval_apart(team):
    waits, slots = reserve(team, 10, 5)

    assert waits[0] == 0, "the first request goes at once"
    assert waits[1] <= 0.1, "never more than one interval ahead"
    # One interval apart; more only when a call here took longer than one.
    assert all(step >= 100_000 for step in spacing(slots)), spacing(slots)


def test_a_missed_slot_is_taken_late_but_idle_time_is_not_banked(team):
    rate = 60
    long_ago = int((time.time() - 60) * 1_000_000)
    TeamQueue.objects.update_or_create(team=team, defaults={"next_slot_us": long_ago})

    interval_us = int(1_000_000 / rate)
    started_us = int(time.time() * 1_000_000)
    waits, slots = reserve(team, rate, 8)

    # A minute idle buys a few slots at once, not a burst of 3,600 requests:
    # the first slot is at most catch_up_slots intervals in the past, the
    # ones after it come one interval apart.
    at_once = catch_up_slots(rate) + 1
    assert waits[:at_once] == [0] * at_once, waits
    assert slots[0] >= started_us - catch_up_slots(rate) * interval_us
    assert all(step >= interval_us for step in spacing(slots)), "never closer than one interval"
    assert slots[at_once] > started_us, "no slot beyond the catch-up is in the past"


def test_slow_rates_do_not_catch_up_and_fast_ones_stay_within_ten_percent():
    assert catch_up_slots(5) == catch_up_slots(10) == catch_up_slots(29) == 0
    for rate in (30, 60, 100, 1000):
        assert catch_up_slots(rate) >= 1
        assert rate + catch_up_slots(rate) + 2 <= 1.1 * rate


def test_a_slot_too_far_off_is_not_reserved(team):
    now_us = int(time.time() * 1_000_000)
    far = now_us + int((MAX_WAIT_SECONDS + 5) * 1_000_000)
    TeamQueue.objects.update_or_create(team=team, defaults={"next_slot_us": far})

    wait = slot_reserve(team_id=team.pk, rate=10)

    assert wait < -MAX_WAIT_SECONDS, "negative: come back after that long"
    assert TeamQueue.objects.get(team=team).next_slot_us == far, "nothing reserved"


def test_no_limit_means_no_wait_and_no_row(team):
    assert slot_reserve(team_id=team.pk, rate=0) == 0
    assert not TeamQueue.objects.filter(team=team).exists()
