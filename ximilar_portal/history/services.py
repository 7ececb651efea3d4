"""Writes of the history: the summary rows (its read model), saved views and
exports.

`summary_refresh(record_ids=...)` is the hook for the other apps: call it after
anything that changes what a record's history shows (a record saved with
`.update()` or `bulk_create`, a job whose state moved). Records and results
saved with `.save()`/`.create()` are refreshed by signals; `summary_sync` picks
up, on each visit, records, jobs and results newer than it has seen, and the
periodic `history.sync` task also every record still shown as waiting or
blocked whose job moved on: a missed call delays the history, it never loses
anything.
"""

import hashlib
import json
import logging
import tempfile
import threading
import uuid
from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.core.files import File
from django.db import connections, transaction
from django.db.models import F, Max, Q
from django.http import QueryDict
from django.utils import timezone

from ximilar_portal.audit.services import audit_record
from ximilar_portal.lib import background
from ximilar_portal.lib.rows import insert_statements, statements_run, upsert_statements
from ximilar_portal.lib.storage import save_file
from ximilar_portal.records.models import Record
from ximilar_portal.submissions.models import RecordJob, Result

from .models import (
    NO_PRICE,
    NO_PROB,
    Export,
    ExportState,
    RecordSummary,
    SavedView,
    Status,
    SummaryLabel,
    SyncMark,
)

log = logging.getLogger(__name__)

CHUNK = 500
# Workers that may die on one export before it is failed for good.
EXPORT_MAX_ATTEMPTS = 3
TOP_TAGS = 5
TOP_COLORS = 6
JOB_STATUS = {
    "queued": Status.WAITING,
    "sending": Status.WAITING,
    "done": Status.DONE,
    "failed": Status.FAILED,
    "blocked": Status.BLOCKED,
    "cancelled": Status.CANCELLED,
}
# What a refresh rewrites of an existing summary: everything but its key.
SUMMARY_FIELDS = [f.name for f in RecordSummary._meta.concrete_fields if f.name != "record"]


def summary_refresh(*, record_ids) -> int:
    """Recompute the summaries of these records from their record, jobs and
    results; records that no longer exist lose theirs. Safe to call twice."""
    record_ids = sorted(set(record_ids))
    for start in range(0, len(record_ids), CHUNK):
        _refresh_chunk(record_ids[start : start + CHUNK])
    return len(record_ids)


def _refresh_chunk(ids) -> None:
    records = list(Record.objects.filter(pk__in=ids))
    jobs, results = defaultdict(list), defaultdict(list)
    job_rows = RecordJob.objects.filter(record_id__in=ids).order_by("id")
    for job in job_rows.values(
        "record_id", "state", "error_message", "submission__service", "submission__created_by_id"
    ):
        jobs[job["record_id"]].append(job)
    result_rows = Result.objects.filter(record_id__in=ids).order_by("created_at", "id")
    for result in result_rows.values(
        "record_id", "service", "best_label", "best_prob", "labels", "tags", "colors"
    ):
        results[result["record_id"]].append(result)
    built = [summary_build(r, jobs[r.pk], results[r.pk]) for r in records]
    summaries = upsert_statements(
        RecordSummary, [summary for summary, _ in built], unique="record", update=SUMMARY_FIELDS
    )
    labels = insert_statements(SummaryLabel, [label for _, labels in built for label in labels])
    # Built before: the transaction, which every other writer waits for, only runs them.
    with transaction.atomic():
        RecordSummary.objects.filter(record_id__in=ids).exclude(
            record_id__in=[r.pk for r in records]
        ).delete()
        statements_run(summaries)
        SummaryLabel.objects.filter(summary_id__in=ids).delete()
        statements_run(labels)


