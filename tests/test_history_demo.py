"""The demo data generator writes rows itself (executemany / COPY); what it
writes must be what the ORM and the engine's refresh would have produced."""

import pytest
from django.core.management import call_command

from ximilar_portal.history.demo import demo_data_generate
from ximilar_portal.history.models import RecordSummary, SummaryLabel, SyncMark
from ximilar_portal.history.services import SUMMARY_FIELDS, summary_refresh, summary_sync
from ximilar_portal.records.models import Record
from ximilar_portal.submissions.calls import SEARCH
from ximilar_portal.submissions.models import RecordJob, Result, SearchAnswer

pytestmark = pytest.mark.django_db


COMPARED = [name for name in SUMMARY_FIELDS if name != "refreshed_at"]  # when, not what


def snapshot(team):
    summaries = {
        s.record_id: {name: getattr(s, name) for name in COMPARED}
        for s in RecordSummary.objects.filter(team=team)
    }
    labels = sorted(
        SummaryLabel.objects.filter(team=team).values_list("summary_id", "name", "prob")
    )
    return summaries, labels


def test_its_summaries_are_exactly_what_summary_refresh_computes(team):
    made = demo_data_generate(team=team, records=400, answers=200, chunk=150, seed=5)
    assert made == {"records": 400, "teams": 1, "answers": 200}
    before = snapshot(team)
    assert len(before[0]) == 400 and before[1]

    ids = list(Record.objects.filter(team=team).values_list("pk", flat=True))
    summary_refresh(record_ids=ids)

    assert snapshot(team) == before
    statuses = {s["status"] for s in before[0].values()}
    assert {"done", "failed", "waiting", "blocked", ""} <= statuses
    assert any(SEARCH in s["services"] for s in before[0].values())


def test_its_rows_read_back_as_the_orm_wrote_them(team):
    demo_data_generate(team=team, records=60, answers=50, chunk=25, seed=2)
    record = Record.objects.filter(team=team, price__isnull=False).first()
    assert record.created_at.tzinfo is not None
    assert record.fields.keys() == {"brand", "stock"} and record.image_url.startswith("https://")
    job = RecordJob.objects.filter(team=team, state="done").select_related("result").first()
    assert job.result.record_id == job.record_id and job.result.is_current
    answer = SearchAnswer.objects.filter(team=team).select_related("result", "record").first()
    assert answer.result.service == SEARCH
    assert answer.record.ximilar_id == answer.answer_id == answer.fields["_id"]
    assert answer.result.job.submission.collection.team_id == team.pk
    # The database's own ids go on after the generator's.
    created = Record.objects.create(team=team, ximilar_id="after-the-demo")
    assert created.pk > max(Record.objects.exclude(pk=created.pk).values_list("pk", flat=True))


def test_nothing_is_left_for_the_first_visit_to_summarise(team):
    demo_data_generate(team=team, records=80, answers=40, chunk=30)
    mark = SyncMark.objects.get(team=team)
    assert mark.last_result_id == Result.objects.filter(team=team).order_by("-pk")[0].pk
    assert summary_sync(team=team, pending=True) == 0


def test_the_command_spreads_records_over_new_teams(capsys):
    call_command("generate_demo_data", records=90, answers=30, teams=3, chunk=20)
    assert "Created 90 records in 3 team(s) and 30 search answers" in capsys.readouterr().out
    assert RecordSummary.objects.count() == Record.objects.count() == 90


def test_a_second_run_into_the_same_team_adds_records(team):
    demo_data_generate(team=team, records=30, chunk=20)
    demo_data_generate(team=team, records=30, chunk=20, seed=8)
    assert Record.objects.filter(team=team).values("ximilar_id").distinct().count() == 60
    assert RecordSummary.objects.filter(team=team).count() == 60
