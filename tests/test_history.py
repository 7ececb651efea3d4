"""History: filters and exports checked against generated data, computed again
in plain Python from the rows themselves; another team's records never show."""

import csv
import io
import json

import pytest
from django.urls import reverse

from ximilar_portal.audit.models import AuditEvent
from ximilar_portal.history.demo import demo_data_generate
from ximilar_portal.history.models import Export, RecordSummary, SavedView
from ximilar_portal.history.services import summary_refresh
from ximilar_portal.records.models import Record
from ximilar_portal.submissions.models import (
    Collection,
    RecordJob,
    Result,
    SearchAnswer,
    Submission,
)

from .conftest import client_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def data(team, owner):
    demo_data_generate(team=team, records=300, chunk=100, seed=3)
    other = demo_data_generate(teams=1, records=120, seed=4)
    return {"other": other}


def history(client, **params):
    return client.get(reverse("history:list"), params)


def all_ids(client, **params):
    """Every record id of the view, walking the next-page links."""
    ids, after = [], ""
    while True:
        page = history(client, **params, **({"after": after} if after else {}))
        assert page.status_code == 200
        ids += [s.record_id for s in page.context["page"]["rows"]]
        after = page.context["page"]["next"]
        if not after:
            return ids


def expected(team, predicate, key=lambda s: (s.created_at, s.record_id), reverse_=True):
    rows = [s for s in RecordSummary.objects.filter(team=team) if predicate(s)]
    return [s.record_id for s in sorted(rows, key=key, reverse=reverse_)]


def labels_of(record_id):
    probs = {}
    for result in Result.objects.filter(record_id=record_id):
        for item in result.labels + result.tags:
            probs[item["name"]] = max(probs.get(item["name"], 0), item["prob"])
    return probs


def test_it_pages_through_exactly_the_teams_records_newest_first(data, team, owner):
    client = client_for(owner)
    ids = all_ids(client)
    assert ids == expected(team, lambda s: True)
    assert len(ids) == 300
    assert set(ids) == set(Record.objects.filter(team=team).values_list("pk", flat=True))


def test_it_combines_label_probability_status_and_price(data, team, owner):
    client = client_for(owner)
    params = {"label": "dress", "min_prob": "0.5", "status": "done", "price_min": "50"}
    ids = all_ids(client, **params)

    def wanted(s):
        prob = labels_of(s.record_id).get("dress")
        return prob is not None and prob >= 0.5 and s.status == "done" and (s.price or 0) >= 50

    assert ids == expected(team, wanted)
    assert ids, "the generated data has matching records"


def test_it_filters_tags_any_all_none_and_custom_fields(data, team, owner):
    client = client_for(owner)

    def tags(s):
        record = Record.objects.get(pk=s.record_id)
        result_tags = {t["name"] for r in record.results.all() for t in r.tags}
        return set(record.tags) | result_tags

    got = all_ids(client, tags_any="red, blue", tags_none="summer", field="brand=acme")
    want = expected(
        team,
        lambda s: (
            bool(tags(s) & {"red", "blue"})
            and "summer" not in tags(s)
            and s.record_fields["brand"] == "acme"
        ),
    )
    assert got == want and got
    got = all_ids(client, tags_all="red,cotton")
    assert got == expected(team, lambda s: {"red", "cotton"} <= tags(s))


def test_it_sorts_by_probability_across_pages(data, team, owner):
    ids = all_ids(client_for(owner), sort="prob_desc", has_error="no")
    want = expected(team, lambda s: not s.has_error, key=lambda s: (s.best_prob, s.record_id))
    assert ids == want


def test_it_goes_back_with_the_previous_link(data, owner):
    client = client_for(owner)
    first = history(client).context["page"]
    second = history(client, after=first["next"]).context["page"]
    back = history(client, before=second["previous"]).context["page"]
    assert [s.pk for s in back["rows"]] == [s.pk for s in first["rows"]]
    assert back["previous"] is None