def summary_build(record, jobs, results) -> tuple[RecordSummary, list[SummaryLabel]]:
    """The summary of one record: `jobs` in id order, `results` oldest first, both
    as dicts. Pure: the demo data generator builds summaries with it too."""
    summary = RecordSummary(
        record_id=record.pk,
        team_id=record.team_id,
        created_at=record.created_at,
        ximilar_id=record.ximilar_id,
        product_id=record.product_id,
        category=record.category,
        price=record.price,
        price_sort=record.price if record.price is not None else NO_PRICE,
        has_image=bool(record.image),
        has_thumbnail=bool(record.thumbnail),
        record_tags=list(record.tags or []),
        record_fields=dict(record.fields or {}),
    )
    _apply_jobs(summary, jobs)
    probs = _apply_results(summary, results)
    _apply_text(summary, record, jobs, results)
    labels = [
        SummaryLabel(summary_id=record.pk, team_id=record.team_id, name=name, prob=prob)
        for name, prob in probs.items()
    ]
    return summary, labels


def _apply_jobs(summary, jobs) -> None:
    if not jobs:
        return
    summary.status = JOB_STATUS.get(jobs[-1]["state"], Status.WAITING)
    latest_per_service = {job["submission__service"]: job for job in jobs}
    failing = [j for j in latest_per_service.values() if j["state"] in ("failed", "blocked")]
    summary.has_error = bool(failing)
    summary.error_message = failing[-1]["error_message"][:500] if failing else ""


def _apply_results(summary, results) -> dict[str, float]:
    """Latest result per kind wins for display; every label and tag ever given
    counts for the "any label ≥ p" filter, with its highest probability."""
    probs: dict[str, float] = {}
    for result in results:
        if result["best_label"]:
            summary.best_label = result["best_label"][:255]
            summary.best_prob = result["best_prob"] if result["best_prob"] is not None else NO_PROB
        named = [*result["labels"], *result["tags"]]
        if result["tags"] or result["labels"]:
            summary.top_tags = _top_tags(result["tags"] or result["labels"])
        if result["colors"]:
            summary.colors = [_color(c) for c in result["colors"][:TOP_COLORS]]
        for item in named:
            name, prob = (item.get("name") or "").lower()[:255], item.get("prob")
            if name:
                probs[name] = max(probs.get(name, 0.0), prob if prob is not None else 0.0)
    if summary.best_label:
        key = summary.best_label.lower()
        probs[key] = max(probs.get(key, 0.0), max(summary.best_prob, 0.0))
    summary.services = _bars(sorted({r["service"] for r in results}))
    return probs


def _top_tags(items) -> list[dict]:
    ranked = sorted(items, key=lambda t: -(t.get("prob") or 0))[:TOP_TAGS]
    return [{"name": t.get("name") or "", "prob": t.get("prob")} for t in ranked]


def _color(color) -> dict:
    return {
        "hex": color.get("hex") or "#999999",
        "name": color.get("name") or color.get("simple_name") or "",
        "percentage": color.get("percentage"),
    }


def _apply_text(summary, record, jobs, results) -> None:
    result_tags = {t.get("name", "") for r in results for t in r["tags"]}
    tags = [str(t) for t in summary.record_tags] + sorted(result_tags)
    fields = [f"{k}={v}" for k, v in summary.record_fields.items()]
    summary.tags_text = _bars(tags)
    summary.fields_text = _bars(fields)
    people = {record.created_by_id} | {j["submission__created_by_id"] for j in jobs}
    summary.people = _bars(str(p) for p in people if p)
    words = [record.ximilar_id, record.product_id, *tags, *fields]
    summary.search_text = _bars(words)


def _bars(values) -> str:
    """`|a|b|`, lower case, so a whole value is found with `contains "|a|"`."""
    cleaned = [str(v).lower().replace("|", "/") for v in values if str(v)]
    return "|" + "|".join(cleaned) + "|" if cleaned else ""


