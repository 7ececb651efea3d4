"""The submission engine (design §3): rows in the database say where every
record stands; Celery only carries submission ids.

    queued ──claim──> sending ──> done | failed
       ^                 │
       └── retry later ──┘        blocked (token refused)  cancelled
"""

import logging
import random
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from ximilar_portal.accounts import services as accounts
from ximilar_portal.accounts.models import Credential
from ximilar_portal.lib import ximilar
from ximilar_portal.lib.crypto import DecryptionError

from .calls import call_service
from .models import JobState, RecordJob, Result, Submission

log = logging.getLogger(__name__)

BATCH_SIZE = ximilar.MAX_RECORDS_PER_REQUEST
SWEEP_GRACE = timedelta(seconds=60)


# --- Creating and enqueueing --------------------------------------------------


def submission_create(*, team, user, records, service: str, options: dict) -> Submission:
    records = list(records)
    with transaction.atomic():
        submission = Submission.objects.create(
            team=team, created_by=user, service=service, options=options
        )
        RecordJob.objects.bulk_create(
            RecordJob(submission=submission, record=record, team=team) for record in records
        )
        chains = min(settings.XIMILAR_CONCURRENCY, -(-len(records) // BATCH_SIZE))
        transaction.on_commit(lambda: submission_enqueue(submission.pk, chains=chains))
    log.info("submission.created id=%s records=%s service=%s", submission.pk, len(records), service)
    return submission


def submission_enqueue(submission_id: int, *, chains: int = 1, countdown: float = 0) -> None:
    """Hand the submission to the workers. A broker that is down only delays the
    work: the rows stay queued and the sweeper enqueues them again."""
    from .tasks import process_submission

    try:
        for _ in range(chains):
            process_submission.apply_async((submission_id,), countdown=countdown or None)
    except Exception:
        log.exception("submission.enqueue_failed id=%s (the sweeper will retry)", submission_id)


# --- Claiming ------------------------------------------------------------------


def _ready(now):
    return Q(state=JobState.QUEUED) & (
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )


def jobs_claim(*, submission_id: int) -> tuple[uuid.UUID, list[RecordJob]]:
    """Compare-and-set: only rows still queued become ours, so two workers never
    send the same record at once. Retries when another worker won the race."""
    for _ in range(3):
        now = timezone.now()
        ids = list(
            RecordJob.objects.filter(_ready(now), submission_id=submission_id)
            .order_by("id")
            .values_list("id", flat=True)[:BATCH_SIZE]
        )
        if not ids:
            return None, []
        claim_id = uuid.uuid4()
        claimed = RecordJob.objects.filter(_ready(now), id__in=ids).update(
            state=JobState.SENDING,
            claim_id=claim_id,
            lease_until=now + timedelta(seconds=settings.XIMILAR_LEASE_SECONDS),
            attempts=F("attempts") + 1,
            updated_at=now,
        )
        if claimed:
            jobs = RecordJob.objects.filter(claim_id=claim_id, state=JobState.SENDING)
            return claim_id, list(jobs.select_related("record"))
    return None, []


# --- Processing one batch ------------------------------------------------------------


def submission_process(*, submission_id: int) -> None:
    """One task run: claim up to 10 records, send them, store what came back,
    then pass the rest of the submission on to the next task."""
    submission = Submission.objects.select_related("team").filter(pk=submission_id).first()
    if submission is None:
        return
    if submission.team.blocked_reason:
        jobs_block_for_team(team_id=submission.team_id, reason=submission.team.blocked_reason)
        return
    claim_id, jobs = jobs_claim(submission_id=submission_id)
    if not jobs:
        _wake_up_for_retries(submission)
        return
    batch_send(submission=submission, claim_id=claim_id, jobs=jobs)
    Submission.objects.filter(pk=submission_id).update(last_progress_at=timezone.now())
    submission_enqueue(submission_id)


def _wake_up_for_retries(submission) -> None:
    """Records waiting for a retry: come back when the first is due (short waits;
    the sweeper covers long ones, which live in next_attempt_at)."""
    next_due = (
        submission.jobs.filter(state=JobState.QUEUED)
        .order_by("next_attempt_at")
        .values_list("next_attempt_at", flat=True)
        .first()
    )
    if next_due is not None:
        wait = (next_due - timezone.now()).total_seconds()
        submission_enqueue(submission.pk, countdown=min(max(wait, 0.1), 60))


def batch_send(*, submission, claim_id, jobs) -> None:
    team_id = submission.team_id
    try:
        client = _client_for_team(team_id)
    except (Credential.DoesNotExist, DecryptionError) as error:
        reason = (
            "token: none saved"
            if isinstance(error, Credential.DoesNotExist)
            else ("token: cannot be decrypted with the configured keys")
        )
        accounts.team_block(team_id=team_id, reason=reason)
        return
    payload, jobs = _payload(jobs, submission.service, claim_id)
    if not jobs:
        return
    try:
        response = call_service(client, submission.service, submission.options, payload)
    except ximilar.AuthError as error:
        accounts.credential_mark_used(team_id=team_id, error=error.message)
        accounts.team_block(
            team_id=team_id, reason=f"token: refused by Ximilar ({error.http_status})"
        )
    except ximilar.RateLimited as error:
        jobs_retry(jobs=jobs, claim_id=claim_id, error=error, wait=error.retry_after or 1)
    except ximilar.TransientError as error:
        jobs_retry(jobs=jobs, claim_id=claim_id, error=error)
    except ximilar.PermanentError as error:
        jobs_fail(jobs=jobs, claim_id=claim_id, error_class="permanent", message=error.message)
    else:
        accounts.credential_mark_used(team_id=team_id)
        results_store(submission=submission, claim_id=claim_id, jobs=jobs, response=response)


def _client_for_team(team_id) -> ximilar.Client:
    credential = Credential.objects.get(team_id=team_id)
    return ximilar.Client(
        token=accounts.credential_token(team_id=team_id),
        base_url=settings.XIMILAR_API_URL,
        workspace=credential.workspace or None,
        connect_timeout=settings.XIMILAR_CONNECT_TIMEOUT,
        read_timeout=settings.XIMILAR_READ_TIMEOUT,
    )


def _payload(jobs, service, claim_id):
    """Records in Ximilar's format. A record whose image cannot be read fails
    on its own; the others still go."""
    image_size = ximilar.SERVICES[service].image_size
    payload, sendable = [], []
    for job in jobs:
        record = job.record
        try:
            data = _read_image(record)
            payload.append(
                ximilar.image_record(
                    record.as_ximilar(),
                    image_bytes=data,
                    url=None if data else record.image_url,
                    image_size=image_size,
                )
            )
            sendable.append(job)
        except (OSError, ValueError) as error:
            jobs_fail(jobs=[job], claim_id=claim_id, error_class="image", message=str(error))
    return payload, sendable


def _read_image(record) -> bytes | None:
    if not record.image:
        return None
    with record.image.open("rb") as file:
        return file.read()


# --- Outcomes -------------------------------------------------------------------


def results_store(*, submission, claim_id, jobs, response: ximilar.Response) -> None:
    for job, outcome in zip(jobs, response.records, strict=False):
        if outcome.ok:
            _job_done(submission, claim_id, job, outcome, response)
        else:
            message = f"Ximilar could not process this record: {outcome.text} ({outcome.code})"
            jobs_fail(jobs=[job], claim_id=claim_id, error_class="record", message=message)
    missing = jobs[len(response.records) :]
    if missing:
        jobs_retry(jobs=missing, claim_id=claim_id, error=ximilar.TransientError("reply too short"))


def _job_done(submission, claim_id, job, outcome, response) -> None:
    """Exactly one result per job: the row must still be ours (same claim, still
    sending) for the result to be stored, and both happen in one transaction."""
    best = outcome.best_label
    with transaction.atomic():
        now = timezone.now()
        ours = RecordJob.objects.filter(pk=job.pk, claim_id=claim_id, state=JobState.SENDING)
        if not ours.update(state=JobState.DONE, finished_at=now, updated_at=now, error_class=""):
            log.warning("submission.result_dropped job=%s (claim lost)", job.pk)
            return
        Result.objects.create(
            job=job,
            record_id=job.record_id,
            team_id=submission.team_id,
            service=submission.service,
            raw=outcome.raw,
            best_label=best.name if best else "",
            best_prob=best.prob if best else None,
            labels=[{"name": x.name, "prob": x.prob} for x in outcome.labels],
            tags=[{"name": t.name, "prob": t.prob, "group": t.group} for t in outcome.tags],
            colors=[_color_json(c) for c in outcome.colors],
            processing_time=response.processing_time,
            from_sandbox=response.sandbox,
        )


def _color_json(color) -> dict:
    return {
        "rgb": list(color.rgb) if color.rgb else None,
        "hex": color.hex,
        "name": color.name,
        "simple_name": color.simple_name,
        "percentage": color.percentage,
    }


def backoff_seconds(attempts: int) -> float:
    """Exponential with full jitter in its upper half, capped."""
    base = min(settings.XIMILAR_BACKOFF_CAP, 2.0 * 2 ** max(attempts - 1, 0))
    return base * (0.5 + random.random() / 2)


def jobs_retry(*, jobs, claim_id, error, wait: float | None = None) -> None:
    now = timezone.now()
    error_class = type(error).__name__
    message = getattr(error, "message", str(error))[:500]
    for job in jobs:
        if job.attempts >= settings.XIMILAR_MAX_ATTEMPTS:
            jobs_fail(jobs=[job], claim_id=claim_id, error_class=error_class, message=message)
            continue
        delay = max(wait or 0, backoff_seconds(job.attempts))
        RecordJob.objects.filter(pk=job.pk, claim_id=claim_id, state=JobState.SENDING).update(
            state=JobState.QUEUED,
            claim_id=None,
            lease_until=None,
            next_attempt_at=now + timedelta(seconds=delay),
            error_class=error_class,
            error_message=message,
            updated_at=now,
        )
    log.info("submission.retry jobs=%s error=%s", [j.pk for j in jobs], error_class)


def jobs_fail(*, jobs, claim_id, error_class: str, message: str) -> None:
    now = timezone.now()
    RecordJob.objects.filter(
        pk__in=[j.pk for j in jobs], claim_id=claim_id, state=JobState.SENDING
    ).update(
        state=JobState.FAILED,
        finished_at=now,
        updated_at=now,
        error_class=error_class,
        error_message=message[:500],
    )
    log.info("submission.record_failed jobs=%s error=%s", [j.pk for j in jobs], error_class)


def jobs_block_for_team(*, team_id: int, reason: str) -> None:
    RecordJob.objects.filter(team_id=team_id, state__in=[JobState.QUEUED, JobState.SENDING]).update(
        state=JobState.BLOCKED,
        claim_id=None,
        lease_until=None,
        error_class="token",
        error_message=reason,
        updated_at=timezone.now(),
    )


def jobs_unblock_for_team(*, team_id: int) -> None:
    blocked = RecordJob.objects.filter(team_id=team_id, state=JobState.BLOCKED)
    submission_ids = set(blocked.values_list("submission_id", flat=True))
    blocked.update(state=JobState.QUEUED, next_attempt_at=None, updated_at=timezone.now())
    for submission_id in submission_ids:
        transaction.on_commit(lambda pk=submission_id: submission_enqueue(pk))


# --- The sweeper -----------------------------------------------------------------------


def sweep() -> dict:
    """Re-enqueue what the broker may have lost: rows whose worker died (lease
    expired) go back to the queue, and submissions with ready rows that have not
    moved for a while get a new task."""
    now = timezone.now()
    expired = RecordJob.objects.filter(state=JobState.SENDING, lease_until__lt=now)
    expired.filter(attempts__gte=settings.XIMILAR_MAX_ATTEMPTS).update(
        state=JobState.FAILED,
        finished_at=now,
        error_class="worker_lost",
        error_message="The worker stopped while sending, too many times.",
    )
    requeued = expired.update(state=JobState.QUEUED, claim_id=None, lease_until=None)
    stale = (
        Submission.objects.filter(
            team__blocked_reason="",
            last_progress_at__lt=now - SWEEP_GRACE,
            jobs__in=RecordJob.objects.filter(_ready(now)),
        )
        .values_list("pk", flat=True)
        .distinct()
    )
    stale = list(stale)
    for submission_id in stale:
        Submission.objects.filter(pk=submission_id).update(last_progress_at=now)
        submission_enqueue(submission_id)
    if requeued or stale:
        log.info("submission.swept requeued=%s submissions=%s", requeued, len(stale))
    return {"requeued": requeued, "submissions": len(stale)}
