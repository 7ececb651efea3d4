"""Reads for submissions, jobs and results, always inside one team."""

from django.shortcuts import get_object_or_404

from .models import FINAL_STATES, JobState, RecordJob, Result, Submission


def submission_get(*, team, pk) -> Submission:
    return get_object_or_404(Submission.objects.filter(team=team), pk=pk)


def submissions_for_team(*, team):
    return Submission.objects.filter(team=team).select_related("created_by")


def results_for_record(*, record):
    return Result.objects.filter(record=record, team_id=record.team_id).select_related(
        "job__submission__created_by"
    )


def jobs_for_record(*, record):
    return (
        RecordJob.objects.filter(record=record, team_id=record.team_id)
        .select_related("submission")
        .order_by("-id")
    )


def job_counts(*, submission) -> dict:
    counts = dict.fromkeys(JobState.values, 0)
    for state in submission.jobs.values_list("state", flat=True):
        counts[state] += 1
    counts["total"] = sum(counts.values())
    counts["final"] = sum(counts[state] for state in FINAL_STATES)
    return counts
