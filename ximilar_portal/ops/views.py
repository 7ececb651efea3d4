from django.conf import settings
from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from . import broker, health, selectors


@never_cache
@require_safe
def healthz(request):
    """For load balancers and monitors: 200 when every check named by `?check=`
    (all of them by default) passes, 503 naming the failed ones otherwise."""
    names = request.GET.getlist("check") or health.CHECKS
    if any(name not in health.CHECKS for name in names):
        return JsonResponse({"error": "unknown check", "checks": health.CHECKS}, status=400)
    report = health.health_report(only=names)
    response = JsonResponse(report, status=200 if report["status"] == "ok" else 503)
    # Not django.request's "Service Unavailable" error (an e-mail to ADMINS) for
    # every probe while something is down: each failed check logs a warning.
    response._has_been_logged = True
    return response


@never_cache
@require_safe
def ops_page(request):
    if not request.user.is_staff:
        raise Http404
    now = timezone.now()
    report = health.health_report()
    depths = broker.queue_depths()
    queues = [
        {
            "kind": kind,
            "name": name,
            "depth": depths[kind],
            **report["checks"]["workers"]["queues"][kind],
        }
        for kind, name in settings.WORK_QUEUES.items()
    ]
    rate_rows, teams_left_out = selectors.rate_limits(now)
    context = {
        "now": now,
        "report": report,
        "queues": queues,
        "max_age": settings.HEALTH_HEARTBEAT_MAX_AGE,
        "oldest": selectors.oldest_waiting_job(),
        "waiting": selectors.waiting_count(),
        "services": selectors.last_hour_by_service(now),
        "reasons": selectors.failure_reasons(now),
        "rate_rows": rate_rows,
        "teams_left_out": teams_left_out,
        "quarantine": broker.quarantined(),
    }
    return render(request, "ops/page.html", context)
