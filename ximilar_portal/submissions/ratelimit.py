"""The per-token request rate, shared by every worker on every machine.

The team's TeamQueue row holds the earliest moment the next request may start
(`next_slot_us`). A worker reserves the next slot with a conditional UPDATE
(compare-and-set on the value it read) and sleeps until its slot: requests
leave at most XIMILAR_RATE_LIMIT per second, spaced evenly, whatever the
number of workers. It needs nothing but the database, so it works the same on
SQLite and PostgreSQL, with any broker."""

import time

from django.conf import settings

from .models import TeamQueue

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
    rows = TeamQueue.objects.filter(team_id=team_id)
    while True:
        now_us = int(time.time() * 1_000_000)
        current = rows.values_list("next_slot_us", flat=True).first()
        if current is None:
            queue_row(team_id)
            continue
        slot = max(now_us, current)
        wait = (slot - now_us) / 1_000_000
        if wait > MAX_WAIT_SECONDS:
            return -wait
        if rows.filter(next_slot_us=current).update(next_slot_us=slot + interval_us):
            return wait
