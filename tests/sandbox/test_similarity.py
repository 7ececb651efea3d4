"""Similarity collections over HTTP, and the filter language on its own."""

import io

import pytest
from PIL import Image

from ximilar_portal.sandbox.filters import FilterError, matches

from .conftest import OTHER_TOKEN, RED, Api, b64, scene, solid

BASE = "similarity/photos/v2/"


@pytest.fixture
def collection(api):
    """Calls on collection "c1", with the collection-id header set."""
    api.session.headers["collection-id"] = "c1"
    return api


def insert(api, records, base=BASE):
    response = api.post(base + "insert", {"records": records})
    assert response.status_code == 200, response.text
    return response.json()


def scene_record(seed, **fields):
    return {"_id": f"s{seed}", "_base64": b64(scene(seed)), **fields}


def test_it_needs_a_collection_id(api):
    response = api.post(BASE + "insert", {"records": [scene_record(1)]})
    assert response.status_code == 400
    assert "collection-id" in response.json()["status"]["text"]


def test_it_inserts_records(collection):
    body = insert(collection, [scene_record(1), scene_record(2, price=10)])
    assert body["status"]["code"] == 210
    assert body["status"]["text"] == "records inserted"
    assert [r["_id"] for r in body["records"]] == ["s1", "s2"]
    assert "skipped_records" not in body


def test_a_duplicate_is_skipped(collection):
    insert(collection, [scene_record(1)])
    body = insert(collection, [scene_record(1), scene_record(2)])
    assert body["status"]["code"] == 211
    (skipped,) = body["skipped_records"]
    assert skipped["_id"] == "s1"
    assert skipped["_reason"] == {"status": {"code": 411, "text": "record duplicate"}}


def test_only_duplicates_are_refused_with_411(collection):
    insert(collection, [scene_record(1)])
    body = insert(collection, [scene_record(1)])
    assert body["status"]["code"] == 411


def test_a_full_collection_refuses_with_412(collection):
    insert(collection, [scene_record(seed) for seed in range(5)])  # the fixture's capacity
    body = insert(collection, [scene_record(9)])
    assert body["status"]["code"] == 412
    assert body["skipped_records"][0]["_reason"]["status"]["code"] == 412


def test_insert_needs_an_id_and_an_image(collection):
    body = insert(collection, [{"_base64": b64(scene(1))}, {"_id": "x", "_base64": "bm9wZQ=="}])
    assert body["status"]["code"] == 400
    reasons = [r["_reason"]["status"]["text"] for r in body["skipped_records"]]
    assert "no _id" in reasons[0] and "could not decode" in reasons[1]


def test_collections_are_kept_apart(server, collection):
    insert(collection, [scene_record(1)])
    other_collection = collection.post(
        BASE + "get", {"records": [{"_id": "s1"}]}, headers={"collection-id": "c2"}
    )
    assert other_collection.json()["status"]["code"] == 404
    other_token = Api(server, token=OTHER_TOKEN)
    other_token.session.headers["collection-id"] = "c1"
    assert (
        other_token.post(BASE + "get", {"records": [{"_id": "s1"}]}).json()["status"]["code"] == 404
    )


def test_get_finds_some_or_all_records(collection):
    insert(collection, [scene_record(1, price=5), scene_record(2)])
    found = collection.post(
        BASE + "get", {"records": [{"_id": "s1"}], "fields_to_return": ["price"]}
    )
    assert found.json()["status"]["code"] == 205
    assert found.json()["answer_records"] == [{"_id": "s1", "price": 5}]
    some = collection.post(BASE + "get", {"records": [{"_id": "s1"}, {"_id": "nope"}]})
    assert some.json()["status"]["code"] == 206
    none = collection.post(BASE + "get", {"records": [{"_id": "nope"}]})
    assert none.json()["status"]["code"] == 404


def test_update_changes_metadata_only(collection):
    insert(collection, [scene_record(1, price=5)])
    before = knn(collection, {"_base64": b64(scene(1))})
    changed = collection.post(
        BASE + "update", {"records": [{"_id": "s1", "price": 7, "_base64": b64(solid(RED))}]}
    )
    assert changed.json()["records"][0]["price"] == 7
    after = knn(collection, {"_base64": b64(scene(1))}, fields_to_return=["price"])
    assert after["answer_records"][0] == {"_id": "s1", "price": 7}
    assert after["answer_distances"] == before["answer_distances"], "descriptor unchanged"


