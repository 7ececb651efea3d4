"""Fault injection settings and the per-token rate limiter.

Tests set these on `SandboxServer.faults` directly; a sandbox running as its
own process takes them as JSON on `POST /_sandbox/faults`.
"""

import math
import threading
import time
from dataclasses import dataclass, field, fields


@dataclass
class Faults:
    latency_ms: int = 0
    status_code: int | None = None  # forced HTTP status on every request
    status_code_until: float | None = None  # time.time() after which status_code stops
    error_rate: float = 0.0  # fraction of requests answered with HTTP 500
    retry_after: str | None = None  # Retry-After on forced answers ("2" or an HTTP date)
    hang_seconds: float = 0  # wait this long before answering
    malformed_json: bool = False  # HTTP 200 with a truncated body
    # Per-record failures: analysed records (with a `_status`) of an OK answer.
    record_failure_rate: float = 0.0  # fraction of records that fail
    fail_record_ids: set[str] = field(default_factory=set)  # records with these _id fail
    rate_limit_rps: float | None = None  # requests per second per token, then 429

    def clear(self) -> None:
        """Back to no faults, in place, so references held elsewhere stay valid."""
        fresh = Faults()
        for item in fields(self):
            setattr(self, item.name, getattr(fresh, item.name))

    def update_from_json(self, data) -> None:
        """Merge fields from a JSON object; ValueError names a bad field."""
        if not isinstance(data, dict):
            raise ValueError("faults must be a JSON object")
        unknown = set(data) - set(CONVERTERS)
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}")
        converted = {}
        for name, value in data.items():
            try:
                converted[name] = CONVERTERS[name](value)
            except (TypeError, ValueError) as error:
                raise ValueError(f"bad value for {name}: {value!r}") from error
        for name, value in converted.items():
            setattr(self, name, value)

    def forced_status(self) -> int | None:
        """The forced HTTP status now: none once `status_code_until` has passed."""
        if self.status_code_until is not None and time.time() >= self.status_code_until:
            return None
        return self.status_code

    def to_json(self) -> dict:
        data = {item.name: getattr(self, item.name) for item in fields(self)}
        data["fail_record_ids"] = sorted(self.fail_record_ids)
        return data


def strict_bool(value) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def number(kind):
    def convert(value):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("expected a number")
        return kind(value)

    return convert


def optional(convert):
    return lambda value: None if value is None else convert(value)


def id_set(value) -> set[str]:
    if not isinstance(value, list):
        raise ValueError("expected a list")
    return {str(item) for item in value}


CONVERTERS = {
    "latency_ms": number(int),
    "status_code": optional(number(int)),
    "status_code_until": optional(number(float)),
    "error_rate": number(float),
    "retry_after": optional(str),
    "hang_seconds": number(float),
    "malformed_json": strict_bool,
    "record_failure_rate": number(float),
    "fail_record_ids": id_set,
    "rate_limit_rps": optional(number(float)),
}


class RateLimiter:
    """A token bucket per API token: `rps` requests per second on average,
    bursts of up to max(1, rps)."""

    def __init__(self):
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)
        self._lock = threading.Lock()

    def seconds_to_wait(self, key: str, rps: float | None) -> int:
        """0 when the request may go ahead (and is counted), else whole seconds to wait."""
        if not rps or rps <= 0:
            return 0
        now = time.monotonic()
        capacity = max(1.0, rps)
        with self._lock:
            tokens, when = self._buckets.get(key, (capacity, now))
            tokens = min(capacity, tokens + (now - when) * rps)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0
            self._buckets[key] = (tokens, now)
        return max(1, math.ceil((1 - tokens) / rps))

    def clear(self) -> None:
        with self._lock:
            self._buckets.clear()