def summary_sync(*, team, pending=False) -> int:
    """Summarise what changed without a refresh call: records, jobs and results
    newer than this team's mark (cheap: an index range past the mark, so each
    history visit does it) and, with `pending`, every record still shown as
    waiting or blocked whose jobs moved on (the periodic `history.sync` task)."""
    mark, _ = SyncMark.objects.get_or_create(team=team)
    new_records = Record.objects.filter(team=team, pk__gt=mark.last_record_id)
    new_jobs = RecordJob.objects.filter(team=team, pk__gt=mark.last_job_id)
    new_results = Result.objects.filter(team=team, pk__gt=mark.last_result_id)
    marks = {
        "last_record_id": new_records.aggregate(m=Max("pk"))["m"],
        "last_job_id": new_jobs.aggregate(m=Max("pk"))["m"],
        "last_result_id": new_results.aggregate(m=Max("pk"))["m"],
    }
    ids = _pending_moved(team) if pending else set()
    if marks["last_record_id"]:
        ids |= set(new_records.values_list("pk", flat=True))
    if marks["last_job_id"]:
        ids |= set(new_jobs.values_list("record_id", flat=True))
    if marks["last_result_id"]:
        ids |= set(new_results.values_list("record_id", flat=True))
    summary_refresh(record_ids=ids)
    changed = {name: value for name, value in marks.items() if value}
    if changed:
        SyncMark.objects.filter(pk=mark.pk).update(**changed)
    return len(ids)


def summaries_sync_all() -> int:
    """Every team's summaries up to date, pending ones included: what the
    periodic task runs, so a job moved with `.update()` and no refresh call
    shows within `HISTORY_SYNC_SECONDS` even if nobody opens the history."""
    from ximilar_portal.accounts.models import Team

    count = sum(summary_sync(team=team, pending=True) for team in Team.objects.order_by("pk"))
    log.info("history.synced records=%s", count)
    return count


def _pending_moved(team) -> set[int]:
    """All records shown as waiting or blocked whose latest job has moved on
    since (the engine changes job states with `.update()`, which sends no
    signal), read in keyset chunks of the summary's status index."""
    pending = RecordSummary.objects.filter(team=team, status__in=[Status.WAITING, Status.BLOCKED])
    moved, after = set(), 0
    while chunk := dict(
        pending.filter(record_id__gt=after)
        .order_by("record_id")
        .values_list("record_id", "status")[:CHUNK]
    ):
        latest = {}
        jobs = RecordJob.objects.filter(record_id__in=list(chunk)).order_by("id")
        for record_id, state in jobs.values_list("record_id", "state"):
            latest[record_id] = JOB_STATUS.get(state, Status.WAITING)
        moved |= {pk for pk, status in chunk.items() if latest.get(pk) != status}
        after = max(chunk)
    return moved


def summary_rebuild(*, team=None) -> int:
    """Every record again (after a deploy that changed what summaries hold)."""
    records = Record.objects.all() if team is None else Record.objects.filter(team=team)
    ids = list(records.values_list("pk", flat=True))
    count = summary_refresh(record_ids=ids)
    log.info("history.summaries_rebuilt count=%s", count)
    return count


# --- Saved views --------------------------------------------------------------------------


def saved_view_create(*, team, user, name: str, query: str, shared: bool) -> SavedView:
    view = SavedView.objects.create(team=team, owner=user, name=name, query=query, shared=shared)
    log.info("history.view_saved id=%s shared=%s", view.pk, shared)
    return view


def saved_view_update(*, view: SavedView, name: str, query: str, shared: bool) -> SavedView:
    view.name, view.query, view.shared = name, query, shared
    view.save(update_fields=["name", "query", "shared", "updated_at"])
    return view


def saved_view_delete(*, view: SavedView) -> None:
    view.delete()


# --- Exports ------------------------------------------------------------------------------


def export_audit(*, team, user, fmt: str, query: str, record_ids, rows=None, export_id=None):
    """Every export leaves a line in the team's audit log."""
    details = {"format": fmt, "query": query, "checked": len(record_ids or [])}
    if rows is not None:
        details["rows"] = rows
    if export_id is not None:
        details["export"] = export_id
    audit_record(
        team=team, user=user, action="export.downloaded", target=f"history?{query}", details=details
    )


OPEN_STATES = (ExportState.WAITING, ExportState.RUNNING)


