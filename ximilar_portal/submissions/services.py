"""The submission engine (design §3): rows in the database say where every
record stands; Celery only carries submission ids.

    queued ──claim──> sending ──> done | failed
       ^                 │
       └── retry later ──┘        blocked (token refused)  cancelled

A claim is leased: its worker renews the lease while it sends (see
_Claims), so a lease can be short and still outlast any call, and the records
of a worker that died come free within one lease. A 429 throttles the whole
team (ratelimit.team_throttle) and gives the rows back without spending an
attempt; XIMILAR_RECORD_DEADLINE_SECONDS ends a record that never goes through.

People's actions on a submission (cancel, retry, pause) are in actions.py.
"""

import logging
import os
import random
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from ximilar_portal.accounts import services as accounts
from ximilar_portal.accounts.models import Credential
from ximilar_portal.lib import ximilar
from ximilar_portal.lib.background import enqueue
from ximilar_portal.lib.crypto import DecryptionError
from ximilar_portal.lib.rows import rows_insert
from ximilar_portal.records.models import Record

from .calls import call_service, records_per_request, requests_needed
from .models import JobState, RecordJob, Result, SearchAnswer, Submission, TeamQueue
from .ratelimit import MAX_WAIT_SECONDS, slot_reserve, team_throttle, throttled_for

log = logging.getLogger(__name__)

BATCH_SIZE = ximilar.MAX_RECORDS_PER_REQUEST
# How long one task goes on sending batches before it hands over to a new task
# (so submissions of several teams take turns on the workers).
TASK_SECONDS = 20
# The shortest pause after a 429 that names no Retry-After (or names 0).
RATE_LIMITED_MIN_PAUSE = 1.0


# --- Creating and enqueueing --------------------------------------------------


def submission_create(
    *, team, user, records, service: str, options: dict, collection=None
) -> Submission:
    records = list(dict.fromkeys(records))  # a record once, whatever the selection said
    with transaction.atomic():
        submission = Submission.objects.create(
            team=team, created_by=user, service=service, options=options, collection=collection
        )
        # Without bulk_create's per-field compiling: 2,000 rows in a third of the time.
        rows_insert(
            RecordJob,
            (
                RecordJob(submission_id=submission.pk, record_id=record.pk, team_id=team.pk)
                for record in records
            ),
        )
        chains = chain_count(service, len(records))
        transaction.on_commit(lambda: submission_enqueue(submission.pk, chains=chains))
    log.info("submission.created id=%s records=%s service=%s", submission.pk, len(records), service)
    return submission


def chain_count(service: str, records: int) -> int:
    """How many tasks work on one submission at once: bounded concurrency."""
    return max(1, min(settings.XIMILAR_CONCURRENCY, requests_needed(service, records)))


def submission_enqueue(submission_id: int, *, chains: int = 1, countdown: float = 0) -> None:
    """Hand the submission to the workers. A broker that is down only delays the
    work: the rows stay queued and the sweeper enqueues them again."""
    from .tasks import process_submission

    for _ in range(chains):
        if not enqueue(process_submission, submission_id, countdown=countdown or None):
            break


# --- Claiming ------------------------------------------------------------------


def _ready(now):
    return Q(state=JobState.QUEUED) & (
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )


# What sending a batch reads of its rows: the job's own bookkeeping, and the
# record in Ximilar's format (Record.as_ximilar) with its image. Loading the
# other columns too was a tenth of a worker's time.
CLAIMED_FIELDS = [
    "submission_id",
    "team_id",
    "attempts",
    "created_at",
    "record__ximilar_id",
    "record__image",
    "record__image_url",
    "record__product_id",
    "record__category",
    "record__price",
    "record__tags",
    "record__fields",
]


