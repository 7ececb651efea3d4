"""What people do to the queue: cancel or delete a submission, retry failed
records, pause and resume the team's queue. Each owns its transaction."""

import logging

from django.db import transaction
from django.utils import timezone

from .models import JobState, RecordJob, TeamQueue
from .ratelimit import queue_row
from .services import submissions_wake

log = logging.getLogger(__name__)


def audit(*, team, user, action, target, details=None) -> None:
    from ximilar_portal.audit.services import audit_record

    audit_record(team=team, user=user, action=action, target=target, details=details)


@transaction.atomic
def submission_cancel(*, submission, user) -> int:
    """Records not yet sent are cancelled; a request already in flight still
    stores its result (it is billed either way)."""
    now = timezone.now()
    submission.cancelled_at = now
    submission.save(update_fields=["cancelled_at"])
    count = submission.jobs.filter(state__in=[JobState.QUEUED, JobState.BLOCKED]).update(
        state=JobState.CANCELLED,
        finished_at=now,
        updated_at=now,
        error_class="cancelled",
        error_message=f"Cancelled by {getattr(user, 'email', 'someone')}.",
    )
    audit(
        team=submission.team,
        user=user,
        action="submission.cancelled",
        target=f"submission #{submission.pk}",
        details={"records_cancelled": count, "service": submission.service},
    )
    log.info("submission.cancelled id=%s records=%s", submission.pk, count)
    return count


@transaction.atomic
def submission_delete(*, submission, user) -> None:
    """Deletes the submission with its jobs and results (the record stays)."""
    details = {"service": submission.service, "records": submission.jobs.count()}
    audit(
        team=submission.team,
        user=user,
        action="submission.deleted",
        target=f"submission #{submission.pk}",
        details=details,
    )
    submission.delete()


@transaction.atomic
def jobs_retry_failed(*, submission, job_id: int | None = None) -> int:
    """Failed records go back to the queue with a fresh set of attempts."""
    failed = submission.jobs.filter(state=JobState.FAILED)
    if job_id is not None:
        failed = failed.filter(pk=job_id)
    count = failed.update(
        state=JobState.QUEUED,
        attempts=0,
        next_attempt_at=None,
        claim_id=None,
        lease_until=None,
        finished_at=None,
        error_class="",
        error_message="",
        updated_at=timezone.now(),
    )
    if count:
        if submission.cancelled_at:
            submission.cancelled_at = None
            submission.save(update_fields=["cancelled_at"])
        submissions_wake(submission_ids=[submission.pk])
    log.info("submission.retried id=%s records=%s", submission.pk, count)
    return count


@transaction.atomic
def team_queue_pause(*, team, user) -> None:
    queue_row(team.pk)
    TeamQueue.objects.filter(team=team).update(
        paused=True, paused_at=timezone.now(), paused_by=user
    )
    audit(team=team, user=user, action="queue.paused", target=f"team #{team.pk}")


@transaction.atomic
def team_queue_resume(*, team, user) -> None:
    queue_row(team.pk)
    TeamQueue.objects.filter(team=team).update(paused=False, paused_at=None, paused_by=None)
    waiting = RecordJob.objects.filter(team=team, state=JobState.QUEUED)
    submissions_wake(submission_ids=set(waiting.values_list("submission_id", flat=True)))
    audit(team=team, user=user, action="queue.resumed", target=f"team #{team.pk}")
