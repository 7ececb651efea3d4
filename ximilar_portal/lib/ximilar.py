"""The one module that speaks Ximilar's REST protocol.

Endpoints, request bodies, splitting into requests of at most 10 records, and
turning every kind of failure into one of a few exception classes that say
what to do next (design §3.4): AuthError stops the team's queue, RateLimited
waits for Retry-After, TransientError backs off and retries, PermanentError
fails the record. The client never retries by itself: every call is billed,
so the caller decides (with the attempt count in the database).

The token only ever goes into the Authorization header of each request: never
into the URL, User-Agent, logs, exception messages or reprs.

No Django here: callers pass the base URL, token and timeouts. Reply parsing
lives in ximilar_results.py and the error mapping in ximilar_errors.py; both
are re-exported here, so callers import everything from this module.
"""

import base64
import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter

from ximilar_portal.lib.images import shrink_for_api
from ximilar_portal.lib.ximilar_errors import (
    BODY_STATUS,
    MESSAGE_LIMIT,
    AuthError,
    PermanentError,
    RateLimited,
    TransientError,
    XimilarError,
    raise_for_reply,
    record_failure_is_transient,
)
from ximilar_portal.lib.ximilar_results import (
    Answer,
    Color,
    Label,
    RecordResult,
    Response,
    SearchResponse,
    Tag,
    merge_responses,
    merge_searches,
    parse_response,
    parse_search,
    write_results,
)

__all__ = [
    "BODY_STATUS",
    "COLLECTION_TYPES",
    "DETECTION",
    "MAX_RECORDS_PER_REQUEST",
    "SERVICES",
    "Answer",
    "AuthError",
    "Client",
    "Collection",
    "Color",
    "Label",
    "PermanentError",
    "RateLimited",
    "RecordResult",
    "Response",
    "SearchResponse",
    "Service",
    "Tag",
    "TransientError",
    "XimilarError",
    "image_record",
    "raise_for_reply",
    "record_failure_is_transient",
    "write_results",
]

logger = logging.getLogger("ximilar_portal.ximilar")

MAX_RECORDS_PER_REQUEST = 10
USER_AGENT = "ximilar-portal/0.1"
JWT_MIN_LENGTH = 70  # the official client sends "JWT <t>" for tokens this long (app logins)

# Keys the official client reads locally (and wrongly forwards); never sent from here.
CLIENT_ONLY_KEYS = frozenset({"_file", "_img_data", "_color_space", "noresize"})
IMAGE_KEYS = ("_url", "_base64", "_id")


@dataclass(frozen=True)
class Service:
    key: str
    label: str
    path: str
    image_size: int  # shorter side to downscale to before sending; 0 = send as is


SERVICES = {
    s.key: s
    for s in (
        Service("generic_tags", "Generic tagging", "photo/tags/v2/tags", 600),
        Service("recognition", "Custom recognition", "recognition/v2/classify/", 512),
        Service("fashion_tags", "Fashion tagging", "tagging/fashion/v2/", 600),  # + endpoint
        Service("homedecor_tags", "Home decor tagging", "tagging/homedecor/v2/", 600),
        Service(
            "colors_product",
            "Dominant colors (product)",
            "dom_colors/product/v2/dominantcolor",
            600,
        ),
        Service(
            "colors_generic",
            "Dominant colors (generic)",
            "dom_colors/generic/v2/dominantcolor",
            600,
        ),
        # The base path depends on the collection's type: see COLLECTION_TYPES.
        Service("similarity", "Visual search", "similarity/products-new/v2/", 512),
    )
}
# Not offered as a service of its own yet, but the client can call it.
DETECTION = Service("detection", "Custom detection", "detection/v2/detect/", 1024)

FASHION_ENDPOINTS = frozenset({"tags", "detect_tags", "detect_tags_all", "detect", "meta"})
HOMEDECOR_ENDPOINTS = frozenset({"tags", "detect_tags"})
COLOR_KINDS = {"product": "colors_product", "generic": "colors_generic"}

COLLECTION_TYPES = {
    "photos": "similarity/photos/v2/",
    "products": "similarity/products-new/v2/",
    "fashion": "similarity/fashion-new/v2/",
    "custom": "similarity/custom/v2/",
    "colors": "similarity/colors/v2/",
    "homedecor": "similarity/homedecor/v2/",
    "image_matching": "image_matching/v2/",
    # Legacy collections, still served under their old paths.
    "photos_legacy": "photo/search/v2/",
    "products_legacy": "similarity/products/v2/",
    "fashion_legacy": "similarity/fashion/v2/",
}

