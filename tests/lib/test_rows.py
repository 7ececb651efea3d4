"""lib/rows.py writes rows without the ORM's per-field work; what it writes must
read back exactly as if the ORM had written it, on SQLite and PostgreSQL."""

import pytest

from ximilar_portal.history.models import RecordSummary, SummaryLabel
from ximilar_portal.lib.rows import (
    insert_statements,
    rows_insert,
    statements_run,
    upsert_statements,
)
from ximilar_portal.records.models import Record
from ximilar_portal.submissions.models import RecordJob, Result, Submission

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(team, owner):
    record = Record.objects.create(team=team, created_by=owner, ximilar_id="r1")
    submission = Submission.objects.create(team=team, created_by=owner, service="generic_tags")
    return RecordJob.objects.create(submission=submission, record=record, team=team)


def test_inserted_rows_get_their_ids_and_read_back_as_written(job):
    raw = {"_id": "r1", "_tags": [{"name": "red", "prob": 0.9}], "nested": {"ü": [1, None]}}
    result = Result(
        job=job,
        record_id=job.record_id,
        team_id=job.team_id,
        service="generic_tags",
        raw=raw,
        best_label="red",
        best_prob=0.9,
        tags=[{"name": "red", "prob": 0.9}],
        is_current=True,
    )

    [inserted] = rows_insert(Result, [result])

    stored = Result.objects.get()
    assert inserted.pk == stored.pk
    assert stored.raw == raw and stored.tags == [{"name": "red", "prob": 0.9}]
    assert stored.labels == [] and stored.is_current and stored.best_prob == 0.9
    assert stored.created_at is not None, "auto_now_add is applied"
    assert stored.created_at.tzinfo is not None


def test_an_upsert_updates_the_row_with_the_same_key_and_inserts_the_rest(team, owner):
    first, second = (
        Record.objects.create(team=team, created_by=owner, ximilar_id=name) for name in "ab"
    )
    for record in (first, second):
        RecordSummary.objects.create(
            record=record, team=team, created_at=record.created_at, ximilar_id=record.ximilar_id
        )
    RecordSummary.objects.filter(record=second).delete()

    def summary(record, label):
        return RecordSummary(
            record=record,
            team=team,
            created_at=record.created_at,
            ximilar_id=record.ximilar_id,
            best_label=label,
            top_tags=[{"name": label, "prob": 0.5}],
        )

    statements = upsert_statements(
        RecordSummary,
        [summary(first, "shoe"), summary(second, "bag")],
        unique="record",
        update=["best_label", "top_tags"],
    )
    assert RecordSummary.objects.get(record=first).best_label != "shoe", "built, not yet run"
    statements_run(statements)

    stored = dict(RecordSummary.objects.values_list("ximilar_id", "best_label"))
    assert stored == {"a": "shoe", "b": "bag"}
    assert RecordSummary.objects.get(record=first).top_tags == [{"name": "shoe", "prob": 0.5}]


def test_many_rows_are_split_under_the_parameter_limit(team, owner):
    record = Record.objects.create(team=team, created_by=owner, ximilar_id="r")
    RecordSummary.objects.create(
        record=record, team=team, created_at=record.created_at, ximilar_id="r"
    )
    labels = [
        SummaryLabel(summary_id=record.pk, team_id=team.pk, name=f"tag {n}", prob=n / 10_000)
        for n in range(6_000)
    ]

    rows_insert(SummaryLabel, labels)
    statements = insert_statements(SummaryLabel, labels[:3_000])
    statements_run(statements)

    assert SummaryLabel.objects.count() == 9_000
    assert len({label.pk for label in labels}) == 6_000
    assert len(statements) > 1, "3,000 rows of 4 values: more than one statement"