def jobs_claim(*, submission_id: int, limit: int = BATCH_SIZE, claim_id=None):
    """Compare-and-set: only rows still queued become ours, so two workers never
    send the same record at once. Retries when another worker won the race.
    `claim_id` is the one the caller holds (see _Claims.holding)."""
    claim_id = claim_id or uuid.uuid4()
    for _ in range(5):
        now = timezone.now()
        ids = list(
            RecordJob.objects.filter(_ready(now), submission_id=submission_id)
            .order_by("id")
            .values_list("id", flat=True)[:limit]
        )
        if not ids:
            return None, []
        claimed = RecordJob.objects.filter(_ready(now), id__in=ids).update(
            state=JobState.SENDING,
            claim_id=claim_id,
            lease_until=now + timedelta(seconds=settings.XIMILAR_LEASE_SECONDS),
            attempts=F("attempts") + 1,
            updated_at=now,
        )
        if claimed:
            jobs = RecordJob.objects.filter(claim_id=claim_id, state=JobState.SENDING)
            jobs = jobs.select_related("record").only(*CLAIMED_FIELDS).order_by("id")
            return claim_id, list(jobs)
    return None, []


# --- Processing one batch ------------------------------------------------------------


# How often a worker process writes its progress marks (the sweeper's "has
# this submission moved?") and summarises its new results for the history.
# Each is a write transaction that every other writer waits for: once per
# batch, or once a second per task, they queued the workers behind them.
PROGRESS_EVERY_SECONDS = 1.0