# ---- records ---------------------------------------------------------------------------------


def image_record(
    fields: dict,
    *,
    image_bytes: bytes | None = None,
    url: str | None = None,
    image_size: int = 0,
) -> dict:
    """One record in Ximilar's format: `fields` (your `_id` and custom fields,
    unchanged) plus the image as `_url` or as bare base64 in `_base64`,
    downscaled first when image_size > 0 (ImageRejected if unreadable).

    With neither bytes nor url, `fields` must name a stored record by `_id`
    (search by id, get, delete) or already carry `_url`/`_base64`."""
    if image_bytes is not None and url is not None:
        raise ValueError("give image_bytes or url, not both")
    record = {key: value for key, value in fields.items() if key not in CLIENT_ONLY_KEYS}
    if image_bytes is not None:
        if not image_bytes:
            raise ValueError("image_bytes is empty")
        data = shrink_for_api(image_bytes, image_size) if image_size > 0 else image_bytes
        record["_base64"] = base64.b64encode(data).decode("ascii")
    elif url is not None:
        if not url:
            raise ValueError("url is empty")
        record["_url"] = url
    _check_record(record, 0)
    return record


def _check_record(record, index: int) -> None:
    if not isinstance(record, dict) or not any(record.get(key) for key in IMAGE_KEYS):
        raise ValueError(f"record {index} needs an image (_url or _base64) or an _id")


def _chunks(items: list) -> Iterator[tuple[int, list]]:
    for start in range(0, len(items), MAX_RECORDS_PER_REQUEST):
        yield start, items[start : start + MAX_RECORDS_PER_REQUEST]


def _empty_response() -> Response:
    return Response(None, "no records sent", [], {}, None, {}, False)


# ---- the client ------------------------------------------------------------------------------