def test_it_never_shows_or_exports_another_teams_records(data, team, owner, outsider):
    other_ids = set(Record.objects.exclude(team=team).values_list("pk", flat=True))
    assert other_ids
    client = client_for(owner)
    assert not set(all_ids(client)) & other_ids
    response = client.post(
        reverse("history:export"), {"format": "jsonl", "ids": sorted(other_ids)[:20]}
    )
    assert b"".join(response.streaming_content) == b""
    assert client.get(reverse("history:record", args=[min(other_ids)])).status_code == 404


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl"])
def test_it_exports_exactly_the_filtered_view(data, team, owner, fmt):
    client = client_for(owner)
    query = "status=done&category=fashion&sort=price_asc"
    ids = all_ids(client, status="done", category="fashion", sort="price_asc")
    response = client.post(reverse("history:export"), {"format": fmt, "query": query})
    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode()
    want = [Record.objects.get(pk=pk).ximilar_id for pk in ids]
    event = AuditEvent.objects.get(team=team, action="export.downloaded")
    assert event.details["format"] == fmt and event.actor == owner
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(body)))
        assert [row["_id"] for row in rows] == want
    else:
        items = (
            json.loads(body)["records"]
            if fmt == "json"
            else list(map(json.loads, body.splitlines()))
        )
        assert [item["_id"] for item in items] == want
        first = Record.objects.get(pk=ids[0])
        assert {k: v for k, v in items[0].items() if not k.startswith("_")} == {
            k: v for k, v in first.as_ximilar().items() if not k.startswith("_")
        }
        assert [r["service"] for r in items[0]["_results"]]


def test_it_exports_only_the_checked_rows(data, owner):
    client = client_for(owner)
    rows = history(client).context["page"]["rows"][:3]
    response = client.post(
        reverse("history:export"), {"format": "csv", "ids": [s.record_id for s in rows]}
    )
    lines = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [line["_id"] for line in lines] == [s.ximilar_id for s in rows]


def test_it_moves_large_exports_to_the_background(data, owner, settings, monkeypatch):
    from ximilar_portal.history import views

    monkeypatch.setattr(views, "INLINE_EXPORT_ROWS", 10)
    monkeypatch.setattr("ximilar_portal.history.services._export_enqueue", lambda pk: None)
    client = client_for(owner)
    response = client.post(reverse("history:export"), {"format": "csv", "query": "status=failed"})
    assert response.url == reverse("history:exports") + f"#export-{Export.objects.get().pk}"
    export = Export.objects.get()
    from ximilar_portal.history.services import export_run

    export_run(export_id=export.pk)
    export.refresh_from_db()
    assert export.state == "done"
    download = client.get(reverse("history:export_download", args=[export.pk]))
    lines = b"".join(download.streaming_content).decode().splitlines()
    assert len(lines) - 1 == export.rows == len(all_ids(client, status="failed"))


def test_it_refuses_bad_filters_with_a_clear_error(data, owner):
    response = history(client_for(owner), min_prob="2", field="nonsense")
    assert response.context["qs"] is None
    assert b"Write the custom field as name=value" in response.content
    assert b"less than or equal to 1" in response.content


def test_it_shows_records_added_without_a_refresh_call(team, owner):
    record = Record.objects.bulk_create([Record(team=team, ximilar_id="bulk-1")])[0]
    page = history(client_for(owner))
    assert [s.record_id for s in page.context["page"]["rows"]] == [record.pk]


def test_it_forgets_the_summary_of_a_deleted_record(data, team):
    record = Record.objects.filter(team=team).first()
    record.delete()
    summary_refresh(record_ids=[record.pk])
    assert not RecordSummary.objects.filter(pk=record.pk).exists()


def test_it_saves_personal_and_shared_views(data, team, owner, teammate):
    client = client_for(owner)
    client.post(reverse("history:view_create"), {"name": "Mine", "query": "status=done"})
    client.post(reverse("history:view_create"), {"name": "Ours", "query": "q=red", "shared": "on"})
    seen = history(client_for(teammate)).context["saved_views"]
    assert [v.name for v in seen] == ["Ours"]
    shared = SavedView.objects.get(name="Ours")
    assert (
        client_for(teammate).post(reverse("history:view_delete", args=[shared.pk])).status_code
        == 403
    )
    mine = SavedView.objects.get(name="Mine")
    assert (
        client_for(teammate).post(reverse("history:view_delete", args=[mine.pk])).status_code == 404
    )
    client.post(reverse("history:view_delete", args=[mine.pk]))
    assert list(SavedView.objects.values_list("name", flat=True)) == ["Ours"]