class _Unreported:
    """What the tasks of this worker process have finished and not yet
    reported: one report a second for all of its threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.submission_ids: set[int] = set()
        self.record_ids: list[int] = []
        self.reported_at = time.monotonic()

    def add(self, submission_id: int, record_ids) -> None:
        with self.lock:
            self.submission_ids.add(submission_id)
            self.record_ids.extend(record_ids)
            due = time.monotonic() - self.reported_at >= PROGRESS_EVERY_SECONDS
        if due:
            self.report()

    def report(self) -> None:
        with self.lock:
            submission_ids, record_ids = self.submission_ids, self.record_ids
            self.submission_ids, self.record_ids = set(), []
            self.reported_at = time.monotonic()
        if not record_ids:
            return  # nothing was sent: nothing moved
        Submission.objects.filter(pk__in=submission_ids).update(last_progress_at=timezone.now())
        _history_refresh(record_ids)


class _Claims:
    """The claims this process holds while it sends them, and one thread that
    renews their leases: every lease/6 it extends to a full lease each claim
    last extended a third of a lease ago. A claim held longer than any call
    can take (slot wait, connect and read timeouts, one lease more) is left to
    lapse: the thread holding it is stuck, and the sweeper takes it back."""

    def __init__(self):
        self.lock = threading.Lock()
        self.renewed: dict[uuid.UUID, float] = {}  # claim -> when last extended (monotonic)
        self.started: dict[uuid.UUID, float] = {}  # claim -> when taken (monotonic)
        self.thread: threading.Thread | None = None
        self.pid = 0

    @contextmanager
    def holding(self, claim_id):
        """Renewed from before the claim is taken until its rows are settled."""
        now = time.monotonic()
        with self.lock:
            self.renewed[claim_id] = self.started[claim_id] = now
            self._start_renewing()
        try:
            yield claim_id
        finally:
            with self.lock:
                self.renewed.pop(claim_id, None)
                self.started.pop(claim_id, None)

    def _start_renewing(self) -> None:
        alive = self.thread is not None and self.thread.is_alive()
        if alive and self.pid == os.getpid():
            return
        self.pid = os.getpid()  # a forked child starts its own thread
        self.thread = threading.Thread(target=self._run, name="lease-renewal", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(settings.XIMILAR_LEASE_SECONDS / 6)
            try:
                self.renew_due()
            except Exception:
                log.exception("submission.lease_renewal_failed (retried next round)")
                connection.close()

    def renew_due(self) -> int:
        lease = settings.XIMILAR_LEASE_SECONDS
        now = time.monotonic()
        longest = longest_hold_seconds()
        with self.lock:
            due = [
                claim_id
                for claim_id, renewed in self.renewed.items()
                if now - renewed >= lease / 3 and now - self.started[claim_id] < longest
            ]
        if not due:
            return 0
        renewed = RecordJob.objects.filter(claim_id__in=due, state=JobState.SENDING).update(
            lease_until=timezone.now() + timedelta(seconds=lease)
        )
        with self.lock:
            for claim_id in due:
                if claim_id in self.renewed:
                    self.renewed[claim_id] = now
        return renewed


def longest_hold_seconds() -> float:
    """The longest a live worker holds one claim: its rate-limit wait, the
    call's connect and read timeouts, and a lease for reading images and
    writing the outcome."""
    return (
        MAX_WAIT_SECONDS
        + settings.XIMILAR_CONNECT_TIMEOUT
        + settings.XIMILAR_READ_TIMEOUT
        + settings.XIMILAR_LEASE_SECONDS
    )


class _ThisProcess:
    """What the threads of one worker process share: the claims they hold
    (renewed by one thread), what they finished and have not reported yet,
    and one HTTP session per thread."""

    def __init__(self):
        self.claims = _Claims()
        self.unreported = _Unreported()
        self.threads = threading.local()


_process = _ThisProcess()


def submission_process(*, submission_id: int) -> None:
    """One task run: claim up to 10 records, send them, store what came back,
    and go on with the next batch for up to TASK_SECONDS (no broker round trip
    per batch); then pass the rest of the submission on to the next task."""
    started = time.monotonic()
    submission = Submission.objects.select_related("collection").filter(pk=submission_id).first()
    if submission is None:
        return  # deleted, with its jobs
    try:
        while time.monotonic() - started < TASK_SECONDS:
            if not _process_one_batch(submission):
                return
        submission_enqueue(submission_id)
    finally:
        _process.unreported.report()  # what this task (and the process) finished is shown


def _process_one_batch(submission) -> bool:
    """Claim and send one batch; False when this task has nothing more to do."""
    standing = _standing(submission.pk)
    if standing is None or standing.cancelled_at:
        return False
    if standing.blocked_reason:
        jobs_block_for_team(team_id=submission.team_id, reason=standing.blocked_reason)
        return False
    if standing.paused:
        return False  # resuming the queue enqueues the team's submissions again
    throttled = throttled_for(standing.throttled_until_us)
    if throttled:
        # Ximilar said 429: nothing is claimed until the team may send again.
        submission_enqueue(submission.pk, countdown=min(throttled, 60))
        return False
    limit = records_per_request(submission.service)
    with _process.claims.holding(uuid.uuid4()) as claim_id:
        claim_id, jobs = jobs_claim(submission_id=submission.pk, limit=limit, claim_id=claim_id)
        if not jobs:
            _wake_up_for_retries(submission)
            return False
        batch_send(submission=submission, claim_id=claim_id, jobs=jobs)
    # Done, failed or waiting for a retry: the history shows which.
    _process.unreported.add(submission.pk, [job.record_id for job in jobs])
    return True


class _Standing(NamedTuple):
    cancelled_at: object
    blocked_reason: str
    paused: bool | None  # None: the team has no queue row yet
    throttled_until_us: int | None  # after a 429: no request before this moment


def _standing(submission_id: int) -> _Standing | None:
    """What people or Ximilar may change while a task runs (the rest of the
    submission is fixed once created): one row of plain values per batch."""
    row = (
        Submission.objects.filter(pk=submission_id)
        .values_list(
            "cancelled_at",
            "team__blocked_reason",
            "team__teamqueue__paused",
            "team__teamqueue__throttled_until_us",
        )
        .first()
    )
    return _Standing(*row) if row else None


def _wake_up_for_retries(submission) -> None:
    """Records waiting for a retry: come back when the first is due (short waits;
    the sweeper covers long ones, which live in next_attempt_at)."""
    first_due = list(
        submission.jobs.filter(state=JobState.QUEUED)
        .order_by(F("next_attempt_at").asc(nulls_first=True))
        .values_list("next_attempt_at", flat=True)[:1]
    )
    if not first_due:
        return  # nothing waiting
    # None: ready now (given back, or a claim race lost five times meanwhile).
    wait = 0 if first_due[0] is None else (first_due[0] - timezone.now()).total_seconds()
    submission_enqueue(submission.pk, countdown=min(max(wait, 0.1), 60))


def batch_send(*, submission, claim_id, jobs) -> None:
    """Send one claimed batch at its rate-limit slot and settle every row of it."""
    team_id = submission.team_id
    try:
        client = accounts.client_for_team(team_id=team_id, session=_session())
    except (Credential.DoesNotExist, DecryptionError) as error:
        reason = (
            "token: none saved"
            if isinstance(error, Credential.DoesNotExist)
            else ("token: cannot be decrypted with the configured keys")
        )
        accounts.team_block(team_id=team_id, reason=reason)
        return
    wait = slot_reserve(team_id=team_id)  # the images are read while the slot comes
    due = time.monotonic() + wait
    payload, jobs = _payload(jobs, submission.service, claim_id)
    if not jobs or not _may_send_now(submission, claim_id, jobs, wait, due):
        return
    try:
        reply = call_service(
            client, submission.service, submission.options, payload, submission.collection
        )
    except ximilar.AuthError as error:
        accounts.credential_mark_used(team_id=team_id, error=error.message)
        accounts.team_block(
            team_id=team_id, reason=f"token: refused by Ximilar ({error.http_status})"
        )
    except ximilar.RateLimited as error:
        pause = max(error.retry_after or 0, RATE_LIMITED_MIN_PAUSE)
        team_throttle(team_id=team_id, seconds=pause)
        jobs_rate_limited(jobs=jobs, claim_id=claim_id, error=error, delay=pause)
    except ximilar.TransientError as error:
        jobs_retry(jobs=jobs, claim_id=claim_id, error=error, wait=error.retry_after)
    except ximilar.PermanentError as error:
        jobs_fail(jobs=jobs, claim_id=claim_id, error_class="permanent", message=error.message)
    else:
        accounts.credential_mark_used(team_id=team_id)
        results_store(submission=submission, claim_id=claim_id, jobs=jobs, reply=reply)


def _may_send_now(submission, claim_id, jobs, wait: float, due: float) -> bool:
    """Wait for the batch's rate-limit slot (`wait` as slot_reserve returned
    it; `due` on the monotonic clock). After a wait, look again at the team: a
    token refused or a queue paused meanwhile means no call is made. With no
    wait, the look taken when the batch was claimed stands."""
    if wait < 0:
        jobs_release(jobs=jobs, claim_id=claim_id, delay=-wait)
        return False
    if wait == 0:
        return True
    time.sleep(max(0.0, due - time.monotonic()))
    standing = _standing(submission.pk)
    if standing is None:
        return False  # the submission was deleted, with these rows
    if standing.blocked_reason:
        jobs_block_for_team(team_id=submission.team_id, reason=standing.blocked_reason)
        return False
    if standing.paused:
        jobs_release(jobs=jobs, claim_id=claim_id, delay=0)
        return False
    throttled = throttled_for(standing.throttled_until_us)
    if throttled:  # a 429 came back for another batch while this one waited
        jobs_release(jobs=jobs, claim_id=claim_id, delay=throttled)
        return False
    return True  # a cancel meanwhile leaves claimed rows alone: they are sent


def _session():
    """One HTTP session per worker thread: connections are reused between
    batches (the token goes on each request, never on the session)."""
    threads = _process.threads
    if getattr(threads, "session", None) is None:
        threads.session = ximilar._new_session()
    return threads.session


def _payload(jobs, service, claim_id):
    """Records in Ximilar's format. A record whose image cannot be read fails
    on its own; the others still go."""
    known = ximilar.SERVICES.get(service) or ximilar.SERVICES["similarity"]
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
                    image_size=known.image_size,
                )
            )
            sendable.append(job)
        except (OSError, ValueError) as error:
            jobs_fail(jobs=[job], claim_id=claim_id, error_class="image", message=str(error))
    return payload, sendable


def _read_image(record) -> bytes | None:
    """Through Django's storage API: workers never read the web server's disk."""
    if not record.image:
        return None
    with record.image.open("rb") as file:
        return file.read()


# --- Outcomes -------------------------------------------------------------------


def results_store(*, submission, claim_id, jobs, reply) -> None:
    """Each record by its own outcome: done, retried (its own 5xx or timeout)
    or failed; records the reply did not account for are retried."""
    done, again = [], []
    for job, outcome in zip(jobs, reply.outcomes, strict=False):
        message = f"Ximilar could not process this record: {outcome.text} ({outcome.code})"
        if outcome.ok:
            done.append((job, outcome))
        elif outcome.retryable:
            again.append((job, message))
        else:
            jobs_fail(jobs=[job], claim_id=claim_id, error_class="record", message=message)
    if done:
        jobs_done(submission=submission, claim_id=claim_id, done=done, reply=reply)
    for job, message in again:
        jobs_retry(jobs=[job], claim_id=claim_id, error=ximilar.TransientError(message))
    missing = jobs[len(reply.outcomes) :]
    if missing:
        jobs_retry(jobs=missing, claim_id=claim_id, error=ximilar.TransientError("reply too short"))


def jobs_done(*, submission, claim_id, done, reply) -> None:
    """Exactly one result per job: only rows still ours (same claim, still
    sending) get a result, and the state change and the result are one
    transaction. The new result becomes the record's current one for the
    service. Two submissions finishing the same record at the same moment
    collide on the one-current constraint: the loser tries again."""
    for attempt in range(3):
        try:
            _jobs_done_once(submission, claim_id, done, reply)
            return
        except IntegrityError:
            if attempt == 2:
                raise


@transaction.atomic
def _jobs_done_once(submission, claim_id, done, reply) -> None:
    now = timezone.now()
    ids = [job.pk for job, _ in done]
    # The compare-and-set itself says which rows are ours: all of them, as a
    # rule; when fewer, the rows this very UPDATE finished (its timestamp).
    finished = _answerable([job for job, _ in done], claim_id).update(
        state=JobState.DONE,
        claim_id=claim_id,
        finished_at=now,
        updated_at=now,
        error_class="",
        error_message="",
    )
    if finished < len(ids):
        ours = set(
            RecordJob.objects.filter(
                pk__in=ids, claim_id=claim_id, state=JobState.DONE, finished_at=now
            ).values_list("pk", flat=True)
        )
        log.warning(
            "submission.result_dropped jobs=%s (another worker holds them now)",
            sorted(set(ids) - ours),
        )
        done = [(job, outcome) for job, outcome in done if job.pk in ours]
    if not done:
        return
    record_ids = [job.record_id for job, _ in done]
    Result.objects.filter(
        record_id__in=record_ids, service=submission.service, is_current=True
    ).update(is_current=False)
    results = rows_insert(
        Result, [_result(submission, job, outcome, reply) for job, outcome in done]
    )
    _answers_store(submission, done, results)


def _result(submission, job, outcome, reply) -> Result:
    best = outcome.best
    return Result(
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
        processing_time=reply.processing_time,
        from_sandbox=reply.sandbox,
        is_current=True,
        note=outcome.note[:300],
    )


def _answers_store(submission, done, results) -> None:
    """Search answers as rows, linked to the team's record when the `_id` is one."""
    rows = []
    for (job, outcome), result in zip(done, results, strict=True):
        for answer in outcome.answers:
            answer_id = str(answer.record.get("_id", ""))[:255]
            rows.append(
                SearchAnswer(
                    team_id=submission.team_id,
                    result=result,
                    query_record_id=job.record_id,
                    rank=answer.rank,
                    answer_id=answer_id,
                    distance=answer.distance,
                    fields=answer.record,
                )
            )
    if not rows:
        return
    known = dict(
        Record.objects.filter(
            team_id=submission.team_id, ximilar_id__in={row.answer_id for row in rows}
        ).values_list("ximilar_id", "pk")
    )
    for row in rows:
        row.record_id = known.get(row.answer_id)
    SearchAnswer.objects.bulk_create(rows)


