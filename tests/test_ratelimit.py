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


def test_slots_are_spaced_one_interval_apart(team):
    waits = [slot_reserve(team_id=team.pk, rate=10) for _ in range(5)]

    assert waits[0] == 0, "the first request goes at once"
    steps = [later - earlier for earlier, later in zip(waits[1:], waits[2:], strict=False)]
    assert all(0.09 < step < 0.11 for step in steps), steps


def test_a_missed_slot_is_taken_late_but_idle_time_is_not_banked(team):
    rate = 60
    long_ago = int((time.time() - 60) * 1_000_000)
    TeamQueue.objects.update_or_create(team=team, defaults={"next_slot_us": long_ago})

    waits = [slot_reserve(team_id=team.pk, rate=rate) for _ in range(8)]

    # A minute idle buys a few slots at once, not a burst of 3,600 requests.
    at_once = catch_up_slots(rate) + 1
    assert waits[:at_once] == [0] * at_once, waits
    assert 0 < waits[at_once] < 1 / rate + 0.005, waits
    later = waits[at_once:]
    steps = [b - a for a, b in zip(later, later[1:], strict=False)]
    assert all(0.012 < step < 0.022 for step in steps), waits


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