def test_it_draws_insights_and_the_record_history(data, team, owner):
    client = client_for(owner)
    insights = client.get(reverse("history:insights"), {"status": "done"}).context["insights"]
    assert insights["labels"] and insights["tags"] and insights["palette"]
    done = RecordSummary.objects.filter(team=team, status="done", best_label="dress")
    assert insights["labels"][0]["count"] >= 1
    assert (
        sum(b["count"] for b in insights["labels"])
        <= RecordSummary.objects.filter(team=team, status="done").count()
    )
    record = done.first()
    page = client.get(reverse("history:record", args=[record.pk]))
    assert page.status_code == 200
    assert b"dress" in page.content and b"Raw JSON" in page.content
    assert client.get(reverse("history:submissions")).status_code == 200


# --- Search answers ----------------------------------------------------------------------


def _search(team, query, answers, collection=None):
    """A visual search of `query` answered by `answers` [(answer _id, fields, record)]."""
    submission = Submission.objects.create(
        team=team, service="similarity_search", collection=collection
    )
    job = RecordJob.objects.create(submission=submission, record=query, team=team, state="done")
    result = Result.objects.create(
        job=job, record=query, team=team, service="similarity_search", raw={}
    )
    for rank, (answer_id, fields, record) in enumerate(answers, start=1):
        SearchAnswer.objects.create(
            team=team,
            result=result,
            query_record=query,
            rank=rank,
            answer_id=answer_id,
            distance=rank / 10,
            fields={"_id": answer_id, **fields},
            record=record,
        )
    return result


@pytest.fixture
def searched(team, outsider):
    other_team = outsider.memberships.get().team
    query, mine = (
        Record.objects.create(team=team, ximilar_id=name, image_url=f"https://x.test/{name}.jpg")
        for name in ("query-1", "mine-2")
    )
    theirs = Record.objects.create(team=other_team, ximilar_id="theirs-1")
    collection = Collection.objects.create(team=team, name="shop", collection_id="c-9")
    _search(
        team,
        query,
        [
            ("mine-2", {"product_id": "SKU-2"}, mine),
            ("far-away", {"_url": "https://cdn.test/far.jpg", "category": "shoes"}, None),
            ("no-url", {}, None),
        ],
        collection=collection,
    )
    # Another team's search of its own record, and one naming our query's id.
    _search(other_team, theirs, [("query-1", {"secret": "leak"}, None)])
    summary_refresh(record_ids=[query.pk, mine.pk, theirs.pk])
    return {"query": query, "mine": mine, "theirs": theirs, "collection": collection}


def test_it_shows_the_ranked_search_answers_of_a_record(searched, owner):
    query, mine = searched["query"], searched["mine"]
    page = client_for(owner).get(reverse("history:record", args=[query.pk]))
    assert page.status_code == 200
    (search,) = page.context["searches"]
    assert search["collection"] == "shop"
    answers = search["answers"]
    assert [(a["rank"], a["answer_id"], a["distance"]) for a in answers] == [
        (1, "mine-2", 0.1),
        (2, "far-away", 0.2),
        (3, "no-url", 0.3),
    ]
    assert [a["record_id"] for a in answers] == [mine.pk, None, None]
    assert answers[0]["fields"] == {"product_id": "SKU-2"}
    html = page.content.decode()
    assert f'href="{reverse("history:record", args=[mine.pk])}"' in html
    assert 'src="https://cdn.test/far.jpg"' in html
    assert "not one of the team's records" in html
    again = (
        f"{reverse('submissions:new')}?record={mine.pk}&amp;service=similarity_search"
        f"&amp;collection={searched['collection'].pk}"
    )
    assert again in html and "Search again from this answer" in html
    more = f"{reverse('submissions:new')}?record={query.pk}&amp;service=similarity_search"
    assert f'href="{more}"' in html and "SKU-2" in html and "leak" not in html


def test_it_preselects_the_record_and_visual_search_on_the_submit_page(searched, owner):
    url = searched["query"].pk
    page = client_for(owner).get(
        reverse("submissions:new"), {"record": url, "service": "similarity_search"}
    )
    assert page.status_code == 200
    assert page.context["count"] == 1
    assert page.context["form"]["service"].value() == "similarity_search"


def test_search_again_preselects_the_collection_it_searched(searched, owner, outsider):
    collection = searched["collection"]
    client = client_for(owner)
    params = {"record": searched["mine"].pk, "service": "similarity_search"}
    page = client.get(reverse("submissions:new"), {**params, "collection": collection.pk})
    assert page.context["form"]["collection"].value() == collection.pk
    assert f'<option value="{collection.pk}" selected>' in page.content.decode()
    theirs = Collection.objects.create(team=outsider.memberships.get().team, name="x")
    page = client.get(reverse("submissions:new"), {**params, "collection": theirs.pk})
    assert page.context["form"]["collection"].value() is None


