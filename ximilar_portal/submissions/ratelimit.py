"""The per-token request rate, shared by every worker on every machine.

The team's TeamQueue row holds the earliest moment the next request may start
(`next_slot_us`). A worker reserves the next slot with one UPDATE ... RETURNING
(SQLite 3.35+ and PostgreSQL) and sleeps until its slot: requests
leave at most XIMILAR_RATE_LIMIT per second, spaced evenly, whatever the
number of workers. It needs nothing but the database, so it works the same on
SQLite and PostgreSQL, with any broker.

A slot that nobody took on time (every worker busy at that moment) can still
be taken a few slots late (`catch_up_slots`). Without that, each such moment
was lost for good: a limit of 60/s came out as 55-58 requests/s on a busy
machine. Idle time is never banked beyond those few slots."""

import logging
import time

from django.conf import settings
from django.db import connection

from .models import TeamQueue

log = logging.getLogger(__name__)

# A worker does not hold a batch for longer than this waiting for its slot: it
# puts the records back with next_attempt_at at the slot instead.
MAX_WAIT_SECONDS = 10.0


def queue_row(team_id: int) -> None:
    if not TeamQueue.objects.filter(team_id=team_id).exists():
        TeamQueue.objects.get_or_create(team_id=team_id)  # safe when two race


def slot_reserve(*, team_id: int, rate: float | None = None) -> float:
    """Reserve the next request slot of the team: the seconds to wait before
    sending (0 = now). When the wait would exceed MAX_WAIT_SECONDS nothing is
    reserved and the wait is returned negated, so the caller can come back
    after that long."""
    rate = rate if rate is not None else settings.XIMILAR_RATE_LIMIT
    if not rate or rate <= 0:
        return 0.0
    interval_us = int(1_000_000 / rate)
    catch_up_us = catch_up_slots(rate) * interval_us
    while True:
        now_us = int(time.time() * 1_000_000)
        slot = _slot_take(team_id, now_us, interval_us, catch_up_us)
        if slot is not None:
            # The slot itself, not when the request left: a busy machine sends late.
            log.debug("ratelimit.slot team=%s at_us=%s", team_id, slot)
            return max(0.0, (slot - now_us) / 1_000_000)
        current = TeamQueue.objects.filter(team_id=team_id).values_list("next_slot_us", flat=True)
        if not current:
            queue_row(team_id)
            continue
        wait = (current[0] - now_us) / 1_000_000
        if wait > MAX_WAIT_SECONDS:
            return -wait


def team_throttle(*, team_id: int, seconds: float) -> int:
    """Ximilar refused the team with 429: no request of it leaves for `seconds`.
    One UPDATE that only ever moves the two moments later, so racing workers
    keep the latest end. Returns that end (microseconds)."""
    until_us = int((time.time() + seconds) * 1_000_000)
    table = connection.ops.quote_name(TeamQueue._meta.db_table)
    sql = f"""
        UPDATE {table}
        SET next_slot_us = CASE WHEN next_slot_us > %s THEN next_slot_us ELSE %s END,
            throttled_until_us = CASE WHEN throttled_until_us > %s THEN throttled_until_us
                                      ELSE %s END
        WHERE team_id = %s"""  # noqa: S608 (the table name is ours)
    queue_row(team_id)
    with connection.cursor() as cursor:
        cursor.execute(sql, [until_us, until_us, until_us, until_us, team_id])
    return until_us


def throttled_for(throttled_until_us: int | None) -> float:
    """Seconds the team must still wait after a 429 (0 when it need not)."""
    if not throttled_until_us:
        return 0.0
    return max(0.0, throttled_until_us / 1_000_000 - time.time())


def catch_up_slots(rate: float) -> int:
    """How many missed slots may still be taken: each one lets a single
    one-second window see one request more. With n of them a window sees at
    most rate + n + 1 requests (the +1: a window can start on a request), and
    one more when a request leaves late; so n = rate/10 - 2 keeps every window
    within 10 % over the rate, and there is none below 30/s."""
    return max(0, int(rate / 10) - 2)


def _slot_take(team_id: int, now_us: int, interval_us: int, catch_up_us: int) -> int | None:
    """One atomic UPDATE, so any number of workers can race for slots without
    a read-then-write retry loop: the slot is the next free slot, or a moment
    at most `catch_up_us` ago when that one has passed; the next free slot
    moves on by one interval from it. None when the team has no row or
    its next slot is further away than MAX_WAIT_SECONDS."""
    table = connection.ops.quote_name(TeamQueue._meta.db_table)
    sql = f"""
        UPDATE {table}
        SET next_slot_us = CASE WHEN next_slot_us > %s THEN next_slot_us ELSE %s END + %s
        WHERE team_id = %s AND next_slot_us <= %s
        RETURNING next_slot_us"""  # noqa: S608 (the table name is ours)
    earliest_us = now_us - catch_up_us
    latest_us = now_us + int(MAX_WAIT_SECONDS * 1_000_000)
    with connection.cursor() as cursor:
        cursor.execute(sql, [earliest_us, earliest_us, interval_us, team_id, latest_us])
        row = cursor.fetchone()
    return None if row is None else row[0] - interval_us