def export_create(*, team, user, fmt: str, query: str, record_ids) -> tuple[Export, bool]:
    """A background export, or the team's identical one still waiting or
    running (then `reused` is True and nothing new is made). It starts at once
    when the team has a free slot, otherwise when one of its exports ends."""
    record_ids = sorted(set(record_ids or []))
    key = export_key(team=team, fmt=fmt, query=query, record_ids=record_ids)
    with transaction.atomic():
        _team_lock(team.pk)
        same = Export.objects.filter(team=team, state__in=OPEN_STATES, key=key).first()
        if same is not None:
            log.info("history.export_reused id=%s", same.pk)
            return same, True
        export = Export.objects.create(
            team=team, created_by=user, format=fmt, query=query, record_ids=record_ids, key=key
        )
        _exports_start(team.pk)
    export.refresh_from_db(fields=["state"])
    log.info("history.export_queued id=%s format=%s state=%s", export.pk, fmt, export.state)
    return export, False


def export_key(*, team, fmt: str, query: str, record_ids) -> str:
    """The same for two requests that would write the same file: the filters
    as the form cleans them (order, spacing and case do not matter), the sort,
    the checked rows and the format."""
    form = _filter_form(query, team=team)
    if form.is_valid():
        what = {"filters": form.active_filters(), "sort": form.cleaned_data["sort"]}
    else:
        what = {"query": query}
    what.update(format=fmt, ids=sorted(record_ids or []))
    text = json.dumps(what, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _team_lock(team_id: int) -> None:
    """Serialise a team's export starts (PostgreSQL: the team row's lock;
    SQLite's write transactions are serialised already)."""
    from ximilar_portal.accounts.models import Team

    list(Team.objects.select_for_update().filter(pk=team_id).values_list("pk", flat=True))


def _exports_start(team_id: int) -> list[int]:
    """Inside a transaction holding the team lock: the team's oldest waiting
    exports become running, up to its limit, and are enqueued after commit."""
    running = Export.objects.filter(team_id=team_id, state=ExportState.RUNNING).count()
    free = settings.EXPORT_MAX_RUNNING_PER_TEAM - running
    if free <= 0:
        return []
    waiting = Export.objects.filter(team_id=team_id, state=ExportState.WAITING)
    ids = list(waiting.order_by("created_at", "id").values_list("pk", flat=True)[:free])
    Export.objects.filter(pk__in=ids).update(
        state=ExportState.RUNNING, run_token="", heartbeat_at=timezone.now()
    )
    transaction.on_commit(lambda: [_export_enqueue(pk) for pk in ids])
    return ids


def exports_start(*, team_id: int) -> list[int]:
    with transaction.atomic():
        _team_lock(team_id)
        return _exports_start(team_id)


def _export_enqueue(export_id: int) -> None:
    """A message that cannot be sent is not a failure: the export stays
    running without a sign of life, and the sweeper sends it again."""
    from .tasks import run_export

    background.enqueue(run_export, export_id)


def exports_sweep() -> dict:
    """Running exports with no sign of life for EXPORT_STALE_SECONDS (message
    lost, or worker gone) are handed out again, or failed after
    EXPORT_MAX_ATTEMPTS workers died on them; then every team with waiting
    exports gets its free slots filled."""
    now = timezone.now()
    stale = Export.objects.filter(state=ExportState.RUNNING).filter(
        Q(heartbeat_at__isnull=True)
        | Q(heartbeat_at__lt=now - timedelta(seconds=settings.EXPORT_STALE_SECONDS))
    )
    given_up = stale.filter(attempts__gte=EXPORT_MAX_ATTEMPTS).update(
        state=ExportState.FAILED,
        finished_at=now,
        error_message="The worker stopped while writing this export, too many times.",
    )
    resent = []
    for export_id in stale.values_list("pk", flat=True):
        if stale.filter(pk=export_id).update(run_token="", heartbeat_at=now):
            _export_enqueue(export_id)
            resent.append(export_id)
    waiting = Export.objects.filter(state=ExportState.WAITING).values_list("team_id", flat=True)
    started = [pk for team_id in set(waiting) for pk in exports_start(team_id=team_id)]
    if given_up or resent or started:
        log.info(
            "history.exports_swept failed=%s resent=%s started=%s",
            given_up,
            len(resent),
            len(started),
        )
    return {"failed": given_up, "resent": len(resent), "started": len(started)}


class ExportTaken(Exception):
    """Another worker took this export over (this one was thought dead)."""


def export_run(*, export_id: int) -> None:
    """Write the export file at constant memory (a temporary file on disk, then
    the media storage), and mark it ready; then the team's next waiting export
    starts. Only the worker that takes the export (compare-and-set on
    `run_token`) writes it: a message sent twice runs once."""
    token = uuid.uuid4().hex
    taken = Export.objects.filter(pk=export_id, state=ExportState.RUNNING, run_token="").update(
        run_token=token, heartbeat_at=timezone.now(), attempts=F("attempts") + 1
    )
    if not taken:
        return
    export = Export.objects.select_related("team").get(pk=export_id)
    mine = Export.objects.filter(pk=export_id, state=ExportState.RUNNING, run_token=token)
    try:
        rows = _export_file_write(export, mine)
    except ExportTaken:
        log.warning("history.export_taken_over id=%s", export_id)
        return
    except Exception as error:
        log.exception("history.export_failed id=%s", export_id)
        mine.update(
            state=ExportState.FAILED, error_message=str(error)[:500], finished_at=timezone.now()
        )
    else:
        log.info("history.export_done id=%s rows=%s", export_id, rows)
    exports_start(team_id=export.team_id)


def _export_file_write(export, mine) -> int:
    """The file, stored, and the export marked done while still this worker's."""
    qs = export_queryset(export)
    with tempfile.TemporaryFile("w+b") as file, _Heartbeat(mine) as heartbeat:
        rows = _write_export(file, qs, export.format, still_mine=heartbeat.still_mine)
        file.seek(0)
        save_file(export.file, f"export.{export.format}", File(file))
    done = mine.update(
        state=ExportState.DONE, file=export.file.name, rows=rows, finished_at=timezone.now()
    )
    if not done:
        export.file.delete(save=False)
        raise ExportTaken
    return rows


class _Heartbeat:
    """Shows every EXPORT_STALE_SECONDS / 4 that the export is alive, from a
    thread of its own with its own database connection: the writing thread's
    connection holds the rows' cursor open, and on SQLite a write from it fails
    ("database is locked") once any other connection has written."""

    def __init__(self, mine):
        self.mine, self.lost, self.stop = mine, threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stop.set()
        self.thread.join()

    def still_mine(self) -> bool:
        return not self.lost.is_set()

    def _beat(self) -> None:
        try:
            while not self.stop.wait(settings.EXPORT_STALE_SECONDS / 4):
                if not self.mine.update(heartbeat_at=timezone.now()):
                    self.lost.set()
                    return
        except Exception:
            log.exception("history.export_heartbeat_failed")  # the sweeper decides
        finally:
            connections.close_all()


def export_queryset(export):
    from . import selectors

    form = _filter_form(export.query, team=export.team)
    filters = form.active_filters() if form.is_valid() else {}
    sort = form.cleaned_data.get("sort") or "newest" if form.is_valid() else "newest"
    qs = selectors.summaries_filtered(
        team=export.team, filters=filters, record_ids=export.record_ids or None
    )
    return selectors.ordered(qs, sort)


def _filter_form(query: str, team=None):
    """The history's filter form over a stored query. With the team, "by"
    accepts its members (without them that filter would be dropped)."""
    from .forms import HistoryFilterForm
    from .pages import team_members

    members = team_members(team) if team is not None else ()
    return HistoryFilterForm(QueryDict(query), members=members)


def _write_export(file, qs, fmt, still_mine=lambda: True) -> int:
    from .exports import export_stream

    for piece in export_stream(qs, fmt):
        if not still_mine():
            raise ExportTaken
        file.write(piece.encode())
    return qs.count()
