"""Exactly the current view as CSV, JSON (`{"records": [...]}`, Ximilar's own
form) or JSON Lines, produced as a stream of text pieces: rows are read with a
database cursor in chunks and written in batches, so memory stays flat however
many rows there are. The same generators feed the HTTP response and the
background export file."""

import csv
import io
import json
from itertools import islice

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import TextField
from django.db.models.functions import Cast

from ximilar_portal.submissions.models import Result

CHUNK = 2000
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "jsonl": "application/x-ndjson",
}
CSV_COLUMNS = [
    ("_id", "ximilar_id"),
    ("product_id", "product_id"),
    ("category", "category"),
    ("price", "price"),
    ("tags", "record_tags"),
    ("fields", "record_fields"),
    ("created_at", "created_at"),
    ("status", "status"),
    ("services", "services"),
    ("best_label", "best_label"),
    ("best_prob", "best_prob"),
    ("top_tags", "top_tags"),
    ("colors", "colors"),
    ("error", "error_message"),
]


JSON_COLUMNS = {"record_tags", "record_fields", "top_tags", "colors"}
# Also read as text: Django's per-row decimal and datetime converters cost a
# third of the export; the text only needs its spelling evened out (`_csv_row`).
TEXT_COLUMNS = JSON_COLUMNS | {"price", "created_at"}
CSV_CHUNK = 5000


def export_stream(qs, fmt: str):
    """Text pieces of the export of an ordered summary queryset."""
    return {"csv": csv_stream, "json": json_stream, "jsonl": jsonl_stream}[fmt](qs)


def csv_stream(qs):
    """List and dict columns are written as their JSON text, read as text from
    the database: decoding and re-encoding them would cost most of the time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([header for header, _ in CSV_COLUMNS])
    as_text = {column: Cast(column, TextField()) for column in TEXT_COLUMNS}
    columns = [f"{c}_text" if c in TEXT_COLUMNS else c for _, c in CSV_COLUMNS]
    qs = qs.annotate(**{f"{c}_text": expression for c, expression in as_text.items()})
    rows = qs.values_list(*columns).iterator(chunk_size=CSV_CHUNK)
    while batch := list(islice(rows, CSV_CHUNK)):
        writer.writerows(map(_csv_row, batch))
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def _csv_row(row):
    row = list(row)
    row[3] = _price_text(row[3])
    row[6] = _utc_iso(row[6])
    row[8] = row[8].strip("|")
    row[10] = "" if row[10] < 0 else row[10]
    return row


def _price_text(text):
    """12.3400 (PostgreSQL) and 12.34 (SQLite) both as 12.34; 100 stays 100."""
    if not text:
        return ""
    return text.rstrip("0").rstrip(".") if "." in text else text


def _utc_iso(text):
    """A UTC timestamp as the database spells it (`2026-01-02 03:04:05[.ffffff]`,
    with `+00` on PostgreSQL, whose sessions Django keeps in UTC) in ISO 8601."""
    text = text.replace(" ", "T", 1)
    if text.endswith("+00"):
        return text + ":00"
    return text if text.endswith("+00:00") else text + "+00:00"


def jsonl_stream(qs):
    for batch in _record_batches(qs):
        yield "".join(_dumps(item) + "\n" for item in batch)


def json_stream(qs):
    yield '{"records": ['
    first = True
    for batch in _record_batches(qs):
        text = ",\n".join(_dumps(item) for item in batch)
        yield ("\n" if first else ",\n") + text
        first = False
    yield "\n]}\n"


def _dumps(item) -> str:
    return json.dumps(item, ensure_ascii=False, cls=DjangoJSONEncoder)


def _record_batches(qs):
    """Records in Ximilar's form with their results and search answers, a chunk
    at a time (one extra query per chunk for each, never one per record)."""
    summaries = qs.select_related("record").iterator(chunk_size=CHUNK)
    while batch := list(islice(summaries, CHUNK)):
        ids = [s.record_id for s in batch]
        results = _results_by_record(ids)
        answers = _answers_by_record(batch[0].team_id, ids)
        yield [
            _record_item(s, results.get(s.record_id, []), answers.get(s.record_id, []))
            for s in batch
        ]


def _record_item(summary, results, answers) -> dict:
    item = summary.record.as_ximilar()
    item["_history"] = {
        "status": summary.status,
        "services": summary.service_list,
        "best_label": summary.best_label,
        "best_prob": summary.best_prob if summary.has_prob else None,
        "created_at": summary.created_at,
        "error": summary.error_message,
    }
    item["_results"] = results
    item["_search_answers"] = answers
    return item


def _results_by_record(ids) -> dict:
    by_record = {}
    rows = Result.objects.filter(record_id__in=ids).order_by("created_at", "id")
    for row in rows.values(
        "record_id", "service", "created_at", "best_label", "best_prob", "labels", "tags", "colors"
    ):
        by_record.setdefault(row.pop("record_id"), []).append(row)
    return by_record


def _answers_by_record(team_id, ids) -> dict:
    from .answers import answers_for_records

    return answers_for_records(team_id=team_id, record_ids=ids)