def _history_refresh(record_ids) -> None:
    """bulk_create sends no post_save: tell the history about the new results
    (a task run does, about once a second). The results are stored whatever
    happens here, and the history's own catch-up finds any it missed."""
    try:
        from ximilar_portal.history.services import summary_refresh

        summary_refresh(record_ids=record_ids)
    except Exception:
        log.exception("submission.history_refresh_failed records=%s", len(record_ids))


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
    """Back to the queue with next_attempt_at set, or failed once the attempts
    are spent. A server's Retry-After is a floor, never shortened."""
    now = timezone.now()
    error_class = type(error).__name__
    message = getattr(error, "message", str(error))[:500]
    retrying = [job for job in jobs if job.attempts < settings.XIMILAR_MAX_ATTEMPTS]
    for job in jobs:
        if job not in retrying:
            message_spent = f"{message} (gave up after {job.attempts} attempts)"
            jobs_fail(jobs=[job], claim_id=claim_id, error_class=error_class, message=message_spent)
    if not retrying:
        return
    # One wait for the whole batch: it failed together, so it is retried
    # together, in one request, rather than split by each row's jitter.
    delay = max(wait or 0, backoff_seconds(max(job.attempts for job in retrying)))
    _still_claimed(retrying, claim_id).update(
        state=JobState.QUEUED,
        claim_id=None,
        lease_until=None,
        next_attempt_at=now + timedelta(seconds=delay),
        error_class=error_class,
        error_message=message,
        updated_at=now,
    )
    log.info("submission.retry jobs=%s error=%s", [j.pk for j in jobs], error_class)


