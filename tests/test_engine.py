"""The engine's decisions, run in this process against the sandbox over real
HTTP: what happens to each record for each kind of answer."""

import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from ximilar_portal.accounts.models import Team
from ximilar_portal.accounts.services import credential_set
from ximilar_portal.records.models import Record
from ximilar_portal.submissions import services
from ximilar_portal.submissions.calls import Outcome, Reply
from ximilar_portal.submissions.models import JobState, RecordJob, Result

from .conftest import SANDBOX_TOKEN, client_for, jpeg_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def enqueued(monkeypatch):
    """Task hand-offs this test would have sent to the broker."""
    calls = []
    monkeypatch.setattr(services, "submission_enqueue", lambda pk, **kw: calls.append(pk))
    return calls


@pytest.fixture
def records(owner, team):
    client = client_for(owner)
    for number in range(3):
        image = SimpleUploadedFile(f"{number}.jpg", jpeg_bytes(color=(number * 80, 90, 200)))
        client.post("/records/new/", {"image": image, "ximilar_id": f"r{number}"})
    credential_set(team=team, token=SANDBOX_TOKEN, user=owner)
    return list(Record.objects.order_by("ximilar_id"))


def submit(team, owner, records, service="generic_tags"):
    return services.submission_create(
        team=team, user=owner, records=records, service=service, options={}
    )


def states(submission):
    return sorted(submission.jobs.values_list("state", flat=True))


def test_it_stores_one_result_per_record(sandbox, enqueued, owner, team, records):
    submission = submit(team, owner, records)
    services.submission_process(submission_id=submission.pk)
    assert states(submission) == [JobState.DONE] * 3
    assert Result.objects.filter(job__submission=submission).count() == 3
    assert [r.record_count for r in sandbox.requests()] == [3]
    # A duplicate delivery of the same task finds nothing to claim and calls nobody.
    services.submission_process(submission_id=submission.pk)
    assert len(sandbox.requests()) == 1
    assert Result.objects.count() == 3


def test_a_failed_record_fails_alone(sandbox, enqueued, owner, team, records):
    sandbox.faults.fail_record_ids = {"r1"}
    submission = submit(team, owner, records)
    services.submission_process(submission_id=submission.pk)
    failed = submission.jobs.get(state=JobState.FAILED)
    assert failed.record.ximilar_id == "r1"
    assert "could not process" in failed.error_message
    assert submission.jobs.filter(state=JobState.DONE).count() == 2


def test_the_history_shows_each_outcome_without_a_visit(sandbox, enqueued, owner, team, records):
    from ximilar_portal.history.models import RecordSummary

    sandbox.faults.fail_record_ids = {"r1"}
    submission = submit(team, owner, records)
    services.submission_process(submission_id=submission.pk)
    status = dict(RecordSummary.objects.values_list("ximilar_id", "status"))
    assert status == {"r0": "done", "r1": "failed", "r2": "done"}
    assert submission.jobs.filter(state=JobState.DONE).count() == 2


def test_a_429_waits_at_least_retry_after(sandbox, enqueued, owner, team, records):
    sandbox.faults.status_code = 429
    sandbox.faults.retry_after = "30"
    submission = submit(team, owner, records)
    services.submission_process(submission_id=submission.pk)
    for job in submission.jobs.all():
        assert job.state == JobState.QUEUED
        assert (job.next_attempt_at - job.updated_at).total_seconds() >= 29
        assert job.error_class == "RateLimited"
    assert not Result.objects.exists()


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_blocks_the_team(sandbox, enqueued, owner, team, records, status):
    sandbox.faults.status_code = status
    submission = submit(team, owner, records)
    services.submission_process(submission_id=submission.pk)
    assert states(submission) == [JobState.BLOCKED] * 3
    assert Team.objects.get(pk=team.pk).blocked_reason.startswith("token")
    services.submission_process(submission_id=submission.pk)
    assert len(sandbox.requests()) == 1, "no second call with a refused token"

    sandbox.faults.status_code = None
    credential_set(team=Team.objects.get(pk=team.pk), token=SANDBOX_TOKEN, user=owner)
    assert states(submission) == [JobState.QUEUED] * 3
    services.submission_process(submission_id=submission.pk)
    assert states(submission) == [JobState.DONE] * 3


