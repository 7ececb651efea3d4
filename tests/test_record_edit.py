"""Editing one record, bulk edits and deletes on a selection: team-scoped, so
another team's member can never touch them."""

import pytest

from ximilar_portal.records.forms import format_custom_fields, parse_custom_fields
from ximilar_portal.records.models import Record
from ximilar_portal.submissions.models import RecordJob, Submission

from .conftest import client_for

pytestmark = pytest.mark.django_db


def make(team, ximilar_id, **fields):
    return Record.objects.create(
        team=team, ximilar_id=ximilar_id, image_url=f"https://e.com/{ximilar_id}.jpg", **fields
    )


def test_it_edits_fields_and_typed_custom_fields(owner, team):
    record = make(team, "a", tags=["x"], fields={"code": "00123", "n": 1})
    client = client_for(owner)
    form = client.get(f"/records/{record.pk}/edit/").content.decode()
    assert "&quot;00123&quot;" in form  # a number-like text keeps its quotes
    response = client.post(
        f"/records/{record.pk}/edit/",
        {
            "ximilar_id": "a2",
            "category": "shoes",
            "price": "9.90",
            "tags": "x, y",
            "custom_fields": 'code: "00123"\nn: 2\nok: false\nsizes: ["S"]\nnote: hi',
        },
    )
    assert response.status_code == 302
    record.refresh_from_db()
    assert record.as_ximilar() == {
        "_id": "a2",
        "_url": "https://e.com/a.jpg",
        "category": "shoes",
        "price": 9.9,
        "tags": ["x", "y"],
        "code": "00123",
        "n": 2,
        "ok": False,
        "sizes": ["S"],
        "note": "hi",
    }


@pytest.mark.parametrize(
    "fields",
    [
        {
            "a": "00123",
            "b": "true",
            "c": "[1]",
            "d": 'say "hi"',
            "e": 1.5,
            "f": [1, "x", True],
            "g": "",
        }
    ],
)
def test_custom_field_text_round_trips_exactly(fields):
    assert parse_custom_fields(format_custom_fields(fields)) == fields


def test_editing_to_a_taken_id_says_so(owner, team):
    make(team, "a")
    record = make(team, "b")
    response = client_for(owner).post(f"/records/{record.pk}/edit/", {"ximilar_id": "a"})
    assert "already has a record with _id" in response.content.decode()
    record.refresh_from_db()
    assert record.ximilar_id == "b"


def test_bulk_edit_sets_category_and_adds_and_removes_tags(owner, team, outsider):
    mine = [make(team, "a", tags=["old", "keep"]), make(team, "b", tags=["keep"])]
    theirs = make(outsider.memberships.get().team, "c", tags=["old"], category="theirs")
    response = client_for(owner).post(
        "/records/bulk/",
        {
            "action": "edit",
            "record": [r.pk for r in mine] + [theirs.pk],
            "set_category": "on",
            "category": "new",
            "add_tags": "fresh; keep",
            "remove_tags": "old",
        },
    )
    assert response.status_code == 302
    for record in mine:
        record.refresh_from_db()
        assert record.category == "new"
        assert record.tags == ["keep", "fresh"]
    theirs.refresh_from_db()
    assert (theirs.category, theirs.tags) == ("theirs", ["old"])


def test_delete_asks_first_then_removes_records_with_their_jobs(owner, team):
    record = make(team, "a")
    submission = Submission.objects.create(team=team, created_by=owner, service="generic_tags")
    RecordJob.objects.create(submission=submission, record=record, team=team)
    client = client_for(owner)
    confirm = client.post("/records/bulk/", {"action": "delete", "record": [record.pk]})
    assert "cannot be undone" in confirm.content.decode()
    assert Record.objects.exists()
    client.post("/records/bulk/", {"action": "delete", "record": [record.pk], "confirm": "on"})
    assert not Record.objects.exists() and not RecordJob.objects.exists()


def test_single_delete_needs_a_post_and_outsiders_get_404(owner, team, outsider):
    record = make(team, "a")
    assert client_for(owner).get(f"/records/{record.pk}/delete/").status_code == 200
    assert client_for(outsider).post(f"/records/{record.pk}/delete/").status_code == 404
    client_for(outsider).post(
        "/records/bulk/", {"action": "delete", "record": [record.pk], "confirm": "on"}
    )
    assert Record.objects.exists()
    client_for(owner).post(f"/records/{record.pk}/delete/")
    assert not Record.objects.exists()


def test_send_selected_goes_to_the_submission_page_with_the_teams_records_only(
    owner, team, outsider
):
    mine = [make(team, "a"), make(team, "b")]
    theirs = make(outsider.memberships.get().team, "c")
    response = client_for(owner).post(
        "/records/bulk/", {"action": "send", "record": [r.pk for r in mine] + [theirs.pk]}
    )
    assert response.status_code == 302
    if "submissions" in response.url:
        assert f"record={theirs.pk}" not in response.url
        assert all(f"record={r.pk}" in response.url for r in mine)


def test_the_list_has_checkboxes_for_writers_only(owner, team, viewer):
    record = make(team, "a")
    assert f'name="record" value="{record.pk}"' in client_for(owner).get("/").content.decode()
    assert 'name="record"' not in client_for(viewer).get("/").content.decode()