class Client:
    """One account's connection to Ximilar (or the sandbox).

    A `session` passed in may be shared by clients of different tokens: the
    Authorization header goes on each request, never on the session."""

    def __init__(
        self,
        *,
        token: str,
        base_url: str,
        workspace: str | None = None,
        connect_timeout: float = 5,
        read_timeout: float = 90,
        session: requests.Session | None = None,
    ):
        token = (token or "").strip()  # pasted tokens often end in a newline
        if not token or not token.isprintable() or " " in token:
            # Never quote the token: this message may be shown or logged.
            raise ValueError("token is missing or contains spaces or control characters")
        if not base_url:
            raise ValueError("base_url is required")
        self.base_url = base_url.rstrip("/") + "/"
        self.workspace = workspace
        self.timeout = (connect_timeout, read_timeout)
        self._owns_session = session is None
        self._session = session or _new_session()
        prefix = "JWT" if len(token) >= JWT_MIN_LENGTH else "Token"
        self._headers = {
            "Authorization": f"{prefix} {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }

    def __repr__(self) -> str:
        return f"<Client {self.base_url} workspace={self.workspace!r}>"

    def close(self) -> None:
        if self._owns_session:
            self._session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # -- account

    def account_details(self) -> dict:
        return self._request("GET", "account/v2/details/")[0]

    def check_service(self, service: str) -> bool:
        """Whether the account may use `service`. A 403 here means "not this
        service" rather than a bad token, so it answers False."""
        body = {"service": service, "call_type": "authenticate"}
        try:
            reply = self._request("POST", "authorization/v2/authorize", json_body=body)[0]
        except AuthError as error:
            if error.http_status == 403:
                return False
            raise
        return "user_id" in reply

    # -- image services

    def generic_tags(self, records, *, lang: str = "en", mode: str = "complex") -> Response:
        options = {"lang": lang, "tagging_mode": mode}
        return self._post_records(SERVICES["generic_tags"].path, records, options)

    def recognition_classify(
        self, records, *, task_id: str, version: int | None = None, store_images: bool = False
    ) -> Response:
        # The docs name the field "task"; the official client sends "task_id".
        options = {"task_id": task_id, "version": version}
        if store_images:
            options["store_images"] = True
        options |= self._workspace_field()
        return self._post_records(SERVICES["recognition"].path, records, options)

    def detect(
        self, records, *, task_id: str, version: int | None = None, keep_prob: float | None = None
    ) -> Response:
        options = {"task_id": task_id, "version": version}
        if keep_prob is not None:
            options["keep_prob"] = keep_prob
        options |= self._workspace_field()
        return self._post_records(DETECTION.path, records, options)

    def fashion_tags(
        self,
        records,
        *,
        endpoint: str = "detect_tags",
        aggregate_labels: bool | None = None,
        profile: str | None = None,
    ) -> Response:
        _check_choice("endpoint", endpoint, FASHION_ENDPOINTS)
        options = _without_none({"aggregate_labels": aggregate_labels, "profile": profile})
        return self._post_records(SERVICES["fashion_tags"].path + endpoint, records, options)

    def homedecor_tags(self, records, *, endpoint: str = "tags") -> Response:
        _check_choice("endpoint", endpoint, HOMEDECOR_ENDPOINTS)
        return self._post_records(SERVICES["homedecor_tags"].path + endpoint, records, {})

    def dominant_colors(
        self, records, *, kind: str = "product", colors: int | None = None, color_names: bool = True
    ) -> Response:
        _check_choice("kind", kind, COLOR_KINDS)
        options = _without_none({"colors": colors, "color_names": color_names})
        return self._post_records(SERVICES[COLOR_KINDS[kind]].path, records, options)

    def collection(self, collection_id: str, *, collection_type: str = "products") -> "Collection":
        _check_choice("collection_type", collection_type, COLLECTION_TYPES)
        return Collection(self, collection_id, COLLECTION_TYPES[collection_type])

    # -- plumbing

    def _workspace_field(self) -> dict:
        # The official client leaves the body alone for the "Default" workspace.
        if self.workspace and self.workspace != "Default":
            return {"workspace": self.workspace}
        return {}

    def _post_records(self, path: str, records, options: dict) -> Response:
        """Send `records` in requests of at most 10 and merge the replies."""
        records = list(records)
        for index, record in enumerate(records):
            _check_record(record, index)
        parts: list[Response] = []
        for start, chunk in _chunks(records):
            try:
                body, sandbox = self._request(
                    "POST", path, json_body={"records": chunk, **options}, count=len(chunk)
                )
                if not isinstance(body.get("records"), list):
                    raise TransientError("malformed reply: no records list")
            except XimilarError as error:
                error.partial = merge_responses(parts) if parts else None
                raise
            parts.append(parse_response(body, sent=len(chunk), sandbox=sandbox, offset=start))
            _log_record_failures(path, parts[-1])
        return merge_responses(parts) if parts else _empty_response()

    def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: dict | None = None,
        headers: dict | None = None,
        accept: Iterable[int] = (),
        count: int = 0,
    ) -> tuple[dict, bool]:
        """One HTTP request: (parsed reply, whether the sandbox answered)."""
        started = time.monotonic()
        http_response, failure = None, None
        try:
            http_response = self._session.request(
                method,
                self.base_url + path,
                data=None if json_body is None else json.dumps(json_body),
                headers=self._headers | (headers or {}),
                timeout=self.timeout,
                allow_redirects=False,  # a redirect would resend the body elsewhere
            )
        except requests.RequestException as error:
            failure = _network_error(error)
        if failure is not None:
            # Raised outside the except block: requests' exception (and the
            # request with its headers) must not ride along as __context__.
            _log_request(path, count, None, started, failure)
            raise failure
        try:
            body = raise_for_reply(http_response, accept=accept)
        except XimilarError as failure:
            _log_request(path, count, http_response.status_code, started, failure)
            raise
        _log_request(path, count, http_response.status_code, started, None)
        sandbox = "_sandbox" in body or http_response.headers.get("X-Ximilar-Sandbox") == "1"
        return body, sandbox


def _new_session() -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=16)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def _network_error(error: requests.RequestException) -> XimilarError:
    """requests' exceptions as ours. Their text is left out: it is long and
    names internals; the kind of failure is what the caller acts on."""
    if isinstance(error, requests.ConnectTimeout):
        return TransientError("connect timeout")
    if isinstance(error, requests.Timeout):
        return TransientError("read timeout")
    if isinstance(error, requests.ConnectionError):
        return TransientError("connection failed")
    if isinstance(
        error, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError
    ):
        return TransientError("reply cut short")
    return PermanentError(f"request not sent: {type(error).__name__}")


def _check_choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(sorted(choices))}, not {value!r}")


def _without_none(options: dict) -> dict:
    return {key: value for key, value in options.items() if value is not None}


# ---- logging: paths, counts, statuses and times only; never headers or payloads ---------------


def _log(level: int, event: str, **fields) -> None:
    """One line per event: the dotted name, then key=value pairs."""
    pairs = " ".join(f"{key}={value}" for key, value in fields.items())
    logger.log(level, "%s %s", event, pairs)