def test_a_worker_that_died_mid_batch_is_swept_back(sandbox, enqueued, owner, team, records):
    from datetime import timedelta

    from django.utils import timezone

    submission = submit(team, owner, records)
    claim_id, jobs = services.jobs_claim(submission_id=submission.pk)
    assert len(jobs) == 3
    RecordJob.objects.update(lease_until=timezone.now() - timedelta(seconds=1))
    swept = services.sweep()
    assert swept["requeued"] == 3
    services.submission_process(submission_id=submission.pk)
    assert states(submission) == [JobState.DONE] * 3
    # The old claim can no longer store a second result.
    services.results_store(
        submission=submission, claim_id=claim_id, jobs=jobs, reply=sandbox_reply(jobs)
    )
    assert Result.objects.count() == 3


def sandbox_reply(jobs):
    outcomes = [Outcome(ok=True, raw={"_id": "x"}) for _ in jobs]
    return Reply(outcomes, processing_time=0.1, sandbox=True)


def test_a_task_that_lost_every_claim_race_hands_over_to_a_new_one(
    sandbox, enqueued, owner, team, records, monkeypatch
):
    submission = submit(team, owner, records)
    enqueued.clear()
    # Other workers won five races in a row: this task claimed nothing, yet
    # every row is still queued and ready.
    monkeypatch.setattr(services, "jobs_claim", lambda **kwargs: (None, []))

    services.submission_process(submission_id=submission.pk)

    assert states(submission) == [JobState.QUEUED] * 3
    assert enqueued == [submission.pk], "the rows do not wait for the sweeper"
    assert sandbox.requests() == []


# --- Faults: per-record statuses, 429s, leases -----------------------------------------


def test_an_insert_honours_each_records_status(sandbox, enqueued, owner, team):
    from ximilar_portal.submissions.models import Collection

    records = Record.objects.bulk_create(
        Record(team=team, created_by=owner, ximilar_id=f"i{n}") for n in range(17)
    )
    for record in records:
        record.image.save(f"{record.ximilar_id}.jpg", _image_file(record), save=True)
    credential_set(team=team, token=SANDBOX_TOKEN, user=owner)
    collection = Collection.objects.create(team=team, name="shop", collection_id="c-17")
    refused = {f"i{n}" for n in (0, 2, 3, 5, 8, 11, 13, 16)}
    sandbox.faults.fail_record_ids = refused
    submission = insert_all(team, owner, records, collection)

    failed = set(
        submission.jobs.filter(state=JobState.FAILED).values_list("record__ximilar_id", flat=True)
    )
    assert failed == refused, "each refused record fails, alone"
    assert submission.jobs.filter(state=JobState.DONE).count() == 9
    assert Result.objects.filter(job__submission=submission).count() == 9
    message = submission.jobs.filter(state=JobState.FAILED).first().error_message
    assert "injected record failure" in message and "(400)" in message
    # Sent again, the nine inserted ones are duplicates (done, noted); the others go in now.
    sandbox.faults.fail_record_ids = set()
    again = insert_all(team, owner, records, collection)
    notes = sorted(Result.objects.filter(job__submission=again).values_list("note", flat=True))
    assert notes == ["inserted"] * 8 + ["skipped: record duplicate"] * 9


def insert_all(team, owner, records, collection):
    submission = services.submission_create(
        team=team,
        user=owner,
        records=records,
        service="similarity_insert",
        options={},
        collection=collection,
    )
    services.submission_process(submission_id=submission.pk)
    return submission


def _image_file(record):
    from django.core.files.base import ContentFile

    number = int(record.ximilar_id[1:])
    return ContentFile(jpeg_bytes(color=(number * 13 % 256, number * 29 % 256, 120)))


