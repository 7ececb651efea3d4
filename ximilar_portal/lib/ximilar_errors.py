"""What Ximilar's replies mean: the error classes, and raise_for_reply, the
one place that maps an HTTP status and a reply body to them.

Re-exported by ximilar.py; import from there.
"""

import email.utils
import json
import math
from collections.abc import Iterable
from datetime import UTC, datetime

import requests

from ximilar_portal.lib.ximilar_results import status_of

MESSAGE_LIMIT = 200  # characters of the server's own words kept in an error message
MIN_SECRET_LENGTH = 8  # real tokens are 40 characters; shorter ones are test tokens

# Ximilar's own status codes, in the reply body ("status": {"code": ...}). They
# look like HTTP codes but need not match the HTTP status. Any other 2xx is
# success. Any other code raises the error class it would as an HTTP status
# (error_class), unless the reply reports on each record (`_status` on every
# record, or `skipped_records`): then those reports say what failed.
BODY_STATUS = {
    200: "ok",
    205: "ok: records found (get)",
    206: "partial: some records not found (get)",
    210: "ok: records inserted (insert)",
    211: "partial: some records inserted, the others in skipped_records (insert)",
    220: "ok: records deleted (delete)",
    404: "get: none of the ids found, not an error; any other call: PermanentError",
    411: "insert: every record a duplicate, not an error (see skipped); else PermanentError",
    412: "hard capacity exceeded: PermanentError",
}
# Codes that refuse the whole request even when the reply reports on each record.
REFUSED_BODY_CODES = frozenset({412})


# ---- errors ----------------------------------------------------------------------------------


class XimilarError(Exception):
    """Base class. `message` is short and safe to show and log: never the token."""

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.code = code  # Ximilar's body status code, when the body gave one
        self.retry_after = retry_after  # seconds; set for 429 and for 5xx that send it
        # For a call split into several requests: the Response of the requests
        # that succeeded before this one failed (their credits are spent).
        self.partial = None


class AuthError(XimilarError):
    """401/403: the token is wrong or revoked. Stop the team's queue."""


class RateLimited(XimilarError):
    """429: wait at least `retry_after` seconds (None when not given)."""


class TransientError(XimilarError):
    """5xx, timeouts, connection errors, malformed replies: retry with backoff."""


class PermanentError(XimilarError):
    """The request itself is refused (other 4xx, capacity exceeded): do not retry."""


def error_class(status: int) -> type[XimilarError]:
    """The error class for an HTTP status, or for a body status code read as one."""
    if status in (401, 403):
        return AuthError
    if status == 429:
        return RateLimited
    if status == 408 or status >= 500:  # 408 Request Timeout is a timeout too
        return TransientError
    return PermanentError


def record_failure_is_transient(code: int | None) -> bool:
    """Whether a record's own failure status (`_status` or `_reason`) is worth
    another attempt: a timeout or a server error, as it would be for a request."""
    return code is not None and error_class(code) is TransientError


# ---- replies ---------------------------------------------------------------------------------


def raise_for_reply(http_response: requests.Response, *, accept: Iterable[int] = ()) -> dict:
    """The parsed JSON object of a reply, or the XimilarError it amounts to.

    `accept` lists body status codes that are answers for this call rather than
    errors, even with an HTTP error status (404 for get, 411 for insert)."""
    accept = frozenset(accept)
    http_status = http_response.status_code
    body = _json_object(http_response)
    code = status_of(body)[0] if body is not None else None
    if not 200 <= http_status < 300:
        # An answer code only overrides a status that alone would be PermanentError:
        # a bad token, a rate limit or a server error stay what they are.
        if code in accept and error_class(http_status) is PermanentError:
            return body
        raise _error(http_response, body, http_status)
    if body is None:
        raise TransientError(f"HTTP {http_status}: malformed reply", http_status=http_status)
    if code is None or 200 <= code < 300 or code in accept:
        return body
    if code not in REFUSED_BODY_CODES and _reports_each_record(body):
        return body  # processed: each record's _status or _reason says what failed
    raise _error(http_response, body, code)


def _json_object(http_response: requests.Response) -> dict | None:
    """The body as a dict, or None. A body that echoes the token has it blanked
    out, so nothing built from the reply (raw, messages, logs) can carry it."""
    # JSON is UTF-8 (RFC 8259); requests' charset guessing is slow on big bodies.
    text = http_response.content.decode("utf-8", errors="replace")
    try:
        body = json.loads(text)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    secret = _secret_of(http_response)
    return _scrub(body, secret) if secret and secret in text else body


def _scrub(value, secret: str):
    """`value` with `secret` blanked out of every string, keys included."""
    if isinstance(value, str):
        return _redact(value, secret)
    if isinstance(value, dict):
        return {_redact(str(k), secret): _scrub(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(item, secret) for item in value]
    return value


def _secret_of(http_response: requests.Response) -> str:
    """The token this request was sent with, or "" when it is too short to
    blank out safely (a test token like "t" would mangle every word)."""
    request = getattr(http_response, "request", None)
    header = request.headers.get("Authorization", "") if request is not None else ""
    secret = header.partition(" ")[2]
    return secret if len(secret) >= MIN_SECRET_LENGTH else ""


def _reports_each_record(body: dict) -> bool:
    """Whether the reply accounts for records one by one: each with its own
    `_status`, or the rejected ones in `skipped_records` with a `_reason`."""
    records, skipped = body.get("records"), body.get("skipped_records")
    if isinstance(skipped, list) and skipped:
        return True
    return bool(records) and all(isinstance(r, dict) and "_status" in r for r in records)


def _error(http_response: requests.Response, body: dict | None, status: int) -> XimilarError:
    http_status = http_response.status_code
    code = status_of(body)[0] if body is not None else None
    cls = error_class(status)
    message = f"HTTP {http_status}"
    if code is not None and code != http_status:
        message += f" (Ximilar status {code})"
    message += f": {_detail(http_response, body)}"
    retry_after = None
    if cls in (RateLimited, TransientError):
        retry_after = parse_retry_after(http_response.headers.get("Retry-After"))
    return cls(
        _redact(message, _secret_of(http_response)),
        http_status=http_status,
        code=code,
        retry_after=retry_after,
    )


def _detail(http_response: requests.Response, body: dict | None) -> str:
    """What the server said, short. Only from JSON: an HTML error page is noise."""
    detail = ""
    if body is not None:
        detail = body.get("detail") or status_of(body)[1] or body.get("message") or ""
    detail = " ".join(str(detail).split()) or http_response.reason or "no detail"
    return detail[:MESSAGE_LIMIT] + ("…" if len(detail) > MESSAGE_LIMIT else "")


def _redact(text: str, secret: str) -> str:
    return text.replace(secret, "[redacted]") if secret else text


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds ("120") or as an HTTP date; None when unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