def _log_request(path, count, status, started, failure) -> None:
    elapsed_ms = round((time.monotonic() - started) * 1000)
    fields = {"path": path, "records": count, "status": status, "elapsed_ms": elapsed_ms}
    if failure is None:
        _log(logging.INFO, "ximilar.request", **fields)
    else:
        error = type(failure).__name__
        _log(
            logging.WARNING,
            "ximilar.request_failed",
            **fields,
            error=error,
            message=failure.message,
        )


def _log_record_failures(path: str, response: Response) -> None:
    for record in response.records:
        if not record.ok:
            text = record.text[:MESSAGE_LIMIT]
            _log(
                logging.INFO,
                "ximilar.record_failed",
                path=path,
                index=record.index,
                code=record.code,
                text=text,
            )


# ---- collections (visual search) -------------------------------------------------------------


class Collection:
    """A visual-search collection: every call carries its `collection-id` header."""

    def __init__(self, client: Client, collection_id: str, base_path: str):
        if not collection_id:
            raise ValueError("collection_id is required")
        self.client = client
        self.collection_id = collection_id
        self.base_path = base_path

    def __repr__(self) -> str:
        return f"<Collection {self.collection_id} at {self.base_path}>"

    def insert(self, records, *, fields_to_return=("_id",)) -> SearchResponse:
        # 411 (all duplicates) is an answer: the duplicates are in `skipped`.
        return self._post_split("insert", records, fields_to_return, accept=(411,))

    def get(self, ids, *, fields_to_return=("*",)) -> SearchResponse:
        # 404 (none of these ids) is an answer: no records.
        records = [{"_id": str(record_id)} for record_id in ids]
        return self._post_split("get", records, fields_to_return, accept=(404,))

    def update(self, records, *, fields_to_return=("_id",)) -> SearchResponse:
        return self._post_split("update", records, fields_to_return)

    def delete(self, ids) -> SearchResponse:
        records = [{"_id": str(record_id)} for record_id in ids]
        return self._post_split("delete", records, None)

    def knn(
        self, query_record: dict, *, k=5, fields_to_return=("_id",), filter=None, tags=False
    ) -> SearchResponse:
        _check_record(query_record, 0)
        body = {"query_record": query_record, "k": k, "fields_to_return": list(fields_to_return)}
        if filter:
            body["filter"] = filter
        return self._post("visualTagsKNN" if tags else "visualKNN", body)

    def rank_records(
        self, query_record: dict, records, *, k=None, radius=None, fields_to_return=("_id",)
    ) -> SearchResponse:
        """Not split: the ranking is over all `records` together."""
        _check_record(query_record, 0)
        records = list(records)
        for index, record in enumerate(records):
            _check_record(record, index)
        body = {
            "query_record": query_record,
            "records": records,
            "fields_to_return": list(fields_to_return),
        }
        return self._post("visualRankRecords", body | _without_none({"k": k, "radius": radius}))

    def all_records(self, *, page_size=100, fields_to_return=("_id",)) -> Iterator[dict]:
        """Every record of the collection, page by page. The reply's `next` is
        only read as "there is more": a URL in a reply is never followed, so
        the token cannot be sent to a host the reply names."""
        body = {"fields_to_return": list(fields_to_return)}
        page = 1
        while True:
            reply = self._post(f"allRecords?size={int(page_size)}&page={page}", body)
            for answer in reply.answers:
                yield answer.record
            if not reply.answers or not reply.raw.get("next"):
                return
            page += 1

    def _post_split(self, method, records, fields_to_return, *, accept=()) -> SearchResponse:
        records = list(records)
        for index, record in enumerate(records):
            _check_record(record, index)
        extra = {} if fields_to_return is None else {"fields_to_return": list(fields_to_return)}
        parts: list[SearchResponse] = []
        for _start, chunk in _chunks(records):
            first_rank = sum(len(p.answers) for p in parts) + 1
            try:
                parts.append(
                    self._post(method, {"records": chunk, **extra}, accept, len(chunk), first_rank)
                )
            except XimilarError as error:
                error.partial = merge_searches(parts) if parts else None
                raise
        if not parts:
            return SearchResponse(None, "no records sent", [], None, {}, False, [])
        return merge_searches(parts)

    def _post(self, method, body, accept=(), count=0, first_rank=1) -> SearchResponse:
        reply, sandbox = self.client._request(
            "POST",
            self.base_path + method,
            json_body=body,
            headers={"collection-id": self.collection_id},
            accept=accept,
            count=count,
        )
        return parse_search(reply, sandbox=sandbox, first_rank=first_rank)