def test_a_records_own_server_error_is_retried_not_failed(sandbox, enqueued, owner, team, records):
    submission = submit(team, owner, records)
    claim_id, jobs = services.jobs_claim(submission_id=submission.pk)
    outcomes = [Outcome(ok=True, raw={"_id": "a"})]
    outcomes += [Outcome(ok=False, raw={}, code=503, text="busy")]
    outcomes += [Outcome(ok=False, raw={}, code=400, text="bad image")]
    services.results_store(
        submission=submission, claim_id=claim_id, jobs=jobs, reply=Reply(outcomes, 0.1, True)
    )
    by_record = dict(submission.jobs.values_list("record__ximilar_id", "state"))
    assert by_record == {"r0": JobState.DONE, "r1": JobState.QUEUED, "r2": JobState.FAILED}


def test_a_429_spends_no_attempt_and_holds_back_the_whole_team(
    sandbox, enqueued, owner, team, records
):
    from ximilar_portal.submissions.models import TeamQueue
    from ximilar_portal.submissions.ratelimit import throttled_for

    sandbox.faults.status_code, sandbox.faults.retry_after = 429, "30"
    first = submit(team, owner, records[:2])
    second = submit(team, owner, records[2:])
    services.submission_process(submission_id=first.pk)

    assert list(first.jobs.values_list("attempts", flat=True)) == [0, 0]
    queue = TeamQueue.objects.get(team=team)
    assert 29 < throttled_for(queue.throttled_until_us) <= 30
    assert queue.next_slot_us >= queue.throttled_until_us, "the rate-limit clock moved too"
    enqueued.clear()
    services.submission_process(submission_id=second.pk)
    assert len(sandbox.requests()) == 1, "no request of the team inside the Retry-After"
    assert states(second) == [JobState.QUEUED], "nothing claimed meanwhile"
    assert enqueued == [second.pk], "the task comes back when the team may send again"


def test_a_429_past_the_records_deadline_fails_it_with_that_reason(
    sandbox, enqueued, owner, team, records, settings
):
    settings.XIMILAR_RECORD_DEADLINE_SECONDS = 0
    sandbox.faults.status_code, sandbox.faults.retry_after = 429, "1"
    submission = submit(team, owner, records)
    services.submission_process(submission_id=submission.pk)
    assert states(submission) == [JobState.FAILED] * 3
    job = submission.jobs.first()
    assert job.error_class == "deadline"
    assert "still rate-limited when its deadline passed" in job.error_message


def test_a_held_claim_is_renewed_and_a_lapsed_one_keeps_its_answer(
    sandbox, enqueued, owner, team, records, settings
):
    from datetime import timedelta

    from django.utils import timezone

    settings.XIMILAR_LEASE_SECONDS = 3
    submission = submit(team, owner, records)
    claims = services._Claims()
    claims._start_renewing = lambda: None  # renewed by hand here, not by a thread
    with claims.holding(uuid.uuid4()) as claim_id:
        claim_id, jobs = services.jobs_claim(submission_id=submission.pk, claim_id=claim_id)
        RecordJob.objects.update(lease_until=timezone.now() + timedelta(seconds=0.5))
        claims.renewed[claim_id] -= 2  # last extended two seconds ago
        assert claims.renew_due() == 3
        lease = RecordJob.objects.first().lease_until - timezone.now()
        assert lease > timedelta(seconds=2.5)

    # A lease that lapsed anyway (its worker seemed gone): the rows go back,
    # and an answer that still comes for them is stored, not dropped or resent.
    RecordJob.objects.update(lease_until=timezone.now() - timedelta(seconds=1))
    assert services.sweep()["requeued"] == 3
    services.results_store(
        submission=submission, claim_id=claim_id, jobs=jobs, reply=sandbox_reply(jobs)
    )
    assert states(submission) == [JobState.DONE] * 3
    assert Result.objects.count() == 3
    services.submission_process(submission_id=submission.pk)
    assert sandbox.requests() == [], "nothing sent twice"