def test_it_hides_search_links_from_viewers(searched, viewer):
    html = client_for(viewer).get(reverse("history:record", args=[searched["query"].pk]))
    assert "mine-2" in html.content.decode()
    assert reverse("submissions:new") not in html.content.decode()


def test_it_never_shows_another_teams_search_answers(searched, owner, outsider):
    theirs = searched["theirs"]
    assert client_for(owner).get(reverse("history:record", args=[theirs.pk])).status_code == 404
    mine = client_for(owner).get(reverse("history:record", args=[searched["mine"].pk]))
    assert mine.context["searches"] == []
    page = client_for(outsider).get(reverse("history:record", args=[theirs.pk]))
    (search,) = page.context["searches"]
    assert [a["answer_id"] for a in search["answers"]] == ["query-1"]
    # The other team's answer named our record's _id: it must not link to it.
    assert search["answers"][0]["record_id"] is None


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_it_exports_the_search_answers_with_the_records(searched, owner, fmt):
    response = client_for(owner).post(reverse("history:export"), {"format": fmt, "query": ""})
    body = b"".join(response.streaming_content).decode()
    items = (
        json.loads(body)["records"] if fmt == "json" else list(map(json.loads, body.splitlines()))
    )
    by_id = {item["_id"]: item for item in items}
    assert set(by_id) == {"query-1", "mine-2"}
    answers = by_id["query-1"]["_search_answers"]
    assert [(a["rank"], a["_id"], a["distance"], a["record"]) for a in answers] == [
        (1, "mine-2", 0.1, searched["mine"].pk),
        (2, "far-away", 0.2, None),
        (3, "no-url", 0.3, None),
    ]
    assert answers[1]["fields"] == {
        "_id": "far-away",
        "_url": "https://cdn.test/far.jpg",
        "category": "shoes",
    }
    assert by_id["mine-2"]["_search_answers"] == []
    assert "leak" not in body


def test_it_counts_a_long_view_only_when_asked(data, team, owner):
    client = client_for(owner)
    assert history(client, status="done").context["count"] is None
    counted = history(client, status="done", count="1")
    done = RecordSummary.objects.filter(team=team, status="done").count()
    assert counted.context["count"] == (done, False)
    assert "count=1" not in counted.context["query"]
    one = history(client, product_id=RecordSummary.objects.filter(team=team).first().product_id)
    assert one.context["count"][0] == len(one.context["page"]["rows"]) >= 1


def test_each_card_shows_its_summary(data, team, owner):
    page = history(client_for(owner), status="done", sort="prob_desc")
    html = page.content.decode()
    best = page.context["page"]["rows"][0]
    card = html[html.index(f'data-record="{best.record_id}"') :]
    card = card[: card.index("</li>")]
    assert f'href="/history/records/{best.record_id}/"' in card
    assert f"<strong>{best.best_label}</strong>" in card
    assert f'<span class="muted">{best.best_prob:.2f}</span>' in card
    for tag in best.top_tags[:3]:
        assert f'<span class="chip">{tag["name"]}</span>' in card
    assert '<span class="badge state-done">Done</span>' in card
    for service in best.service_list:
        assert f'<span class="badge h-service">{service}</span>' in card
    unsent = history(client_for(owner), status="none").content.decode()
    assert '<span class="badge">Not sent</span>' in unsent


def test_the_periodic_sync_catches_every_job_moved_without_a_refresh(data, team, monkeypatch):
    from ximilar_portal.history import services
    from ximilar_portal.history.tasks import sync

    monkeypatch.setattr(services, "CHUNK", 4)  # several chunks of pending records
    pending = RecordSummary.objects.filter(team=team, status__in=["waiting", "blocked"])
    ids = list(pending.values_list("record_id", flat=True))
    assert len(ids) > 8
    RecordJob.objects.filter(record_id__in=ids).update(state="failed", error_message="gone")
    services.summary_sync(team=team)  # a visit: only what is newer than the mark
    assert pending.count() == len(ids)
    sync()  # what celery beat runs every HISTORY_SYNC_SECONDS
    assert not pending.exists()
    assert set(
        RecordSummary.objects.filter(record_id__in=ids).values_list("status", flat=True)
    ) == {"failed"}
