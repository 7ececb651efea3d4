"""Typed views of Ximilar's JSON replies.

Many reply shapes are only partly documented (see /work/shared/ximilar-api.md,
"UNCERTAIN"), so every parser here accepts each shape we know of, skips what it
cannot read and never raises on a missing or odd key. Whatever is not parsed
stays available in `raw`.

Re-exported by ximilar.py; import from there.
"""

import math
import re
from dataclasses import dataclass, field

HEX_COLOR = re.compile(r"^#?([0-9a-fA-F]{6})$")


@dataclass(frozen=True)
class Label:
    name: str
    prob: float | None
    id: str | None


@dataclass(frozen=True)
class Tag:
    name: str
    prob: float | None
    group: str | None  # fashion feature ("Category", "Color"...) or None


@dataclass(frozen=True)
class Color:
    rgb: tuple[int, int, int] | None
    hex: str | None  # "#rrggbb", lower case
    name: str | None
    simple_name: str | None
    percentage: float | None  # 0..1


@dataclass(frozen=True)
class RecordResult:
    index: int  # position in the request
    ok: bool
    code: int | None
    text: str
    raw: dict  # the record exactly as returned

    @property
    def labels(self) -> list[Label]:
        return parse_labels(self.raw.get("labels"))

    @property
    def best_label(self) -> Label | None:
        best = _label(self.raw.get("best_label"))
        if best is not None:
            return best
        labels = self.labels
        if not labels:
            return None
        return max(labels, key=lambda label: -1.0 if label.prob is None else label.prob)

    @property
    def tags(self) -> list[Tag]:
        tags = parse_record_tags(self.raw)
        if tags:
            return tags
        # Detect endpoints may tag each object rather than the whole image.
        objects = self.raw.get("_objects")
        if not isinstance(objects, list):
            return []
        return [tag for obj in objects if isinstance(obj, dict) for tag in parse_record_tags(obj)]

    @property
    def colors(self) -> list[Color]:
        return parse_colors(self.raw.get("_dominant_colors"))


@dataclass(frozen=True)
class Response:
    status_code: int | None
    status_text: str
    records: list[RecordResult]
    statistics: dict
    processing_time: float | None
    raw: dict  # the full reply; for a split call, the replies merged (see merge_responses)
    sandbox: bool


@dataclass(frozen=True)
class Answer:
    rank: int  # 1 = most similar (or first returned)
    record: dict
    distance: float | None  # smaller means more similar


@dataclass(frozen=True)
class SearchResponse:
    status_code: int | None
    status_text: str
    answers: list[Answer]
    answer_count: int | None
    raw: dict
    sandbox: bool
    skipped: list[dict] = field(default_factory=list)  # insert: skipped_records, with _reason


# ---- replies ---------------------------------------------------------------------------------


def status_of(body: dict) -> tuple[int | None, str]:
    """Ximilar's own status ("status": {"code", "text"}), which may differ from HTTP's."""
    status = body.get("status")
    if not isinstance(status, dict):
        return None, ""
    return as_int(status.get("code")), as_text(status.get("text"))


def parse_response(body: dict, *, sent: int, sandbox: bool, offset: int = 0) -> Response:
    """One reply to a request that carried `sent` records. Records come back in
    the order sent; a reply with fewer gets failed placeholders, so every record
    sent has exactly one result at its own index."""
    code, text = status_of(body)
    returned = body.get("records")
    returned = returned if isinstance(returned, list) else []
    records = [
        parse_record(returned[i] if i < len(returned) else None, index=offset + i)
        for i in range(sent)
    ]
    statistics = body.get("statistics") if isinstance(body.get("statistics"), dict) else {}
    return Response(
        status_code=code,
        status_text=text,
        records=records,
        statistics=statistics,
        processing_time=processing_time(statistics),
        raw=body,
        sandbox=sandbox,
    )


def parse_record(raw, *, index: int) -> RecordResult:
    if not isinstance(raw, dict):
        return RecordResult(index, False, None, "no result for this record in the reply", {})
    status = raw.get("_status")
    if not isinstance(status, dict):
        # No _status: the HTTP reply was fine, so the record is taken as done.
        return RecordResult(index, True, None, "", raw)
    code = as_int(status.get("code"))
    ok = code is None or 200 <= code < 300
    return RecordResult(index, ok, code, as_text(status.get("text")), raw)


def parse_search(body: dict, *, sandbox: bool, first_rank: int = 1) -> SearchResponse:
    code, text = status_of(body)
    records = body.get("answer_records")
    if not isinstance(records, list):
        records = body.get("records") if isinstance(body.get("records"), list) else []
    distances = body.get("answer_distances")
    distances = distances if isinstance(distances, list) else []
    answers = []
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            record = {"_id": record}  # some replies may list bare ids
        distance = as_float(distances[i]) if i < len(distances) else None
        answers.append(Answer(first_rank + i, record, distance))
    skipped = body.get("skipped_records")
    skipped = [r for r in skipped if isinstance(r, dict)] if isinstance(skipped, list) else []
    return SearchResponse(
        status_code=code,
        status_text=text,
        answers=answers,
        answer_count=as_int(body.get("answer_count")),
        raw=body,
        sandbox=sandbox,
        skipped=skipped,
    )


