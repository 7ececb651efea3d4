"""Faults a person cannot fix by changing what they sent: a database lock held
by someone else, a media storage that refuses writes, and no image decode slot
free in time. Each answers 503 with
Retry-After and a page (or JSON for the upload script) that says nothing was
saved; the writes are ordered so that this is true (see lib/storage.py).

A web request waits DATABASE_WEB_LOCK_TIMEOUT seconds for a lock, not the
workers' 30 s: on SQLite through the connection's busy timeout, on PostgreSQL
through `lock_timeout`, both set for the request and restored after it.
"""

import logging
import math
import sys
from contextlib import contextmanager

from django.conf import settings
from django.db import OperationalError, connection
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.views import defaults

from .images import ImageBusy
from .storage import StorageUnavailable

log = logging.getLogger(__name__)

SQLITE_LOCKED = ("database is locked", "database table is locked")
# lock_not_available (lock_timeout), deadlock_detected, serialization_failure
POSTGRES_BUSY = {"55P03", "40P01", "40001"}
STORAGE_RETRY_AFTER = 30
DATABASE_BUSY = "The database is busy: nothing was saved. Try again in a few seconds."


def database_busy(error) -> bool:
    if not isinstance(error, OperationalError):
        return False
    if getattr(error.__cause__, "sqlstate", None) in POSTGRES_BUSY:
        return True
    return any(text in str(error).lower() for text in SQLITE_LOCKED)


def fault_response(request, error):
    """The 503 for a fault the person can only wait out, or None."""
    if database_busy(error):
        wait, message = math.ceil(settings.DATABASE_WEB_LOCK_TIMEOUT) or 1, DATABASE_BUSY
    elif isinstance(error, StorageUnavailable):
        wait, message = STORAGE_RETRY_AFTER, str(error)
    elif isinstance(error, ImageBusy):
        wait, message = error.retry_after, error.message
    else:
        return None
    log.warning("fault.unavailable path=%s error=%r", request.path, error)
    if "application/json" in request.headers.get("Accept", ""):
        response = JsonResponse({"status": "unavailable", "message": message}, status=503)
    else:  # no request context: its processors would query the busy database
        response = HttpResponse(render_to_string("503.html", {"message": message}), status=503)
    response["Retry-After"] = str(wait)
    return response


class FaultMiddleware:
    """Shorter lock waits for people, and 503 for the faults above."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with web_lock_timeout():
            return self.get_response(request)

    def process_exception(self, request, exception):
        return fault_response(request, exception)


def server_error(request):
    """handler500: the same 503 for a fault raised outside a view (a session
    saved by its middleware), Django's 500 page for everything else."""
    return fault_response(request, sys.exc_info()[1]) or defaults.server_error(request)


@contextmanager
def web_lock_timeout():
    """Set before the request's first query (a request that never queries opens
    no connection), restored after its last."""
    seconds = settings.DATABASE_WEB_LOCK_TIMEOUT
    if connection.vendor == "sqlite":
        start = f"PRAGMA busy_timeout = {int(seconds * 1000)}"
        restore = f"PRAGMA busy_timeout = {int(_sqlite_timeout() * 1000)}"
    elif connection.vendor == "postgresql":
        start, restore = f"SET lock_timeout = {int(seconds * 1000)}", "RESET lock_timeout"
    else:  # pragma: no cover - the portal runs on SQLite or PostgreSQL
        yield
        return
    used = []

    def first_query_sets_the_wait(execute, sql, params, many, context):
        if not used:
            used.append(True)
            context["cursor"].execute(start)
        return execute(sql, params, many, context)

    try:
        with connection.execute_wrapper(first_query_sets_the_wait):
            yield
    finally:
        if used and connection.connection is not None and not connection.needs_rollback:
            with connection.cursor() as cursor:
                cursor.execute(restore)


def _sqlite_timeout() -> float:
    return connection.settings_dict.get("OPTIONS", {}).get("timeout", 5)
