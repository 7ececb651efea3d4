"""Similarity collections: insert, get, update, delete, visualKNN, visualRankRecords,
random, allRecords and ping, kept in memory per (token, collection-id).

Distances are real: each image's feature vector (imaging.Picture.features)
is compared by scaled Euclidean distance, so a resized or re-encoded copy
lands much closer than an unrelated image.

Collection outcomes (210 inserted, 211 some inserted, 411 duplicate, 412 over
capacity, 205/206/404 found, 220 deleted) come back as HTTP 200 with the code
in the JSON `status`; a request that cannot be served at all is HTTP 400.
"""

import random
import threading
from contextlib import contextmanager
from dataclasses import dataclass

from .filters import FilterError, matches
from .imaging import ImageProblem, feature_distance, picture_from_record
from .protocol import (
    BadRequest,
    Call,
    Reply,
    echo,
    fields_option,
    int_option,
    request_records,
    select_fields,
    status,
)

BASES = (
    "similarity/photos/v2", "similarity/products-new/v2", "similarity/products/v2",
    "similarity/fashion-new/v2", "similarity/fashion/v2", "similarity/custom/v2",
    "similarity/colors/v2", "similarity/homedecor/v2", "image_matching/v2", "photo/search/v2",
)  # fmt: skip
IMAGE_FIELDS = ("_url", "_base64", "_file", "_img_data")
INJECTED_FAILURE = "sandbox: injected record failure"


@dataclass
class Item:
    fields: dict  # what was inserted, without image bytes
    vector: list[float]


class CollectionStore:
    """All collections, thread-safe: every access holds one lock."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._collections: dict[tuple[str, str], dict[str, Item]] = {}
        self._lock = threading.Lock()

    @contextmanager
    def opened(self, token: str, collection_id: str):
        with self._lock:
            yield self._collections.setdefault((token, collection_id), {})

    def clear(self) -> None:
        with self._lock:
            self._collections.clear()


def handle(call: Call) -> Reply:
    collection_id = call.headers.get("collection-id")
    if not collection_id:
        raise BadRequest("collection-id header is required")
    method = METHODS[call.params["method"]]
    try:
        return method(call, collection_id)
    except FilterError as error:
        raise BadRequest(f"invalid filter: {error}") from error


def key_of(record: dict) -> str | None:
    value = record.get("_id")
    return None if value is None or value == "" else str(value)


def skipped(record: dict, code: int, text: str) -> dict:
    return {**echo(record), "_reason": {"status": {"code": code, "text": text}}}


# --- Writing -------------------------------------------------------------------


def insert(call: Call, collection_id: str) -> Reply:
    ready, rejected = prepare_inserts(request_records(call.body))
    inserted, failed = [], []
    store = call.state.collections
    with store.opened(call.token, collection_id) as items:
        for record, vector in ready:
            if key_of(record) in call.failing_ids:
                failed.append({**echo(record), "_status": status(400, INJECTED_FAILURE)})
            elif key_of(record) in items:
                rejected.append(skipped(record, 411, "record duplicate"))
            elif len(items) >= store.capacity:
                rejected.append(skipped(record, 412, "hard capacity exceeded"))
            else:
                items[key_of(record)] = Item(echo(record), vector)
                inserted.append(echo(record))
    wanted = fields_option(call.body, ["_id"])
    body = {"status": insert_status(inserted, rejected + failed)}
    # An injected failure is reported as Ximilar reports a record it could
    # not process: in `records`, with its own `_status`.
    body["records"] = [select_fields(fields, wanted) for fields in inserted] + [
        {**select_fields(record, wanted), "_status": record["_status"]} for record in failed
    ]
    if rejected:
        body["skipped_records"] = rejected
    return Reply(body, credits=len(inserted))


def prepare_inserts(records: list[dict]) -> tuple[list, list]:
    ready, rejected = [], []
    for record in records:
        if key_of(record) is None:
            rejected.append(skipped(record, 400, "record has no _id"))
            continue
        try:
            ready.append((record, picture_from_record(record).features))
        except ImageProblem as problem:
            rejected.append(skipped(record, 400, str(problem)))
    return ready, rejected


def insert_status(inserted: list, rejected: list) -> dict:
    if not rejected:
        return status(210, "records inserted")
    if inserted:
        return status(211, "some records inserted")
    codes = {
        r["_reason"]["status"]["code"] if "_reason" in r else r["_status"]["code"] for r in rejected
    }
    if codes == {411}:
        return status(411, "record duplicate")
    if 412 in codes:
        return status(412, "hard capacity exceeded")
    return status(400, "no records inserted")


def update(call: Call, collection_id: str) -> Reply:
    """Metadata only; the image and its descriptor stay as inserted."""
    updated, missing = [], []
    with call.state.collections.opened(call.token, collection_id) as items:
        for record in request_records(call.body):
            item = items.get(key_of(record))
            if item is None:
                missing.append(skipped(record, 404, "record not found"))
                continue
            changes = {k: v for k, v in record.items() if k not in IMAGE_FIELDS}
            item.fields.update(changes)
            updated.append(dict(item.fields))
    wanted = fields_option(call.body, ["*"])
    body = {"status": found_status(updated, missing, all_found=(200, "records updated"))}
    body["records"] = [select_fields(fields, wanted) for fields in updated]
    if missing:
        body["skipped_records"] = missing
    return Reply(body)


def delete(call: Call, collection_id: str) -> Reply:
    missing = []
    with call.state.collections.opened(call.token, collection_id) as items:
        for record in request_records(call.body):
            if items.pop(key_of(record), None) is None:
                missing.append(skipped(record, 404, "record not found"))
    body = {"status": status(220, "records deleted")}
    if missing:
        body["skipped_records"] = missing
    return Reply(body)


# --- Reading -------------------------------------------------------------------


def get(call: Call, collection_id: str) -> Reply:
    found, missing = [], []
    wanted = fields_option(call.body, ["_id"])
    with call.state.collections.opened(call.token, collection_id) as items:
        for record in request_records(call.body):
            item = items.get(key_of(record))
            if item is None:
                missing.append(skipped(record, 404, "record not found"))
            else:
                found.append(select_fields(item.fields, wanted))
    body = {"status": found_status(found, missing, all_found=(205, "records found"))}
    body.update(answer_records=found, answer_count=len(found))
    if missing:
        body["skipped_records"] = missing
    return Reply(body)


def found_status(found: list, missing: list, *, all_found: tuple[int, str]) -> dict:
    if not missing:
        return status(*all_found)
    if found:
        return status(206, "some records not found")
    return status(404, "records not found")


def matching_items(call: Call, collection_id: str) -> list[Item]:
    query = call.body.get("filter") or {}
    with call.state.collections.opened(call.token, collection_id) as items:
        return [item for item in items.values() if matches(item.fields, query)]


def query_vector(call: Call, collection_id: str) -> tuple[list[float], int]:
    """The query's features, and the credits it costs (1 when an image was analysed)."""
    query = call.body.get("query_record")
    if not isinstance(query, dict):
        raise BadRequest("query_record is required")
    has_image = bool(query.get("_base64") or query.get("_url"))
    return record_vector(call, collection_id, query, "query_record"), int(has_image)


