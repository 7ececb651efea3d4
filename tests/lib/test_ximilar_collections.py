"""Visual-search collections over real HTTP against a scripted local server."""

import pytest

from tests.lib.fake_ximilar import Reply
from ximilar_portal.lib.ximilar import COLLECTION_TYPES, Answer, PermanentError, write_results

RECORD = {"_id": "1", "_url": "https://example.com/a.jpg"}


def records(count):
    return [{"_id": str(i), "_url": f"https://example.com/{i}.jpg"} for i in range(count)]


def test_every_call_carries_the_collection_id(fake, client):
    fake.default = lambda request: Reply(200, {"status": {"code": 200, "text": "OK"}})
    collection = client.collection("col-7", collection_type="photos")
    collection.insert([RECORD])
    collection.get(["1"])
    collection.update([{"_id": "1", "price": 2}])
    collection.delete(["1"])
    collection.knn({"_id": "1"})
    collection.rank_records({"_id": "1"}, [RECORD])
    list(collection.all_records())
    assert len(fake.requests) == 7
    for seen in fake.requests:
        assert seen.headers["collection-id"] == "col-7"
        assert seen.path.startswith("/similarity/photos/v2/")
        assert seen.method == "POST"


@pytest.mark.parametrize("kind, path", list(COLLECTION_TYPES.items()))
def test_each_collection_type_has_its_path(fake, client, kind, path):
    fake.reply(200, {"answer_records": []})
    client.collection("c", collection_type=kind).knn({"_id": "1"})
    assert fake.requests[0].path == "/" + path + "visualKNN"


def test_an_unknown_collection_type_is_refused(client):
    with pytest.raises(ValueError):
        client.collection("c", collection_type="music")


def test_insert_reports_inserted_and_skipped(fake, client):
    skipped = [{"_id": "2", "_reason": {"status": {"code": 411, "text": "record duplicate"}}}]
    fake.reply(200, {"status": {"code": 211, "text": "some inserted"}, "skipped_records": skipped})
    response = client.collection("c").insert(records(3))
    seen = fake.requests[0]
    assert seen.path == "/similarity/products-new/v2/insert"
    assert seen.body == {"records": records(3), "fields_to_return": ["_id"]}
    assert response.status_code == 211
    assert response.skipped == skipped


@pytest.mark.parametrize("http_status", [200, 400, 411])
def test_inserting_only_duplicates_is_an_answer_not_an_error(fake, client, http_status):
    skipped = [{"_id": "1", "_reason": {"status": {"code": 411}}}]
    fake.reply(http_status, {"status": {"code": 411, "text": "dup"}, "skipped_records": skipped})
    response = client.collection("c").insert([RECORD])
    assert response.status_code == 411
    assert response.skipped == skipped


@pytest.mark.parametrize("http_status", [200, 412])
def test_hard_capacity_exceeded_is_permanent(fake, client, http_status):
    fake.reply(http_status, {"status": {"code": 412, "text": "hard capacity exceeded"}})
    with pytest.raises(PermanentError) as caught:
        client.collection("c").insert([RECORD])
    assert caught.value.code == 412
    assert "hard capacity exceeded" in caught.value.message


def test_insert_splits_and_merges(fake, client):
    def reply(request):
        ids = [r["_id"] for r in request.body["records"]]
        duplicate = [{"_id": i} for i in ids if i == "12"]
        code = 211 if duplicate else 210
        return Reply(200, {"status": {"code": code}, "skipped_records": duplicate})

    fake.default = reply
    response = client.collection("c").insert(records(23))
    assert [len(r.body["records"]) for r in fake.requests] == [10, 10, 3]
    assert response.status_code == 211
    assert response.skipped == [{"_id": "12"}]


def test_get_returns_the_found_records(fake, client):
    found = [{"_id": "1", "price": 3}]
    fake.reply(200, {"status": {"code": 206, "text": "some not found"}, "answer_records": found})
    response = client.collection("c").get(["1", 2])
    assert fake.requests[0].body == {
        "records": [{"_id": "1"}, {"_id": "2"}],
        "fields_to_return": ["*"],
    }
    assert response.status_code == 206
    assert response.answers == [Answer(1, {"_id": "1", "price": 3}, None)]


@pytest.mark.parametrize("http_status", [200, 404])
def test_get_finding_nothing_is_not_an_error(fake, client, http_status):
    fake.reply(http_status, {"status": {"code": 404, "text": "no records found"}})
    response = client.collection("c").get(["x"])
    assert response.status_code == 404
    assert response.answers == []


def test_a_404_that_is_not_ximilars_answer_is_permanent(fake, client):
    fake.reply(404, {"detail": "Not found."})
    with pytest.raises(PermanentError):
        client.collection("c").get(["x"])


def test_404_is_only_an_answer_for_get(fake, client):
    fake.reply(200, {"status": {"code": 404, "text": "collection not found"}})
    with pytest.raises(PermanentError):
        client.collection("c").knn({"_id": "1"})


