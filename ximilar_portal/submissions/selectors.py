"""Reads for submissions, jobs, results and collections, always inside one team."""

from datetime import timedelta

from django.apps import apps
from django.db.models import Count, Min, Q
from django.shortcuts import get_object_or_404
from django.utils import timezone

from ximilar_portal.records.models import Record

from .calls import requests_needed
from .models import (
    FINAL_STATES,
    Collection,
    JobState,
    RecordJob,
    Result,
    SearchAnswer,
    Submission,
    TeamQueue,
)

ETA_WINDOW = 60  # seconds of recent progress the time-left estimate is based on
FAILURES_SHOWN = 100


def submission_get(*, team, pk) -> Submission:
    return get_object_or_404(Submission.objects.filter(team=team), pk=pk)


def job_get(*, submission, pk) -> RecordJob:
    return get_object_or_404(RecordJob.objects.filter(submission=submission), pk=pk)


def collection_get(*, team, pk) -> Collection:
    return get_object_or_404(Collection.objects.filter(team=team), pk=pk)


def collections_for_team(*, team):
    return Collection.objects.filter(team=team)


def submissions_for_team(*, team):
    return Submission.objects.filter(team=team).select_related("created_by")


def submissions_with_counts(*, team, limit=50):
    """The newest submissions, each with `counts` like job_counts gives."""
    by_state = {state: Count("jobs", filter=Q(jobs__state=state)) for state in JobState.values}
    rows = list(submissions_for_team(team=team).annotate(**by_state)[:limit])
    for submission in rows:
        submission.counts = _counts_of({s: getattr(submission, s) for s in JobState.values})
        submission.state = submission_state(submission, submission.counts, paused=None)
    return rows


def queue_paused(*, team) -> bool:
    return TeamQueue.objects.filter(team=team, paused=True).exists()


def results_for_record(*, record):
    return Result.objects.filter(record=record, team_id=record.team_id).select_related(
        "job__submission__created_by"
    )


def answers_for_result(*, result):
    return SearchAnswer.objects.filter(result=result).select_related("record")


def jobs_for_record(*, record):
    return (
        RecordJob.objects.filter(record=record, team_id=record.team_id)
        .select_related("submission")
        .order_by("-id")
    )


def _counts_of(counts: dict) -> dict:
    counts = dict(counts)
    counts["total"] = sum(counts[state] for state in JobState.values)
    counts["final"] = sum(counts[state] for state in FINAL_STATES)
    counts["waiting"] = counts[JobState.QUEUED] + counts[JobState.SENDING]
    return counts


def job_counts(*, submission) -> dict:
    counts = dict.fromkeys(JobState.values, 0)
    for row in submission.jobs.values("state").annotate(n=Count("id")):
        counts[row["state"]] = row["n"]
    return _counts_of(counts)


def submission_state(submission, counts, *, paused) -> str:
    if counts["blocked"]:
        return "blocked"
    if counts["final"] == counts["total"]:
        return "cancelled" if submission.cancelled_at else "finished"
    if paused:
        return "paused"
    return "running"


def submission_progress(*, submission) -> dict:
    """Everything the progress bar shows, as JSON-ready values."""
    counts = job_counts(submission=submission)
    paused = queue_paused(team=submission.team)
    jobs = submission.jobs
    next_retry = jobs.filter(state=JobState.QUEUED, next_attempt_at__isnull=False).aggregate(
        first=Min("next_attempt_at")
    )["first"]
    failures = [
        {
            "job": job.pk,
            "record": job.record.ximilar_id,
            "record_url": job.record.get_absolute_url(),
            "error_class": job.error_class,
            "reason": job.error_message,
        }
        for job in jobs.filter(state=JobState.FAILED).select_related("record")[:FAILURES_SHOWN]
    ]
    retrying = jobs.filter(state=JobState.QUEUED).exclude(error_message="")
    return {
        "id": submission.pk,
        "state": submission_state(submission, counts, paused=paused),
        "counts": counts,
        "percent": round(100 * counts["final"] / counts["total"]) if counts["total"] else 100,
        "eta_seconds": _eta_seconds(submission, counts),
        "next_retry_at": next_retry.isoformat() if next_retry else None,
        "retrying": [
            {"record": job.record.ximilar_id, "reason": job.error_message}
            for job in retrying.select_related("record")[:20]
        ],
        "failures": failures,
    }


def _eta_seconds(submission, counts) -> int | None:
    """Time left at the pace of the last minute; None before anything finished."""
    if not counts["waiting"]:
        return 0
    now = timezone.now()
    since = max(submission.created_at, now - timedelta(seconds=ETA_WINDOW))
    recent = submission.jobs.filter(finished_at__gte=since).count()
    elapsed = max((now - since).total_seconds(), 1.0)
    if not recent:
        return None
    return round(counts["waiting"] * elapsed / recent)


def estimate(*, service: str, records: int) -> dict:
    """Requests and credits a submission will use: one credit per record per
    call, as Ximilar bills it; retries and Ximilar's own pricing may differ."""
    return {
        "records": records,
        "requests": requests_needed(service, records),
        "credits": records,
    }


def records_selected(*, team, record_ids=(), batch_id=None, everything=False):
    """The records a submit page is about: chosen ones, an upload batch's, or
    all of the team's. Always inside the team."""
    records = Record.objects.filter(team=team)
    if everything:
        return records.order_by("id")
    if batch_id is not None:
        return records.filter(batch_id=batch_id).order_by("id")
    return records.filter(pk__in=list(record_ids)).order_by("id")


def upload_batch_get(*, team, pk):
    """The upload batch (from the records app) when that model exists."""
    try:
        model = apps.get_model("records", "UploadBatch")
    except LookupError:
        return None
    return get_object_or_404(model.objects.filter(team=team), pk=pk)