def write_results(sent: list[dict], response: SearchResponse) -> list[RecordResult]:
    """One RecordResult per record sent to a collection write (insert, update,
    delete), in the order sent, matched by `_id`. A record the reply lists in
    `records` with its own `_status` has that status; one in `skipped_records`
    has its `_reason`'s status; a record the reply does not name went through
    (the reply as a whole was accepted before this is called)."""
    reported: dict[str, RecordResult] = {}
    for answer in response.answers:
        if "_id" in answer.record and isinstance(answer.record.get("_status"), dict):
            reported[str(answer.record["_id"])] = parse_record(answer.record, index=0)
    for entry in response.skipped:
        code, text = status_of(
            entry.get("_reason") if isinstance(entry.get("_reason"), dict) else {}
        )
        reported[str(entry.get("_id"))] = RecordResult(0, False, code, text or "skipped", entry)
    results = []
    for index, record in enumerate(sent):
        found = reported.get(str(record.get("_id")))
        if found is None:
            results.append(RecordResult(index, True, None, "", {"_id": record.get("_id")}))
        else:
            results.append(RecordResult(index, found.ok, found.code, found.text, found.raw))
    return results


def processing_time(statistics: dict) -> float | None:
    for key in ("processing time", "processing_time"):
        if key in statistics:
            return as_float(statistics[key])
    return None


# ---- merging the replies of a call split into several requests -------------------------------

# When chunks disagree, the code that says "partly done" for that kind of call.
PARTIAL_CODES = ({210, 211, 411}, 211), ({205, 206, 404}, 206)


def merge_codes(codes: list[int | None]) -> int | None:
    distinct = set(codes)
    if len(distinct) == 1:
        return codes[0]
    for family, partial in PARTIAL_CODES:
        if distinct <= family:
            return partial
    failed = [c for c in codes if c is not None and not 200 <= c < 300]
    return failed[0] if failed else next((c for c in codes if c is not None), None)


def merge_texts(texts: list[str]) -> str:
    return "; ".join(dict.fromkeys(t for t in texts if t))


def merge_statistics(parts: list[dict]) -> dict:
    """Numbers are summed (processing time of the whole call); the rest kept from the first."""
    merged: dict = {}
    for statistics in parts:
        for key, value in statistics.items():
            both_numbers = isinstance(value, int | float) and isinstance(
                merged.get(key), int | float
            )
            merged[key] = merged[key] + value if both_numbers else merged.get(key, value)
    return merged


def merge_responses(parts: list[Response]) -> Response:
    """One Response for a call that was sent as several requests of ≤10 records.
    Its raw is a reply-shaped dict: merged status and statistics, every record."""
    if len(parts) == 1:
        return parts[0]
    code = merge_codes([p.status_code for p in parts])
    text = merge_texts([p.status_text for p in parts])
    statistics = merge_statistics([p.statistics for p in parts])
    records = [record for part in parts for record in part.records]
    times = [p.processing_time for p in parts if p.processing_time is not None]
    raw = {
        "status": {"code": code, "text": text},
        "statistics": statistics,
        "records": [r.raw for r in records],
    }
    sandbox = any(p.sandbox for p in parts)
    if sandbox:
        raw["_sandbox"] = True
    return Response(code, text, records, statistics, sum(times) if times else None, raw, sandbox)


def merge_searches(parts: list[SearchResponse]) -> SearchResponse:
    if len(parts) == 1:
        return parts[0]
    code = merge_codes([p.status_code for p in parts])
    text = merge_texts([p.status_text for p in parts])
    answers = [answer for part in parts for answer in part.answers]
    counts = [p.answer_count for p in parts if p.answer_count is not None]
    skipped = [record for part in parts for record in part.skipped]
    raw = {
        "status": {"code": code, "text": text},
        "answer_records": [a.record for a in answers],
        "answer_count": sum(counts) if counts else None,
        "skipped_records": skipped,
    }
    sandbox = any(p.sandbox for p in parts)
    if sandbox:
        raw["_sandbox"] = True
    return SearchResponse(code, text, answers, raw["answer_count"], raw, sandbox, skipped)


# ---- labels and tags -------------------------------------------------------------------------


def parse_labels(value) -> list[Label]:
    if not isinstance(value, list):
        return []
    return [label for label in map(_label, value) if label is not None]


def _label(value) -> Label | None:
    if isinstance(value, str) and value:
        return Label(value, None, None)
    if not isinstance(value, dict):
        return None
    name = as_text(value.get("name"))
    if not name:
        return None
    label_id = value.get("id")
    return Label(name, as_float(value.get("prob")), None if label_id is None else str(label_id))


def parse_record_tags(raw: dict) -> list[Tag]:
    """`_tags` (or `_tags_meta`) with probabilities when present, else the
    flat `_tags_simple` / `_tags_meta_simple` lists of names."""
    for key in ("_tags", "_tags_meta"):
        tags = parse_tags(raw.get(key))
        if tags:
            return tags
    for key in ("_tags_simple", "_tags_meta_simple"):
        tags = parse_tags(raw.get(key))
        if tags:
            return tags
    return []


