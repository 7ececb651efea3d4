"""The parts of Ximilar's protocol every service shares: the `records` list,
per-record `_status`, the top-level `status`, and request options."""

import uuid
from dataclasses import dataclass, field
from typing import Any

from .imaging import ImageProblem, Picture, picture_from_record

MAX_RECORDS = 10
# Output fields a service adds to a record; an injected record failure removes them.
SERVICE_OUTPUT_FIELDS = (
    "labels", "best_label", "_tags", "_tags_simple", "_tags_meta", "_tags_meta_simple",
    "_dominant_colors", "_objects", "_stored_image_id",
)  # fmt: skip
# Image bytes are input only: echoing them back would double every answer's size.
NOT_ECHOED = ("_base64", "_img_data")


@dataclass
class Call:
    """One API request as a handler sees it."""

    method: str
    path: str  # without the leading slash and the query string
    query: dict[str, str]
    body: dict
    headers: Any  # case-insensitive mapping (http.client.HTTPMessage)
    token: str
    base_url: str  # "http://host:port/"
    state: Any  # server.SandboxState
    params: dict[str, str] = field(default_factory=dict)  # parts of the path
    failing_ids: frozenset[str] = frozenset()  # injected: records with these _id fail


@dataclass
class Reply:
    body: dict
    http_status: int = 200
    credits: int = 0  # records analysed, added to the account's credits_counter
    headers: dict[str, str] = field(default_factory=dict)


class BadRequest(Exception):
    """A request Ximilar would refuse as a whole, with HTTP 400."""

    def __init__(self, text: str, code: int = 400):
        super().__init__(text)
        self.text = text
        self.code = code

    def reply(self) -> Reply:
        return Reply({"status": status(self.code, self.text)}, http_status=self.code)


def status(code: int, text: str) -> dict:
    return {"code": code, "text": text, "request_id": str(uuid.uuid4())}


def request_records(body: dict, *, allow_empty=False) -> list[dict]:
    records = body.get("records")
    if records is None:
        if allow_empty:
            return []
        raise BadRequest("records are required")
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise BadRequest("records must be a list of objects")
    if len(records) > MAX_RECORDS:
        raise BadRequest(f"Too many records, at most {MAX_RECORDS} per request")
    if not records and not allow_empty:
        raise BadRequest("records must not be empty")
    return records


def echo(record: dict) -> dict:
    return {key: value for key, value in record.items() if key not in NOT_ECHOED}


def analyse_records(call: Call, analyse) -> Reply:
    """Answer every record in request order; `analyse(picture, record)` returns
    the service's output fields for one readable image."""
    answers = [answer_record(record, analyse) for record in request_records(call.body)]
    analysed = sum(1 for answer in answers if answer["_status"]["code"] == 200)
    return Reply({"records": answers, "status": status(200, "OK")}, credits=analysed)


def answer_record(record: dict, analyse) -> dict:
    answer = echo(record)
    answer.setdefault("_id", str(uuid.uuid4()))
    try:
        picture: Picture = picture_from_record(record)
    except ImageProblem as problem:
        answer["_status"] = status(400, str(problem))
        return answer
    answer["_width"], answer["_height"] = picture.width, picture.height
    answer.update(analyse(picture, record))
    answer["_status"] = status(200, "OK")
    return answer


def int_option(body: dict, name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BadRequest(f"{name} must be a whole number from {low} to {high}")
    return value


def choice_option(body: dict, name: str, default: str, choices: tuple[str, ...]) -> str:
    value = body.get(name) or default
    if value not in choices:
        raise BadRequest(f"{name} must be one of: {', '.join(choices)}")
    return value


def fields_option(body: dict, default: list[str]) -> list[str]:
    wanted = body.get("fields_to_return", default)
    if wanted is None:
        return default
    if not isinstance(wanted, list) or not all(isinstance(name, str) for name in wanted):
        raise BadRequest("fields_to_return must be a list of field names")
    return wanted


def select_fields(fields: dict, wanted: list[str]) -> dict:
    """The fields a caller asked for; "*" means all, and `_id` always comes."""
    if "*" in wanted:
        return dict(fields)
    selected = {name: fields[name] for name in wanted if name in fields}
    if "_id" in fields:
        selected = {"_id": fields["_id"], **selected}
    return selected