def test_delete_removes_records(collection):
    insert(collection, [scene_record(1), scene_record(2)])
    body = collection.post(BASE + "delete", {"records": [{"_id": "s1"}]}).json()
    assert body["status"]["code"] == 220
    assert (
        collection.post(BASE + "get", {"records": [{"_id": "s1"}]}).json()["status"]["code"] == 404
    )


def knn(api, query, **options):
    response = api.post(BASE + "visualKNN", {"query_record": query, **options})
    assert response.status_code == 200, response.text
    return response.json()


def jpeg_copy(image, size):
    out = io.BytesIO()
    image.resize(size).save(out, "JPEG", quality=70)
    return Image.open(io.BytesIO(out.getvalue()))


def test_a_near_copy_is_closer_than_an_unrelated_image(collection):
    insert(collection, [scene_record(seed) for seed in (1, 2, 3, 4)])
    copy = jpeg_copy(scene(2), (200, 150))
    body = knn(collection, {"_base64": b64(copy)}, k=4)
    assert body["answer_records"][0] == {"_id": "s2"}
    nearest, *others = body["answer_distances"]
    assert body["answer_distances"] == sorted(body["answer_distances"])
    assert nearest < 25 < min(others), body["answer_distances"]
    assert body["answer_count"] == 4
    assert body["status"]["code"] == 200


def test_knn_by_a_stored_id_and_fields(collection):
    insert(collection, [scene_record(1, price=1), scene_record(2, price=2)])
    body = knn(collection, {"_id": "s1"}, k=1, fields_to_return=["*"])
    assert body["answer_distances"] == [0.0]
    assert body["answer_records"][0]["price"] == 1 and body["answer_records"][0]["_id"] == "s1"
    assert "_base64" not in body["answer_records"][0]


def test_knn_with_an_unknown_id_is_a_bad_request(collection):
    response = collection.post(BASE + "visualKNN", {"query_record": {"_id": "nope"}})
    assert response.status_code == 400


def test_knn_filters_on_metadata(collection):
    insert(collection, [
        scene_record(1, category="shoe", price=10, tags=["red", "sale"]),
        scene_record(2, category="shoe", price=30, tags=["blue"]),
        scene_record(3, category="bag", price=20),
    ])  # fmt: skip

    def ids(query_filter):
        body = knn(collection, {"_base64": b64(scene(1))}, k=10, filter=query_filter)
        return sorted(r["_id"] for r in body["answer_records"])

    assert ids({"category": "shoe"}) == ["s1", "s2"]
    assert ids({"category": {"$in": ["bag", "hat"]}}) == ["s3"]
    assert ids({"price": {"$gte": 20}}) == ["s2", "s3"]
    assert ids({"price": {"$gt": 10, "$lt": 30}}) == ["s3"]
    assert ids({"tags": "sale"}) == ["s1"]
    assert ids({"tags": {"$nin": ["red"]}}) == ["s2", "s3"]
    assert ids({"category": {"$ne": "shoe"}, "price": {"$lte": 20}}) == ["s3"]
    response = collection.post(
        BASE + "visualKNN", {"query_record": {"_id": "s1"}, "filter": {"price": {"$near": 1}}}
    )
    assert response.status_code == 400


def test_rank_records_orders_given_records(collection):
    query = {"_base64": b64(scene(1))}
    records = [
        {"_id": "other", "_base64": b64(scene(5))},
        {"_id": "copy", "_base64": b64(jpeg_copy(scene(1), (160, 120)))},
    ]
    body = collection.post(
        BASE + "visualRankRecords", {"query_record": query, "records": records}
    ).json()
    assert [r["_id"] for r in body["answer_records"]] == ["copy", "other"]
    near = collection.post(
        BASE + "visualRankRecords", {"query_record": query, "records": records, "radius": 25}
    ).json()
    assert [r["_id"] for r in near["answer_records"]] == ["copy"]


