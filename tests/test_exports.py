"""Background exports: at most EXPORT_MAX_RUNNING_PER_TEAM of a team's run at
once (the others wait and start as slots free), an identical waiting or running
export is reused instead of written again, one team's exports never hold back
another's, and a lost message or a dead worker never leaves an export (or its
team's slot) stuck. Requests are made through the export view, the way people
make them; messages are recorded instead of sent, and `export_run` is called
as the worker's task calls it."""

import threading
import time
from datetime import timedelta
from itertools import islice

import pytest
from django.db import connection
from django.db.models import F
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from ximilar_portal.history import exports, services, views
from ximilar_portal.history.demo import demo_data_generate
from ximilar_portal.history.models import Export, ExportState, RecordSummary, Status, SyncMark

from .conftest import client_for

pytestmark = pytest.mark.django_db(transaction=True)

LIMIT = 2
# Six different exports: every format, two sort orders.
DIFFERENT = [
    {"format": fmt, "query": f"sort={sort}"}
    for fmt in ("csv", "json", "jsonl")
    for sort in ("newest", "oldest")
]


@pytest.fixture
def sent(team, monkeypatch, settings):
    """Ids of the export messages sent, in order (none reaches a broker); every
    export is large enough to go to the background."""
    settings.EXPORT_MAX_RUNNING_PER_TEAM = LIMIT
    monkeypatch.setattr(views, "INLINE_EXPORT_ROWS", 0)
    messages = []
    monkeypatch.setattr(services, "_export_enqueue", messages.append)
    demo_data_generate(team=team, records=20, chunk=20, seed=5)
    return messages


def export_request(who, data):
    """Posted by a user, or by a client (whose session then shows the message)."""
    client = who if isinstance(who, Client) else client_for(who)
    return client.post(reverse("history:export"), data)


def in_parallel(user, requests):
    """Every request at once from its own thread (its own database connection)."""
    start, responses = threading.Barrier(len(requests)), [None] * len(requests)

    def run(index, data):
        client = client_for(user)
        start.wait()
        try:
            responses[index] = client.post(reverse("history:export"), data)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=item) for item in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return responses


def states(team):
    return list(Export.objects.filter(team=team).order_by("pk").values_list("state", flat=True))


def running(team):
    return Export.objects.filter(team=team, state=ExportState.RUNNING).count()


def test_the_limit_holds_with_concurrent_requests(sent, team, owner):
    responses = in_parallel(owner, DIFFERENT)

    assert all(r.status_code == 302 for r in responses)
    assert len(states(team)) == len(DIFFERENT)
    assert running(team) == LIMIT
    assert sorted(sent) == sorted(
        Export.objects.filter(team=team, state=ExportState.RUNNING).values_list("pk", flat=True)
    )
    # Each export that ends starts the next one waiting, never more than the limit.
    while pk := Export.objects.filter(team=team, state=ExportState.RUNNING).first():
        services.export_run(export_id=pk.pk)
        assert running(team) <= LIMIT
    assert states(team) == [ExportState.DONE] * len(DIFFERENT)
    assert len(sent) == len(set(sent)) == len(DIFFERENT)


def test_a_waiting_export_says_why_and_starts_when_a_slot_frees(sent, team, owner):
    for data in DIFFERENT[:LIMIT]:
        export_request(owner, data)
    client = client_for(owner)
    response = export_request(client, DIFFERENT[LIMIT])
    waiting = Export.objects.get(team=team, state=ExportState.WAITING)

    assert response.url.endswith(f"#export-{waiting.pk}")
    page = client.get(response.url)
    assert f"already has {LIMIT} exports running" in page.content.decode()
    assert "starts when one of the team" in page.content.decode()
    services.export_run(export_id=sent[0])
    waiting.refresh_from_db()
    assert waiting.state == ExportState.RUNNING and sent[-1] == waiting.pk


def test_an_identical_export_is_reused(sent, team, owner, teammate):
    first = export_request(owner, {"format": "csv", "query": "status=done&sort=oldest"})
    # The same filter written another way, asked by a teammate.
    client = client_for(teammate)
    again = export_request(
        client, {"format": "csv", "query": "sort=oldest&status=done&layout=table&q="}
    )

    export = Export.objects.get(team=team)
    assert first.url == again.url == reverse("history:exports") + f"#export-{export.pk}"
    page = client.get(again.url).content.decode()
    assert f"The same export (#{export.pk}) is already running" in page
    assert sent == [export.pk]


def test_identical_concurrent_requests_make_one_export(sent, team, owner):
    responses = in_parallel(owner, [{"format": "jsonl", "query": "has_error=no"}] * 5)

    export = Export.objects.get(team=team)
    assert {r.url for r in responses} == {reverse("history:exports") + f"#export-{export.pk}"}
    assert sent == [export.pk]


@pytest.mark.parametrize(
    "other",
    [
        {"format": "json", "query": "status=done"},  # another format
        {"format": "csv", "query": "has_error=no"},  # another filter
        {"format": "csv", "query": "status=done&sort=oldest"},  # another order
        {"format": "csv", "query": "status=done", "ids": "checked"},  # only checked rows
    ],
)
def test_a_different_export_is_not_reused(sent, team, owner, other):
    if other.get("ids"):
        done = RecordSummary.objects.filter(team=team, status=Status.DONE).first()
        other = {**other, "ids": [done.record_id]}
    export_request(owner, {"format": "csv", "query": "status=done"})
    export_request(owner, other)

    assert len(states(team)) == 2


