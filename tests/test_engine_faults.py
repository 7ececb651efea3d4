"""The engine under faults, with real worker processes and the sandbox over
HTTP: calls that last longer than a lease, a worker killed with -9 in the
middle of a call, and a 429 that lasts a minute.

The workers, their beat (the sweeper every 0.3 s) and the helpers are those of
test_engine_workers.py."""

import os
import signal
import time
from collections import Counter

import pytest

from ximilar_portal.submissions.models import JobState, RecordJob, Result

from . import test_engine_workers
from .conftest import wait_for
from .test_engine_workers import all_final, api_calls, make_records, submit_quietly

# The fixtures of the engine's worker tests, used here by name.
workers_for = test_engine_workers.workers_for
team_with_token = test_engine_workers.team_with_token

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def billed(sandbox) -> Counter:
    """How many times the sandbox processed (and so billed) each record."""
    return Counter(
        record_id
        for call in api_calls(sandbox)
        if call.status == 200
        for record_id in call.record_ids
    )


def assert_one_current_result_each(submission, records):
    assert Result.objects.filter(job__submission=submission).count() == len(records)
    current = Result.objects.filter(record__in=records, is_current=True)
    assert sorted(current.values_list("record_id", flat=True)) == sorted(r.pk for r in records)


# --- Leases -----------------------------------------------------------------------------


def test_a_call_longer_than_the_lease_is_billed_and_stored_once(
    workers_for, sandbox, owner, team_with_token, monkeypatch
):
    sandbox.faults.latency_ms = 8000  # each call lasts more than two leases
    records = make_records(team_with_token, owner, 40)
    workers = workers_for(XIMILAR_LEASE_SECONDS=3, XIMILAR_READ_TIMEOUT=30)
    workers.start(concurrency=8)  # as deployed: threads to spare for the sweeper and claims
    submission = submit_quietly(team_with_token, owner, records, monkeypatch=monkeypatch)

    states = all_final(submission, timeout=120)

    counts = billed(sandbox)
    stored = Result.objects.filter(job__submission=submission).count()
    print(
        f"\nlatency 8 s, lease 3 s: {len(records)} records, {len(api_calls(sandbox))} requests,"
        f" {sum(counts.values())} records billed, {stored} results stored,"
        f" {states.count(JobState.FAILED)} failed"
    )
    assert states == [JobState.DONE] * len(records)
    assert counts == Counter({record.ximilar_id: 1 for record in records}), "each billed once"
    assert_one_current_result_each(submission, records)
    assert set(submission.jobs.values_list("attempts", flat=True)) == {1}


def test_a_killed_workers_records_come_free_within_one_lease(
    workers_for, sandbox, owner, team_with_token, monkeypatch
):
    """With the default lease: a worker that dies mid-call stops renewing,
    and its records are sent again by another worker soon after."""
    from django.conf import settings

    sandbox.faults.latency_ms = 4000
    records = make_records(team_with_token, owner, 40)
    workers = workers_for(XIMILAR_READ_TIMEOUT=30)
    del workers.env["XIMILAR_LEASE_SECONDS"]  # the default, as deployed
    doomed = workers.start()
    submission = submit_quietly(team_with_token, owner, records, monkeypatch=monkeypatch)
    sending = RecordJob.objects.filter(submission=submission, state=JobState.SENDING)
    wait_for(lambda: sending.count() == len(records), timeout=60, message="every record sent")
    time.sleep(1)  # the calls are under way
    held = set(sending.values_list("claim_id", flat=True))
    os.kill(doomed.process.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    workers.live.remove(doomed)
    doomed.process.wait()
    doomed.log_file.close()
    workers.start()

    still_held = RecordJob.objects.filter(claim_id__in=held, state=JobState.SENDING)
    wait_for(lambda: not still_held.exists(), timeout=240, message="the records come free")
    picked_up = time.monotonic() - killed_at
    states = all_final(submission, timeout=120)

    print(
        f"\nkill -9 mid-call, lease {settings.XIMILAR_LEASE_SECONDS:g} s: records picked up"
        f" {picked_up:.1f} s after the kill; {sum(billed(sandbox).values())} records billed"
    )
    assert picked_up < 4 * settings.XIMILAR_LEASE_SECONDS, "within about one lease"
    assert states == [JobState.DONE] * len(records)
    assert_one_current_result_each(submission, records)


# --- 429 -----------------------------------------------------------------------------------


def test_a_429_for_a_minute_slows_the_team_down_and_fails_nothing(
    workers_for, sandbox, owner, team_with_token, monkeypatch
):
    records = make_records(team_with_token, owner, 30)
    # A read timeout on a busy machine would be a real (counted, maybe billed) attempt.
    workers = workers_for(XIMILAR_RATE_LIMIT=1, XIMILAR_CONCURRENCY=4, XIMILAR_READ_TIMEOUT=30)
    workers.start(concurrency=2)
    workers.start(concurrency=2)
    sandbox.faults.status_code, sandbox.faults.retry_after = 429, "2"
    sandbox.faults.status_code_until = time.time() + 60
    submission = submit_quietly(team_with_token, owner, records, monkeypatch=monkeypatch)

    states = all_final(submission, timeout=240)

    calls = api_calls(sandbox)
    refused = [call for call in calls if call.status == 429]
    windows = [(call.answered, call.answered + float(call.retry_after)) for call in refused]
    inside = [call for call in calls if any(start < call.time < end for start, end in windows)]
    print(
        f"\n429 for 60 s: {len(refused)} refused requests, {len(calls) - len(refused)} answered,"
        f" {len(inside)} inside an announced Retry-After window"
    )
    assert refused, "the sandbox did refuse"
    assert states == [JobState.DONE] * len(records), "none failed"
    assert inside == [], "no request while the team was told to wait"
    assert billed(sandbox) == Counter({record.ximilar_id: 1 for record in records})
    assert_one_current_result_each(submission, records)
    assert set(submission.jobs.values_list("attempts", flat=True)) == {1}, "no 429 counted"