def record_vector(call: Call, collection_id: str, record: dict, label: str) -> list[float]:
    """Features of the record's image, or of the stored record with its `_id`."""
    if not record.get("_base64") and not record.get("_url"):
        with call.state.collections.opened(call.token, collection_id) as items:
            item = items.get(key_of(record))
        if item is None:
            raise BadRequest(f"{label}: no _url or _base64, and no stored record with its _id")
        return item.vector
    try:
        return picture_from_record(record).features
    except ImageProblem as problem:
        raise BadRequest(f"{label}: {problem}") from problem


def answer(ranked: list[tuple[float, dict]], wanted: list[str]) -> dict:
    return {
        "answer_records": [select_fields(fields, wanted) for _, fields in ranked],
        "answer_distances": [round(distance, 4) for distance, _ in ranked],
        "answer_count": len(ranked),
        "status": status(200, "OK"),
    }


def visual_knn(call: Call, collection_id: str) -> Reply:
    vector, credits = query_vector(call, collection_id)
    k = int_option(call.body, "k", 5, 1, 1000)
    wanted = fields_option(call.body, ["_id"])
    items = matching_items(call, collection_id)
    ranked = sorted(
        ((feature_distance(vector, item.vector), item.fields) for item in items),
        key=lambda pair: pair[0],
    )
    return Reply(answer(ranked[:k], wanted), credits=credits)


def rank_records(call: Call, collection_id: str) -> Reply:
    """Order the given `records` by distance to `query_record`."""
    vector, credits = query_vector(call, collection_id)
    records = request_records(call.body)
    k = int_option(call.body, "k", len(records), 1, 1000)
    radius = call.body.get("radius")
    if radius is not None and (isinstance(radius, bool) or not isinstance(radius, int | float)):
        raise BadRequest("radius must be a number")
    ranked = []
    for record in records:
        label = f"record {key_of(record)}"
        distance = feature_distance(vector, record_vector(call, collection_id, record, label))
        if radius is None or distance <= radius:
            ranked.append((distance, echo(record)))
    ranked.sort(key=lambda pair: pair[0])
    wanted = fields_option(call.body, ["_id"])
    return Reply(answer(ranked[:k], wanted), credits=credits + len(records))


def random_records(call: Call, collection_id: str) -> Reply:
    count = int_option(call.body, "count", 10, 1, 1000)
    items = matching_items(call, collection_id)
    chosen = random.sample(items, min(count, len(items)))
    wanted = fields_option(call.body, ["_id"])
    records = [select_fields(item.fields, wanted) for item in chosen]
    body = {"answer_records": records, "answer_count": len(records), "status": status(200, "OK")}
    return Reply(body)


def all_records(call: Call, collection_id: str) -> Reply:
    """One page (`?size=&page=`, pages from 1; no size means everything);
    `next` is present only while more pages follow."""
    size, page = page_option(call.query, "size", 0), page_option(call.query, "page", 1)
    if page < 1:
        raise BadRequest("page numbers start at 1")
    items = matching_items(call, collection_id)
    chosen = items[(page - 1) * size : page * size] if size else items
    wanted = fields_option(call.body, ["_id"])
    body = {
        "answer_records": [select_fields(item.fields, wanted) for item in chosen],
        "answer_count": len(items),
        "status": status(200, "OK"),
    }
    if size and page * size < len(items):
        base = call.path[: -len("allRecords")]
        body["next"] = f"{call.base_url}{base}allRecords?size={size}&page={page + 1}"
    return Reply(body)


def page_option(query: dict, name: str, default: int) -> int:
    value = query.get(name, str(default))
    if not value.isdigit():
        raise BadRequest(f"{name} must be a whole number")
    return int(value)


def ping(call: Call, collection_id: str) -> Reply:
    return Reply({"status": status(200, "OK")})


METHODS = {
    "insert": insert,
    "get": get,
    "update": update,
    "delete": delete,
    "visualKNN": visual_knn,
    "visualTagsKNN": visual_knn,  # fashion's variant; tags play no part in the sandbox
    "visualRankRecords": rank_records,
    "random": random_records,
    "allRecords": all_records,
    "ping": ping,
}
