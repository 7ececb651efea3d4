"""Ximilar's record format in and out: one record dict (as in `{"records": [...]}`)
to the fields a Record is made of, typed custom values as text (form and CSV
cells), and the CSV/JSON export that an import reads back unchanged."""

import csv
import io
import json
import re
import uuid
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

RESERVED_FIELDS = {"product_id", "category", "price", "tags"}
CSV_HEADER = ["_id", "_url", "product_id", "category", "price", "tags"]
FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
TAG_SEPARATORS = re.compile(r"[|;]")
MAX_PRICE = Decimal("9999999999.9999")  # max_digits=14, decimal_places=4
url_validator = URLValidator(schemes=["http", "https"])


class RowRejected(ValueError):
    """One record cannot be imported; the message says why, for the user."""


# --- Typed custom values as text --------------------------------------------------------


def parse_custom_value(text: str):
    """`42`, `4.5`, `true`, `["a","b"]` keep their JSON type, `"42"` is the
    text 42; anything else is text as typed."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, str):
        return value if text.lstrip().startswith('"') else text
    return value if isinstance(value, int | float | bool | list) else text


def format_custom_value(value) -> str:
    """The text that parse_custom_value reads back as exactly `value`."""
    if isinstance(value, str):
        return json.dumps(value) if parse_custom_value(value) != value else value
    return json.dumps(value, ensure_ascii=False)


def check_custom_field(name, value) -> None:
    if not isinstance(name, str) or not FIELD_NAME.match(name):
        raise RowRejected(
            f"Field name {str(name)[:40]!r} is not allowed: a name starts with a letter and "
            "has letters, digits, `_`, `.` or `-` (at most 64)."
        )
    if not _is_custom_value(value):
        raise RowRejected(f"Field {name!r}: values are text, numbers, true/false or lists.")


def _is_custom_value(value, depth=0) -> bool:
    if isinstance(value, str | bool | int | float):
        return value == value  # not NaN
    if isinstance(value, list) and depth == 0:
        return all(_is_custom_value(item, 1) for item in value)
    return False


# --- One record dict to Record fields ---------------------------------------------------


def fields_from_ximilar(row: dict, *, require_url=True) -> dict:
    """The Record fields for one Ximilar record dict, or RowRejected."""
    if not isinstance(row, dict):
        raise RowRejected('A record is a JSON object such as {"_id": "1", "_url": …}.')
    extra = {k: v for k, v in row.items() if k not in RESERVED_FIELDS | {"_id", "_url"}}
    fields = {
        "ximilar_id": _clean_id(row.get("_id")),
        "image_url": _clean_url(row.get("_url"), require_url),
        "product_id": _clean_text(row, "product_id"),
        "category": _clean_text(row, "category"),
        "price": clean_price(row.get("price")),
        "tags": _clean_tags(row.get("tags")),
        "fields": {},
    }
    for name, value in extra.items():
        if isinstance(name, str) and name.startswith("_"):
            raise RowRejected(
                f"{name!r}: only `_id` and `_url` are read; embedded images "
                "(`_base64`, `_file`) are not imported, upload the files instead."
            )
        check_custom_field(name, value)
        fields["fields"][name] = value
    return fields


def _clean_id(value) -> str:
    if value is None or value == "":
        return uuid.uuid4().hex
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise RowRejected("`_id` must be text (or a whole number, kept as text).")
    value = str(value)
    if len(value) > 255 or value != value.strip():
        raise RowRejected("`_id` must be at most 255 characters without surrounding spaces.")
    return value


def _clean_url(value, required) -> str:
    if value in (None, ""):
        if required:
            raise RowRejected("`_url` is missing: every imported record needs an image URL.")
        return ""
    if not isinstance(value, str) or len(value) > 2000:
        raise RowRejected("`_url` must be a web address of at most 2000 characters.")
    try:
        url_validator(value)
    except ValidationError:
        raise RowRejected(f"`_url` {value[:80]!r} is not an http or https address.") from None
    return value


def _clean_text(row, name) -> str:
    value = row.get(name)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise RowRejected(f"`{name}` must be text.")
    value = str(value)
    if len(value) > 255:
        raise RowRejected(f"`{name}` is longer than 255 characters.")
    return value


def clean_price(value) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RowRejected("`price` must be a number.")
    try:
        price = Decimal(str(value).strip())
    except InvalidOperation:
        raise RowRejected(f"`price` {str(value)[:40]!r} is not a number.") from None
    if not price.is_finite() or price < 0 or price > MAX_PRICE:
        raise RowRejected("`price` must be a number between 0 and 9,999,999,999.")
    if price != price.quantize(Decimal("0.0001")):
        raise RowRejected("`price` has more than 4 decimal places.")
    return price


def _clean_tags(value) -> list:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        value = [tag.strip() for tag in TAG_SEPARATORS.split(value)]
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise RowRejected("`tags` must be a list of text.")
    tags = []
    for tag in value:
        if tag and tag not in tags:
            tags.append(tag)
    return tags


# --- Files: read --------------------------------------------------------------------------


def read_rows(data: bytes, source_format: str):
    """(position, row dict or RowRejected) for each record of the file."""
    text = _decode(data)
    if source_format == "csv":
        yield from _csv_rows(text)
    elif source_format == "jsonl":
        yield from _jsonl_rows(text)
    else:
        yield from _json_rows(text)


def detect_format(name: str, data: bytes) -> str:
    """csv, json or jsonl, from the content (the name only breaks a tie)."""
    head = _decode(data[:65536], strict=False).lstrip()
    if name.lower().endswith((".jsonl", ".ndjson")):
        return "jsonl"
    if head.startswith("["):
        return "json"
    if head.startswith("{"):
        one_line = len([line for line in data.splitlines() if line.strip()]) == 1
        return "jsonl" if not one_line and _first_line_is_object(head) else "json"
    return "csv"


def _first_line_is_object(head: str) -> bool:
    """JSON Lines: the first line alone is a whole object (and not the wrapper)."""
    first = head.split("\n", 1)[0]
    try:
        value = json.loads(first)
    except ValueError:
        return False
    return isinstance(value, dict) and "records" not in value


def _decode(data: bytes, strict=True) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        if not strict:
            return data.decode("utf-8", errors="replace")
        raise RowRejected("The file is not UTF-8 text.") from None


def _csv_rows(text: str):
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    _check_header(header)
    for row in reader:
        if not any(cell.strip() for cell in row):
            continue
        position = reader.line_num
        if len(row) != len(header):
            yield (
                position,
                RowRejected(f"The row has {len(row)} cells; the header has {len(header)}."),
            )
            continue
        yield position, _csv_record(header, row)


def _check_header(header) -> None:
    if not header or "_url" not in header:
        raise RowRejected(
            "The first line must be a header such as `_id,_url,product_id,category,price,tags`; "
            "`_url` is required."
        )
    if len(set(header)) != len(header):
        raise RowRejected("The header names a column twice.")


def _csv_record(header, row) -> dict:
    record = {}
    for name, cell in zip(header, row, strict=True):
        if cell == "":
            continue
        record[name] = cell if name in CSV_HEADER else parse_custom_value(cell)
    return record


def _json_rows(text: str):
    try:
        document = json.loads(text)
    except ValueError as error:
        raise RowRejected(
            f"The file is not valid JSON ({error.msg}, line {error.lineno})."
        ) from None
    records = document.get("records") if isinstance(document, dict) else document
    if not isinstance(records, list):
        raise RowRejected('JSON must be {"records": [ … ]} as Ximilar takes it.')
    yield from enumerate(records, start=1)


def _jsonl_rows(text: str):
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except ValueError as error:
            yield number, RowRejected(f"Not valid JSON ({error.msg}).")


# --- Files: write ---------------------------------------------------------------------------


def export_json(records) -> str:
    return json.dumps({"records": [record.as_ximilar() for record in records]}, ensure_ascii=False)


def export_csv(records) -> str:
    rows = [record.as_ximilar() for record in records]
    custom = sorted({name for row in rows for name in row} - set(CSV_HEADER))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER + custom)
    for row in rows:
        writer.writerow([_csv_cell(name, row.get(name)) for name in CSV_HEADER + custom])
    return out.getvalue()


def _csv_cell(name, value) -> str:
    if value is None:
        return ""
    if name == "tags":
        return "|".join(value)
    if name in CSV_HEADER:
        return str(value)
    return format_custom_value(value)