def test_all_records_pages_through_the_collection(collection):
    insert(collection, [scene_record(seed) for seed in range(5)])
    first = collection.post(BASE + "allRecords?size=2&page=1").json()
    assert [r["_id"] for r in first["answer_records"]] == ["s0", "s1"]
    assert first["answer_count"] == 5
    assert first["next"].endswith(BASE + "allRecords?size=2&page=2")
    last = collection.post(BASE + "allRecords?size=2&page=3").json()
    assert [r["_id"] for r in last["answer_records"]] == ["s4"]
    assert "next" not in last
    everything = collection.post(BASE + "allRecords").json()
    assert len(everything["answer_records"]) == 5


def test_random_returns_distinct_records(collection):
    insert(collection, [scene_record(seed, even=seed % 2 == 0) for seed in range(5)])
    body = collection.post(BASE + "random", {"count": 3}).json()
    ids = [r["_id"] for r in body["answer_records"]]
    assert len(ids) == len(set(ids)) == 3
    even = collection.post(BASE + "random", {"count": 10, "filter": {"even": True}}).json()
    assert sorted(r["_id"] for r in even["answer_records"]) == ["s0", "s2", "s4"]


@pytest.mark.parametrize(
    "base",
    [
        "similarity/products-new/v2/", "similarity/products/v2/", "similarity/fashion-new/v2/",
        "similarity/fashion/v2/", "similarity/custom/v2/", "similarity/colors/v2/",
        "similarity/homedecor/v2/", "image_matching/v2/", "photo/search/v2/",
    ],
)  # fmt: skip
def test_every_collection_service_answers(collection, base):
    assert collection.post(base + "ping").json()["status"]["code"] == 200
    assert insert(collection, [scene_record(1)], base=base)["status"]["code"] == 210
    search = "visualTagsKNN" if "fashion" in base else "visualKNN"
    body = collection.post(base + search, {"query_record": {"_id": "s1"}}).json()
    assert body["answer_records"] == [{"_id": "s1"}]


# --- The filter language on its own --------------------------------------------


DOC = {"brand": "acme", "price": 20, "tags": ["a", "b"], "meta": {"size": "M"}, "flag": True}


@pytest.mark.parametrize(
    "query",
    [
        {}, {"brand": "acme"}, {"price": {"$eq": 20}}, {"tags": "a"}, {"tags": ["a", "b"]},
        {"tags": {"$in": ["x", "b"]}}, {"meta.size": "M"}, {"missing": {"$exists": False}},
        {"brand": {"$ne": "other"}}, {"missing": {"$ne": 1}}, {"flag": True},
        {"$or": [{"brand": "x"}, {"price": {"$lt": 30}}]}, {"$nor": [{"brand": "x"}]},
    ],
)  # fmt: skip
def test_filters_that_match(query):
    assert matches(DOC, query)


@pytest.mark.parametrize(
    "query",
    [
        {"brand": "other"}, {"price": {"$gt": 20}}, {"price": {"$lt": "30"}}, {"tags": "c"},
        {"tags": {"$nin": ["a"]}}, {"missing": 1}, {"flag": 1}, {"price": True},
        {"$and": [{"brand": "acme"}, {"price": 21}]},
    ],
)  # fmt: skip
def test_filters_that_do_not_match(query):
    assert not matches(DOC, query)


@pytest.mark.parametrize(
    "query", [{"price": {"$in": 20}}, {"$where": "1"}, [], {"a": {"$regex": "x"}}]
)
def test_filters_that_are_refused(query):
    with pytest.raises(FilterError):
        matches(DOC, query)


def test_chosen_records_fail_an_insert_with_their_own_status(server, collection):
    server.faults.fail_record_ids = {"s2"}
    body = insert(collection, [scene_record(1), scene_record(2), scene_record(3)])
    assert body["status"]["code"] == 211
    refused = [r for r in body["records"] if "_status" in r]
    assert [(r["_id"], r["_status"]["code"]) for r in refused] == [("s2", 400)]
    server.faults.fail_record_ids = set()
    again = insert(collection, [scene_record(2)])
    assert again["status"]["code"] == 210, "the refused record was not stored"
