"""Reads for the operations page, across every team (staff only)."""

from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Max, Q, Sum

from ximilar_portal.accounts.models import Team
from ximilar_portal.submissions.calls import service_label
from ximilar_portal.submissions.models import JobState, RecordJob, Result, TeamQueue

from .models import Heartbeat

WINDOW = timedelta(hours=1)
TEAMS_SHOWN = 100
REASONS_SHOWN = 10


def heartbeats() -> dict:
    return dict(Heartbeat.objects.values_list("name", "seen_at"))


def _waiting():
    return RecordJob.objects.filter(state=JobState.QUEUED)


def oldest_waiting_job():
    """The record queued the longest (since its submission), or None."""
    jobs = _waiting().select_related("submission", "team__teamqueue")
    return jobs.order_by("created_at", "id").first()


def waiting_count() -> int:
    return _waiting().count()


def last_hour_by_service(now) -> list[dict]:
    """Per service, over the hour before `now`: results stored, records failed,
    the attempts beyond the first that those records took, and records waiting
    now that were already sent once. One row per service that had any."""
    since = now - WINDOW
    stored = Result.objects.filter(created_at__gte=since).values_list("service")
    failed = RecordJob.objects.filter(state=JobState.FAILED, finished_at__gte=since)
    failed = failed.values_list("submission__service")
    retrying = _waiting().filter(attempts__gt=0).values_list("submission__service")
    rows = defaultdict(lambda: dict.fromkeys(("stored", "failed", "retries", "waiting_retry"), 0))
    for column, finished in (("stored", stored), ("failed", failed)):
        attempts = "job__attempts" if column == "stored" else "attempts"
        for service, n, tries in finished.annotate(Count("id"), Sum(attempts)):
            rows[service][column] = n
            rows[service]["retries"] += max(0, (tries or 0) - n)
    for service, n in retrying.annotate(Count("id")):
        rows[service]["waiting_retry"] = n
    return sorted(
        (
            {"service": service, "label": service_label(service), **row, "failure_rate": _rate(row)}
            for service, row in rows.items()
        ),
        key=lambda row: row["label"],
    )


def _rate(row) -> float | None:
    finished = row["stored"] + row["failed"]
    return row["failed"] / finished if finished else None


def failure_reasons(now) -> list[dict]:
    """The commonest reasons of the last hour's failed records."""
    failed = RecordJob.objects.filter(state=JobState.FAILED, finished_at__gte=now - WINDOW)
    reasons = failed.values("submission__service", "error_class").annotate(
        n=Count("id"), example=Max("error_message")
    )
    return [
        {**reason, "label": service_label(reason["submission__service"])}
        for reason in reasons.order_by("-n")[:REASONS_SHOWN]
    ]


def rate_limits(now) -> tuple[list[dict], int]:
    """The limit in force for every team that has something going on (records
    waiting, paused, token refused, or its next slot ahead of now), most
    waiting first; and how many such teams were left out."""
    now_us = int(now.timestamp() * 1_000_000)
    waiting = dict(_waiting().values_list("team_id").annotate(n=Count("id")))
    queues = {
        queue.team_id: queue
        for queue in TeamQueue.objects.filter(
            Q(team_id__in=list(waiting)) | Q(paused=True) | Q(next_slot_us__gt=now_us)
        ).select_related("paused_by")
    }
    blocked = Team.objects.exclude(blocked_reason="").values_list("pk", flat=True)
    team_ids = sorted(
        set(waiting) | set(queues) | set(blocked),
        key=lambda pk: (-waiting.get(pk, 0), pk),
    )
    teams = Team.objects.in_bulk(team_ids[:TEAMS_SHOWN])
    rows = [
        _rate_row(teams[pk], queues.get(pk), waiting.get(pk, 0), now_us)
        for pk in team_ids[:TEAMS_SHOWN]
    ]
    return rows, max(0, len(team_ids) - TEAMS_SHOWN)


def _rate_row(team, queue, waiting: int, now_us: int) -> dict:
    ahead_us = (queue.next_slot_us - now_us) if queue else 0
    return {
        "team": team,
        "limit": settings.XIMILAR_RATE_LIMIT,
        "paused": bool(queue and queue.paused),
        "paused_at": queue.paused_at if queue else None,
        "paused_by": queue.paused_by if queue else None,
        "blocked_reason": team.blocked_reason,
        "next_slot_in": ahead_us / 1_000_000 if ahead_us > 0 else 0.0,
        "waiting": waiting,
    }