def _answerable(jobs, claim_id):
    """The rows of `jobs` an answer of this claim may finish: the rows it
    still holds, and rows nobody holds any more (the sweeper gave them back
    when the lease lapsed, or the team was blocked meanwhile): Ximilar
    processed and billed them, so the answer is kept rather than sent again.
    Never a row another claim holds now: that claim stores its own answer."""
    nobody_holds = Q(claim_id__isnull=True, state__in=[JobState.QUEUED, JobState.BLOCKED])
    return RecordJob.objects.filter(
        Q(claim_id=claim_id, state=JobState.SENDING) | nobody_holds,
        pk__in=[job.pk for job in jobs],
    )


def _still_claimed(jobs, claim_id):
    """The rows of `jobs` this claim still holds: an update through it never
    touches a row the sweeper or another worker has taken since."""
    return RecordJob.objects.filter(
        pk__in=[job.pk for job in jobs], claim_id=claim_id, state=JobState.SENDING
    )


def jobs_release(*, jobs, claim_id, delay: float, error=None) -> None:
    """Give claimed rows back (rate-limit slot too far, queue paused, a 429):
    no attempt failed, so none is counted. `error` says why they wait."""
    now = timezone.now()
    said = {}
    if error is not None:
        said = {"error_class": type(error).__name__, "error_message": error.message[:500]}
    _still_claimed(jobs, claim_id).update(
        state=JobState.QUEUED,
        claim_id=None,
        lease_until=None,
        attempts=F("attempts") - 1,
        next_attempt_at=now + timedelta(seconds=delay) if delay else None,
        updated_at=now,
        **said,
    )


