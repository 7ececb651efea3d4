"""What the history pages put in front of the templates: the filter form read
from a query string, and the contexts of the record and submissions pages."""

from itertools import groupby

from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q
from django.template.defaultfilters import floatformat, truncatechars
from django.urls import reverse

from ximilar_portal.accounts.models import Membership
from ximilar_portal.submissions.models import RecordJob, Result, Submission

from . import answers, selectors
from .forms import HistoryFilterForm

# Per-request only: never part of a shared link, a saved view or an export.
PAGE_PARAMS = ("after", "before", "count")


def team_members(team):
    memberships = (
        Membership.objects.filter(team=team).select_related("user").order_by("user__email")
    )
    return [m.user for m in memberships]


def filtered(request, data) -> dict:
    """The filter form over `data` and, when it is valid, the team's matching
    summaries (unordered; `sort` says how to order them)."""
    form = HistoryFilterForm(data, members=team_members(request.team))
    params = data.copy()
    for name in PAGE_PARAMS:
        params.pop(name, None)
    view = {"form": form, "qs": None, "sort": "newest", "layout": "grid"}
    view["query"] = params.urlencode()
    view["links"] = _links(params)
    if form.is_valid():
        view["sort"], view["layout"] = form.cleaned_data["sort"], form.cleaned_data["layout"]
        view["filters"] = form.active_filters()
        view["qs"] = selectors.summaries_filtered(team=request.team, filters=view["filters"])
    return view


def _links(params) -> dict:
    """URLs of the same view with one thing changed (layout), and the base the
    page links add their cursor to."""

    def with_(**changes):
        changed = params.copy()
        for name, value in changes.items():
            changed[name] = value
        return "?" + changed.urlencode()

    base = params.urlencode()
    return {
        "grid": with_(layout="grid"),
        "table": with_(layout="table"),
        "page_base": "?" + (base + "&" if base else ""),
        "insights": reverse("history:insights") + "?" + base,
        "list": reverse("history:list") + "?" + base,
    }


def for_cards(rows) -> list:
    """What a card or table row shows, computed once per page in Python: the
    URLs (reversed once, not three times per card), the short id, the
    probability and status texts (template filters and lookups per card were
    most of the page's rendering time)."""
    page, thumbnail = (
        reverse(name, args=[0]).replace("/0/", "/{}/")
        for name in ("history:record", "records:thumbnail")
    )
    for row in rows:
        row.page_url = page.format(row.record_id)
        row.thumbnail_url = thumbnail.format(row.record_id)
        row.short_id = truncatechars(row.ximilar_id, 28)
        row.prob_text = floatformat(row.best_prob, 2) if row.has_prob else ""
        row.status_label = row.get_status_display() if row.status else "Not sent"
        row.chips = [tag["name"] for tag in row.top_tags[:3]]
    return rows


def record_context(record) -> dict:
    # By record alone, then the team checked on each row: with `team_id` in
    # the WHERE too, SQLite (no planner statistics) walks the team's index,
    # a third of a million rows, instead of the record's (250 ms at 1M).
    results = [
        result
        for result in Result.objects.filter(record=record)
        .select_related("job__submission__created_by")
        .order_by("service", "-created_at", "-id")
        if result.team_id == record.team_id
    ]
    by_service = [
        (service, list(group)) for service, group in groupby(results, lambda r: r.service)
    ]
    jobs = [
        job
        for job in RecordJob.objects.filter(record=record)
        .select_related("submission__created_by")
        .order_by("-id")[:100]
        if job.team_id == record.team_id
    ]
    return {
        "record": record,
        "summary": getattr(record, "summary", None),
        "results_by_service": by_service,
        "jobs": jobs,
        "searches": answers.searches_for_record(record=record),
        "similar_url": answers.more_like_this_url(record.pk),
    }


def submissions_context(request) -> dict:
    before = request.GET.get("before", "")
    qs = Submission.objects.filter(team=request.team).select_related("created_by")
    if before.isdigit():
        qs = qs.filter(pk__lt=int(before))
    submissions = list(
        qs.order_by("-id").annotate(
            total=Count("jobs"),
            done=Count("jobs", filter=Q(jobs__state="done")),
            failed=Count("jobs", filter=Q(jobs__state="failed")),
            waiting=Count("jobs", filter=Q(jobs__state__in=["queued", "sending"])),
            blocked=Count("jobs", filter=Q(jobs__state="blocked")),
        )[:51]
    )
    more = len(submissions) > 50
    submissions = submissions[:50]
    return {"submissions": submissions, "older": submissions[-1].pk if more else None}


def saved_view_owned(request, pk):
    """A saved view the user may change: their own, or a shared one when they
    manage the team. Others' personal views do not exist for them (404)."""
    view = selectors.saved_view_get(team=request.team, user=request.user, pk=pk)
    if view.owner_id != request.user.pk and not request.membership.can_manage:
        raise PermissionDenied("Only its owner can change this view.")
    return view