def test_a_finished_export_is_not_reused(sent, team, owner):
    data = {"format": "csv", "query": "status=done"}
    export_request(owner, data)
    services.export_run(export_id=sent[0])
    export_request(owner, data)

    assert states(team) == [ExportState.DONE, ExportState.RUNNING]


def test_one_teams_limit_does_not_hold_back_another(sent, team, owner, outsider):
    for data in DIFFERENT:
        export_request(owner, data)
    demo_data_generate(team=outsider.memberships.get().team, records=5, chunk=5, seed=6)
    export_request(outsider, DIFFERENT[0])

    theirs = Export.objects.exclude(team=team).get()
    assert theirs.state == ExportState.RUNNING and sent[-1] == theirs.pk
    assert running(team) == LIMIT


def test_an_outsider_gets_404_on_another_teams_export(sent, team, owner, teammate, outsider):
    export_request(owner, DIFFERENT[0])
    export = Export.objects.get()
    services.export_run(export_id=export.pk)
    url = reverse("history:export_download", args=[export.pk])

    download = client_for(teammate).get(url)
    download.close()
    assert download.status_code == 200
    assert client_for(outsider).get(url).status_code == 404
    assert (
        f"export-{export.pk}"
        not in client_for(outsider).get(reverse("history:exports")).content.decode()
    )


def test_a_message_sent_twice_writes_the_export_once(sent, team, owner, monkeypatch):
    export_request(owner, DIFFERENT[0])
    writes = []
    write = services._write_export
    monkeypatch.setattr(
        services, "_write_export", lambda *a, **k: writes.append(1) or write(*a, **k)
    )
    services.export_run(export_id=sent[0])
    services.export_run(export_id=sent[0])

    assert len(writes) == 1 and states(team) == [ExportState.DONE]


def make_stale(export_id, **changes):
    old = timezone.now() - timedelta(hours=1)
    Export.objects.filter(pk=export_id).update(heartbeat_at=old, **changes)


def test_the_sweeper_resends_an_export_whose_message_or_worker_was_lost(sent, team, owner):
    export_request(owner, DIFFERENT[0])
    export_request(owner, DIFFERENT[1])
    lost, dead = sent[:2]
    make_stale(lost)  # its message never reached a worker
    make_stale(dead, run_token="a-dead-worker", attempts=1)  # its worker died writing
    sent.clear()

    assert services.exports_sweep()["resent"] == 2
    assert sorted(sent) == sorted([lost, dead])
    for export_id in (lost, dead):
        services.export_run(export_id=export_id)
    assert states(team) == [ExportState.DONE, ExportState.DONE]


def test_an_export_that_kills_its_workers_fails_and_frees_the_slot(sent, team, owner):
    for data in DIFFERENT[: LIMIT + 1]:
        export_request(owner, data)
    killer = sent[0]
    make_stale(killer, run_token="a-dead-worker", attempts=services.EXPORT_MAX_ATTEMPTS)

    services.exports_sweep()
    export = Export.objects.get(pk=killer)
    assert export.state == ExportState.FAILED
    assert "worker stopped" in export.error_message
    assert running(team) == LIMIT  # the waiting one took the freed slot


def test_a_worker_thought_dead_does_not_overwrite_the_new_ones_file(sent, team, owner, monkeypatch):
    export_request(owner, DIFFERENT[0])
    export_id = sent[0]

    def handed_out_meanwhile(*args, **kwargs):
        Export.objects.filter(pk=export_id).update(run_token="the-next-worker")
        return 0

    monkeypatch.setattr(services, "_write_export", handed_out_meanwhile)
    services.export_run(export_id=export_id)

    export = Export.objects.get(pk=export_id)
    assert export.state == ExportState.RUNNING and export.run_token == "the-next-worker"
    assert not export.file


def test_a_long_export_shows_it_is_alive_while_others_write(sent, team, owner, settings):
    """The export's rows are read through a cursor that stays open while it
    writes; signs of life written meanwhile must not fail it (on SQLite a write
    from the reading connection fails once another connection has written)."""
    settings.EXPORT_STALE_SECONDS = 0.4  # a sign of life every 0.1 s

    def slow_stream(qs, fmt):
        ids = qs.order_by("-created_at").values_list("pk", flat=True).iterator(chunk_size=5)
        while batch := list(islice(ids, 5)):
            in_another_connection(
                lambda: SyncMark.objects.filter(team=team).update(last_job_id=F("last_job_id") + 1)
            )
            time.sleep(0.2)
            yield "".join(f"{pk}\n" for pk in batch)

    export_request(owner, {"format": "csv", "query": ""})
    before = Export.objects.get().heartbeat_at
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setattr(exports, "export_stream", slow_stream)
        services.export_run(export_id=sent[0])

    export = Export.objects.get()
    assert export.state == ExportState.DONE, export.error_message
    assert export.heartbeat_at > before
    assert export.rows == RecordSummary.objects.filter(team=team).count()


def in_another_connection(write):
    def run():
        try:
            write()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=60)