def jobs_rate_limited(*, jobs, claim_id, error, delay: float) -> None:
    """Ximilar said 429: the team slows down (its clock has moved), the rows
    go back without spending an attempt. A record still refused once its
    deadline has passed fails with that reason: it may never go through."""
    deadline = timedelta(seconds=settings.XIMILAR_RECORD_DEADLINE_SECONDS)
    now = timezone.now()
    late = [job for job in jobs if job.created_at + deadline <= now]
    if late:
        message = (
            f"{error.message} (still rate-limited when its deadline passed, "
            f"{_duration(deadline)} after it was submitted)"
        )
        jobs_fail(jobs=late, claim_id=claim_id, error_class="deadline", message=message)
    waiting = [job for job in jobs if job not in late]
    if waiting:
        jobs_release(jobs=waiting, claim_id=claim_id, delay=delay, error=error)
        log.info("submission.rate_limited jobs=%s wait=%.1fs", [j.pk for j in waiting], delay)


def _duration(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds >= 3600:
        return f"{seconds / 3600:g} h"
    return f"{seconds:g} s"


def jobs_fail(*, jobs, claim_id, error_class: str, message: str) -> None:
    now = timezone.now()
    _still_claimed(jobs, claim_id).update(
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
    submissions_wake(submission_ids=submission_ids)


def submissions_wake(*, submission_ids) -> None:
    """After the transaction: one set of chains for each of these submissions."""
    for submission in Submission.objects.filter(pk__in=list(submission_ids)):
        waiting = submission.jobs.filter(state=JobState.QUEUED).count()
        chains = chain_count(submission.service, waiting)
        transaction.on_commit(lambda pk=submission.pk, n=chains: submission_enqueue(pk, chains=n))


# --- The sweeper -----------------------------------------------------------------------


def sweep() -> dict:
    """Re-enqueue what the broker may have lost: rows whose worker died (lease
    expired) go back to the queue, and submissions with ready rows that have not
    moved for XIMILAR_SWEEP_GRACE_SECONDS get new tasks."""
    now = timezone.now()
    # A live worker renews its leases: one that lapsed belongs to a worker
    # that stopped (or hangs past any timeout).
    expired = RecordJob.objects.filter(state=JobState.SENDING, lease_until__lt=now)
    expired.filter(attempts__gte=settings.XIMILAR_MAX_ATTEMPTS).update(
        state=JobState.FAILED,
        finished_at=now,
        error_class="worker_lost",
        error_message=(
            "The worker sending this record stopped before it finished, "
            "and its attempts are used up."
        ),
    )
    requeued = expired.update(
        state=JobState.QUEUED, claim_id=None, lease_until=None, next_attempt_at=None
    )
    if requeued:
        log.warning("submission.lease_lapsed jobs=%s (their worker stopped)", requeued)
    grace = timedelta(seconds=settings.XIMILAR_SWEEP_GRACE_SECONDS)
    # Paused teams wait for a person; throttled ones for their Retry-After
    # (their own tasks come back then).
    now_us = int(now.timestamp() * 1_000_000)
    paused = TeamQueue.objects.filter(Q(paused=True) | Q(throttled_until_us__gt=now_us)).values(
        "team_id"
    )
    stale = list(
        Submission.objects.filter(
            team__blocked_reason="",
            cancelled_at__isnull=True,
            last_progress_at__lt=now - grace,
            jobs__in=RecordJob.objects.filter(_ready(now)),
        )
        .exclude(team_id__in=paused)
        .values_list("pk", flat=True)
        .distinct()
    )
    for submission_id in stale:
        Submission.objects.filter(pk=submission_id).update(last_progress_at=now)
    with transaction.atomic():
        submissions_wake(submission_ids=stale)
    if requeued or stale:
        log.info("submission.swept requeued=%s submissions=%s", requeued, len(stale))
    return {"requeued": requeued, "submissions": len(stale)}
