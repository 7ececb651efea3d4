"""Which client call runs each service, with the options a submission carries,
and the answers turned into one `Outcome` per record sent, whatever the
service. The protocol itself lives in lib/ximilar.py; this only picks the
method and lines the answers up with the records."""

from dataclasses import dataclass, field

from ximilar_portal.lib import ximilar
from ximilar_portal.lib.ximilar_results import processing_time

SEARCH, INSERT = "similarity_search", "similarity_insert"
DUPLICATE = 411  # Ximilar's code for a record already in the collection
EXTRA_LABELS = {SEARCH: "Visual search", INSERT: "Insert into collection"}

SERVICE_CALLS = {
    "generic_tags": lambda client, records, o: client.generic_tags(
        records, lang=o.get("lang", "en"), mode=o.get("mode", "complex")
    ),
    "recognition": lambda client, records, o: client.recognition_classify(
        records, task_id=o["task_id"], version=o.get("version")
    ),
    "fashion_tags": lambda client, records, o: client.fashion_tags(
        records, endpoint=o.get("endpoint", "detect_tags")
    ),
    "homedecor_tags": lambda client, records, o: client.homedecor_tags(
        records, endpoint=o.get("endpoint", "tags")
    ),
    "colors_product": lambda client, records, o: client.dominant_colors(
        records, kind="product", colors=o.get("colors")
    ),
    "colors_generic": lambda client, records, o: client.dominant_colors(
        records, kind="generic", colors=o.get("colors")
    ),
}
SERVICE_KEYS = [*SERVICE_CALLS, INSERT, SEARCH]


@dataclass
class Outcome:
    """What came back for one record sent."""

    ok: bool
    raw: dict
    text: str = ""
    code: int | None = None
    labels: list = field(default_factory=list)
    tags: list = field(default_factory=list)
    colors: list = field(default_factory=list)
    best: object = None  # a ximilar.Label or None
    note: str = ""
    answers: list = field(default_factory=list)  # search: [ximilar.Answer]

    @property
    def retryable(self) -> bool:
        """A failed record worth another attempt (its own 5xx or timeout)."""
        return not self.ok and ximilar.record_failure_is_transient(self.code)


@dataclass
class Reply:
    outcomes: list[Outcome]
    processing_time: float | None
    sandbox: bool


def records_per_request(service: str) -> int:
    """A visual search takes one query record per request."""
    return 1 if service == SEARCH else ximilar.MAX_RECORDS_PER_REQUEST


def requests_needed(service: str, records: int) -> int:
    per = records_per_request(service)
    return -(-records // per)


def call_service(client, service: str, options: dict, records: list[dict], collection=None):
    """One request (or one per query record for search): a Reply with one
    Outcome per record, in order. Raises ximilar's error classes."""
    if service == INSERT:
        return _insert(_collection(client, collection), records)
    if service == SEARCH:
        return _search(_collection(client, collection), records, options)
    response = SERVICE_CALLS[service](client, records, options)
    outcomes = [_image_outcome(record) for record in response.records]
    return Reply(outcomes, response.processing_time, response.sandbox)


def _collection(client, collection):
    if collection is None:
        raise ximilar.PermanentError("the submission's collection was deleted")
    return client.collection(collection.collection_id, collection_type=collection.collection_type)


def _image_outcome(record) -> Outcome:
    if not record.ok:
        return Outcome(ok=False, raw=record.raw, text=record.text, code=record.code)
    return Outcome(
        ok=True,
        raw=record.raw,
        labels=record.labels,
        tags=record.tags,
        colors=record.colors,
        best=record.best_label,
    )


def _insert(collection, records) -> Reply:
    """Each record by its own status in the reply: inserted records are done;
    a duplicate is done too (it is in the collection already) with a note;
    any other refused record fails with the reason."""
    response = collection.insert(records)
    outcomes = []
    for result in ximilar.write_results(records, response):
        if result.ok:
            outcomes.append(Outcome(ok=True, raw=result.raw, note="inserted"))
        elif result.code == DUPLICATE:
            note = f"skipped: {result.text or 'duplicate'}"
            outcomes.append(Outcome(ok=True, raw=result.raw, note=note))
        else:
            outcomes.append(
                Outcome(ok=False, raw=result.raw, code=result.code, text=result.text or "skipped")
            )
    return Reply(outcomes, _seconds(response.raw), response.sandbox)


def _search(collection, records, options) -> Reply:
    outcomes, sandbox, seconds = [], False, None
    for record in records:
        response = collection.knn(
            record,
            k=options.get("k", 5),
            fields_to_return=options.get("fields") or ["_id"],
            filter=options.get("filter") or None,
        )
        raw = dict(response.raw)
        outcomes.append(Outcome(ok=True, raw=raw, answers=response.answers))
        sandbox, seconds = response.sandbox, _seconds(response.raw)
    return Reply(outcomes, seconds, sandbox)


def _seconds(raw: dict):
    statistics = raw.get("statistics") if isinstance(raw.get("statistics"), dict) else {}
    return processing_time(statistics) if statistics else None


def service_label(service: str) -> str:
    if service in EXTRA_LABELS:
        return EXTRA_LABELS[service]
    known = ximilar.SERVICES.get(service)
    return known.label if known else service
