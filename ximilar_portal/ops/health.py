"""The checks behind /healthz and the top of the operations page. Each is cheap:
one `SELECT 1`, one broker connection with a short timeout, one read of the
few heartbeat rows. Nothing in them names a team, a host or a secret."""

import logging

from django.conf import settings
from django.db import connection
from django.utils import timezone

from . import broker, selectors

log = logging.getLogger(__name__)

CHECKS = ("database", "broker", "beat", "workers")


def database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as error:
        log.warning("ops.database_unreachable error=%r", error)
        return False
    return True


def heartbeat_checks(now) -> dict:
    """beat: some queue's heartbeat ran within HEALTH_HEARTBEAT_MAX_AGE (beat is
    sending them and a worker runs them); workers: each queue's did."""
    max_age = settings.HEALTH_HEARTBEAT_MAX_AGE
    try:
        seen = selectors.heartbeats()
    except Exception as error:
        log.warning("ops.heartbeats_unreadable error=%r", error)
        seen = {}
    queues = {}
    for kind in settings.WORK_QUEUES:
        age = (now - seen[kind]).total_seconds() if kind in seen else None
        queues[kind] = {"ok": age is not None and age <= max_age, "age_seconds": _round(age)}
    ages = [queue["age_seconds"] for queue in queues.values() if queue["age_seconds"] is not None]
    youngest = min(ages, default=None)
    return {
        "beat": {
            "ok": youngest is not None and youngest <= max_age,
            "age_seconds": youngest,
            "max_age_seconds": max_age,
        },
        "workers": {"ok": all(queue["ok"] for queue in queues.values()), "queues": queues},
    }


def _round(seconds):
    return None if seconds is None else round(seconds, 1)


def health_report(only=CHECKS) -> dict:
    """{"status": "ok" | "unhealthy", "failed": [names], "checks": {...}} for
    the checks named in `only`."""
    checks = {}
    if "database" in only:
        checks["database"] = {"ok": database_ok()}
    if "broker" in only:
        checks["broker"] = {"ok": broker.broker_reachable()}
    if "beat" in only or "workers" in only:
        beats = heartbeat_checks(timezone.now())
        checks.update({name: beats[name] for name in ("beat", "workers") if name in only})
    failed = [name for name, check in checks.items() if not check["ok"]]
    return {"status": "unhealthy" if failed else "ok", "failed": failed, "checks": checks}
