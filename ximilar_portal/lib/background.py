"""Handing background work to the broker without trusting it.

The database holds every piece of background work in a waiting state (a URL
record's preview "pending", an import "checking rows" or "importing", an export
"running") with a lease column: in the past, when it was last handed to the
broker; in the future, until when a worker holds it. `enqueue` never raises: a
broker that is down leaves the work waiting, and the app's sweeper hands it
over again once its lease is older than BACKGROUND_SWEEP_GRACE_SECONDS.
"""

import functools
import logging
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone

log = logging.getLogger(__name__)

LEASE = "lease_until"
# A sweep hands over at most this many items a tick; the rest wait for the next.
SWEEP_LIMIT = 500


def enqueue(task, *args, countdown: float | None = None) -> bool:
    """Send one task; False (logged) when the broker cannot take it."""
    try:
        task.apply_async(args, countdown=countdown)
    except Exception as error:
        log.warning(
            "queue.enqueue_failed task=%s args=%s error=%r (the sweeper hands it over again)",
            task.name,
            args,
            error,
        )
        return False
    return True


def enqueue_on_commit(task, *args) -> None:
    """Send the task once the rows it reads are committed."""
    transaction.on_commit(lambda: enqueue(task, *args))


def periodic(function):
    """For periodic tasks: a locked or unreachable database is logged and the
    task returns; beat runs it again at the next tick."""

    @functools.wraps(function)
    def tick(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except DatabaseError as error:
            log.warning("periodic.skipped task=%s error=%r (next tick)", function.__name__, error)
            return None

    return tick


def claim(queryset, field: str = LEASE) -> bool:
    """Take the work for this worker unless another worker holds it: a copy of
    the task delivered twice (or handed over again by the sweeper) does nothing."""
    now = timezone.now()
    free = Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__lte": now})
    return queryset.filter(free).update(**{field: _held_until(now)}) > 0


def held(field: str = LEASE) -> dict:
    """The update that keeps holding work a worker is still on (long imports
    and exports renew it as they go)."""
    return {field: _held_until(timezone.now())}


def release(queryset, field: str = LEASE) -> None:
    """A worker gives the work back unfinished: swept again after the grace period."""
    queryset.update(**{field: timezone.now()})


def mark_handed_over(queryset, field: str = LEASE) -> int:
    """Waiting work just given to the broker (or still in a worker's to-do
    list): the sweeper leaves it alone for the grace period."""
    now = timezone.now()
    free = Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__lte": now})
    return queryset.filter(free).update(**{field: now})


def stale(queryset, field: str = LEASE):
    """Waiting work nobody holds and no broker delivered within the grace period."""
    since = timezone.now() - timedelta(seconds=settings.BACKGROUND_SWEEP_GRACE_SECONDS)
    return queryset.filter(Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__lt": since}))


def hand_over_again(queryset, task, *, field: str = LEASE, by: str = "pk") -> int:
    """The sweep: the stale items of `queryset`, one task per value of `by`
    (a record, or a whole batch), are stamped (one sweeper wins each) and sent
    again; it stops at the first refusal, the broker being still down.
    Returns how many tasks were sent."""
    values = stale(queryset, field).order_by().values_list(by, flat=True).distinct()
    sent = 0
    for value in list(values[:SWEEP_LIMIT]):
        if not stale(queryset.filter(**{by: value}), field).update(**{field: timezone.now()}):
            continue  # another sweeper, or a worker, took it meanwhile
        if not enqueue(task, value):
            break
        sent += 1
    return sent


def _held_until(now):
    return now + timedelta(seconds=settings.BACKGROUND_LEASE_SECONDS)