def test_update_and_delete(fake, client):
    fake.reply(200, {"status": {"code": 200, "text": "OK"}})
    fake.reply(200, {"status": {"code": 220, "text": "records deleted"}})
    collection = client.collection("c")
    collection.update([{"_id": "1", "price": 4}])
    response = collection.delete(["1", "2"])
    update, delete = fake.requests
    assert update.path.endswith("/update")
    assert update.body == {"records": [{"_id": "1", "price": 4}], "fields_to_return": ["_id"]}
    assert delete.path.endswith("/delete")
    assert delete.body == {"records": [{"_id": "1"}, {"_id": "2"}]}
    assert response.status_code == 220


def test_knn_returns_ranked_answers_with_distances(fake, client):
    fake.reply(
        200,
        {
            "status": {"code": 200, "text": "OK"},
            "statistics": {"OperationTime": 1},
            "answer_records": [{"_id": "a"}, {"_id": "b"}, {"_id": "c"}],
            "answer_distances": [40.0, 50.0],
            "answer_count": 3,
        },
    )
    response = client.collection("c").knn(
        {"_url": "https://example.com/q.jpg"}, k=3, fields_to_return=("_id", "_url")
    )
    assert fake.requests[0].body == {
        "query_record": {"_url": "https://example.com/q.jpg"},
        "k": 3,
        "fields_to_return": ["_id", "_url"],
    }
    assert response.answers == [
        Answer(1, {"_id": "a"}, 40.0),
        Answer(2, {"_id": "b"}, 50.0),
        Answer(3, {"_id": "c"}, None),
    ]
    assert response.answer_count == 3


def test_knn_with_filter_and_tags(fake, client):
    fake.reply(200, {"answer_records": ["bare-id"]})
    response = client.collection("c", collection_type="fashion").knn(
        {"_id": "1"}, filter={"brand": "x"}, tags=True
    )
    seen = fake.requests[0]
    assert seen.path == "/similarity/fashion-new/v2/visualTagsKNN"
    assert seen.body["filter"] == {"brand": "x"}
    assert response.answers == [Answer(1, {"_id": "bare-id"}, None)]
    assert response.answer_count is None


def test_rank_records_sends_all_records_in_one_request(fake, client):
    fake.reply(200, {"answer_records": [{"_id": "3"}], "answer_distances": [1.5]})
    response = client.collection("c").rank_records({"_id": "q"}, records(12), k=1, radius=2.0)
    seen = fake.requests[0]
    assert seen.path.endswith("/visualRankRecords")
    assert len(seen.body["records"]) == 12
    assert (seen.body["k"], seen.body["radius"]) == (1, 2.0)
    assert response.answers == [Answer(1, {"_id": "3"}, 1.5)]


def test_a_query_record_needs_an_image_or_id(fake, client):
    with pytest.raises(ValueError):
        client.collection("c").knn({"price": 1})
    assert fake.requests == []


def test_all_records_follows_pages_until_no_next(fake, client):
    fake.reply(200, {"answer_records": [{"_id": "1"}, {"_id": "2"}], "next": "page2"})
    # A `next` URL on another host is never followed: only the page number moves.
    fake.reply(200, {"answer_records": [{"_id": "3"}], "next": "https://evil.example/steal"})
    fake.reply(200, {"answer_records": [{"_id": "4"}], "next": None})
    ids = [r["_id"] for r in client.collection("c").all_records(page_size=2)]
    assert ids == ["1", "2", "3", "4"]
    assert [r.query for r in fake.requests] == [
        {"size": ["2"], "page": [str(page)]} for page in (1, 2, 3)
    ]
    assert all(r.path.endswith("/allRecords") for r in fake.requests)
    assert fake.requests[0].body == {"fields_to_return": ["_id"]}


def test_all_records_stops_on_an_empty_page(fake, client):
    fake.reply(200, {"answer_records": [{"_id": "1"}], "next": "more"})
    fake.reply(200, {"answer_records": [], "next": "more"})
    assert list(client.collection("c").all_records()) == [{"_id": "1"}]
    assert len(fake.requests) == 2


def test_search_replies_carry_the_sandbox_marker(fake, client):
    fake.reply(200, {"answer_records": [], "_sandbox": {"note": "local"}})
    assert client.collection("c").knn({"_id": "1"}).sandbox is True


def test_each_inserted_records_own_status_is_read(fake, client):
    """Records the reply marks with a failing `_status`, or skips with a
    `_reason`, fail; records it does not name, or marks 2xx, went in."""
    sent = records(5)
    refused = {"_id": "1", "_status": {"code": 400, "text": "cannot decode image"}}
    duplicate = {"_id": "3", "_reason": {"status": {"code": 411, "text": "record duplicate"}}}
    body = {
        "status": {"code": 211, "text": "some records inserted"},
        "records": [{"_id": "0", "_status": {"code": 200, "text": "OK"}}, refused, {"_id": "4"}],
        "skipped_records": [duplicate],
    }
    fake.reply(200, body)
    response = client.collection("c1").insert(sent)

    results = write_results(sent, response)

    assert [(r.index, r.ok, r.code) for r in results] == [
        (0, True, 200),
        (1, False, 400),
        (2, True, None),
        (3, False, 411),
        (4, True, None),
    ]
    assert results[1].text == "cannot decode image"
    assert results[3].raw == duplicate