def parse_tags(value, group: str | None = None) -> list[Tag]:
    """A list of {name, prob[, id]}, a list of names (simple mode), or a dict
    grouped by feature ({"Category": [...], "Color": [...]}, fashion)."""
    if isinstance(value, dict):
        if "name" in value:  # a single tag where a list was expected
            value = [value]
        else:
            return [tag for key, items in value.items() for tag in parse_tags(items, str(key))]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    return [tag for tag in (_tag(item, group) for item in value) if tag is not None]


def _tag(value, group: str | None) -> Tag | None:
    if isinstance(value, str):
        return Tag(value, None, group) if value else None
    if isinstance(value, dict):
        name = as_text(value.get("name"))
        return Tag(name, as_float(value.get("prob")), group) if name else None
    return None


# ---- colours ---------------------------------------------------------------------------------

# Each colour attribute, under every key it is known or guessed to use.
COLOR_LIST_KEYS = {
    "rgb": ("rgb_colors",),
    "hex": ("rgb_hex_colors", "hex_colors"),
    "name": ("color_names",),
    "simple_name": ("color_names_simple", "simple", "simple_color_names"),
    "percentage": ("percentages",),
}
COLOR_ITEM_KEYS = {
    "rgb": ("rgb", "rgb_color"),
    "hex": ("hex", "rgb_hex", "hex_color"),
    "name": ("name", "color_name"),
    "simple_name": ("simple_name", "simple", "color_name_simple"),
    "percentage": ("percentage", "percent"),
}


def parse_colors(value) -> list[Color]:
    """`_dominant_colors` as parallel lists ({"rgb_colors": [...], ...}) or,
    defensively, as a list of one dict per colour."""
    columns = _color_columns(value)
    count = max((len(column) for column in columns.values()), default=0)
    scale = _percentage_scale(columns["percentage"])
    colors = []
    for i in range(count):
        rgb = as_rgb(_at(columns["rgb"], i))
        hex_value = as_hex(_at(columns["hex"], i))
        percentage = as_float(_at(columns["percentage"], i))
        colors.append(
            Color(
                rgb=rgb or rgb_of_hex(hex_value),
                hex=hex_value or hex_of_rgb(rgb),
                name=as_name(_at(columns["name"], i)),
                simple_name=as_name(_at(columns["simple_name"], i)),
                percentage=None if percentage is None else percentage / scale,
            )
        )
    return colors


def _color_columns(value) -> dict[str, list]:
    if isinstance(value, dict):
        return {attr: _first_list(value, keys) for attr, keys in COLOR_LIST_KEYS.items()}
    items = [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
    return {
        attr: [_first_value(item, keys) for item in items] for attr, keys in COLOR_ITEM_KEYS.items()
    }


def _first_list(data: dict, keys: tuple[str, ...]) -> list:
    for key in keys:
        if isinstance(data.get(key), list):
            return data[key]
    return []


def _first_value(data: dict, keys: tuple[str, ...]):
    return next((data[key] for key in keys if key in data), None)


def _percentage_scale(values: list) -> float:
    """Percentages may be 0..1 or 0..100. Fractions never exceed 1 and sum to
    about 1 at most, so anything beyond that is read as 0..100."""
    numbers = [n for n in map(as_float, values) if n is not None]
    if numbers and (max(numbers) > 1.0 or sum(numbers) > 1.5):
        return 100.0
    return 1.0


def _at(values: list, i: int):
    return values[i] if i < len(values) else None


def as_rgb(value) -> tuple[int, int, int] | None:
    if not isinstance(value, list | tuple) or len(value) < 3:
        return None
    channels = [as_float(v) for v in value[:3]]
    if any(c is None for c in channels):
        return None
    r, g, b = (min(255, max(0, round(c))) for c in channels)
    return r, g, b


def as_hex(value) -> str | None:
    match = HEX_COLOR.match(value.strip()) if isinstance(value, str) else None
    return "#" + match.group(1).lower() if match else None


def hex_of_rgb(rgb: tuple[int, int, int] | None) -> str | None:
    return None if rgb is None else "#{:02x}{:02x}{:02x}".format(*rgb)


def rgb_of_hex(hex_value: str | None) -> tuple[int, int, int] | None:
    if hex_value is None:
        return None
    return int(hex_value[1:3], 16), int(hex_value[3:5], 16), int(hex_value[5:7], 16)


def as_name(value) -> str | None:
    """A colour name given as a string, a [name, ...] pair or a {name: ...} dict."""
    if isinstance(value, list | tuple) and value:
        value = value[0]
    if isinstance(value, dict):
        value = value.get("name")
    return value if isinstance(value, str) and value else None


# ---- scalars ---------------------------------------------------------------------------------


def as_float(value) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def as_int(value) -> int | None:
    number = as_float(value)
    return None if number is None else int(number)


def as_text(value) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)
