from django.conf import settings
from django.contrib import messages
from django.http import FileResponse, Http404, QueryDict, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from ximilar_portal.accounts.decorators import team_view
from ximilar_portal.records.selectors import record_get

from . import insights, pages, selectors, services
from .exports import CONTENT_TYPES, export_stream
from .forms import EXPORT_FORMATS, ExportForm, SavedViewForm
from .models import ExportState

COUNT_CAP = 1000
INLINE_EXPORT_ROWS = getattr(settings, "HISTORY_EXPORT_INLINE_ROWS", 50_000)


@team_view()
@require_GET
def history_list(request):
    services.summary_sync(team=request.team)
    view = pages.filtered(request, request.GET)
    context = {
        **view,
        "saved_views": selectors.saved_views_visible(team=request.team, user=request.user),
    }
    context["formats"] = EXPORT_FORMATS
    context["save_form"] = SavedViewForm(initial={"query": view["query"]})
    if view["qs"] is not None:
        page = selectors.page_of(
            view["qs"],
            sort=view["sort"],
            after=request.GET.get("after", ""),
            before=request.GET.get("before", ""),
        )
        pages.for_cards(page["rows"])
        context["page"] = page
        context["count"] = _count(request, view["qs"], page)
    return render(request, "history/list.html", context)


def _count(request, qs, page):
    """(count, more than that?) or None. A single page counts itself; beyond
    that the count (capped) is made only when asked for: it costs more than
    the page it would be shown on."""
    first = not request.GET.get("after") and not request.GET.get("before")
    if first and not page["next"]:
        return len(page["rows"]), False
    if request.GET.get("count") == "1":
        return selectors.count_capped(qs, cap=COUNT_CAP)
    return None


@team_view()
@require_GET
def history_insights(request):
    services.summary_sync(team=request.team)
    view = pages.filtered(request, request.GET)
    if view["qs"] is not None:
        view["insights"] = insights.insights_for(view["qs"])
    return render(request, "history/insights.html", view)


@team_view()
@require_POST
def history_export(request):
    form = ExportForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose an export format.")
        return redirect("history:list")
    fmt, query, ids = (form.cleaned_data[k] for k in ("format", "query", "ids"))
    view = pages.filtered(request, QueryDict(query))
    if view["qs"] is None:
        messages.error(request, "Fix the filters before exporting.")
        return redirect(reverse("history:list") + "?" + query)
    qs = view["qs"] if not ids else view["qs"].filter(record_id__in=ids)
    rows, more = selectors.count_capped(qs, cap=INLINE_EXPORT_ROWS)
    if more:
        export, reused = services.export_create(
            team=request.team, user=request.user, fmt=fmt, query=query, record_ids=ids
        )
        messages.success(request, _export_message(export, reused))
        return redirect(reverse("history:exports") + f"#export-{export.pk}")
    services.export_audit(
        team=request.team, user=request.user, fmt=fmt, query=query, record_ids=ids, rows=rows
    )
    response = StreamingHttpResponse(
        export_stream(selectors.ordered(qs, view["sort"]), fmt), content_type=CONTENT_TYPES[fmt]
    )
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="history-{stamp}.{fmt}"'
    return response


def _export_message(export, reused) -> str:
    if reused:
        return (
            f"The same export (#{export.pk}) is already {export.get_state_display().lower()}: "
            "you will find its file here, no need for a second one."
        )
    if export.state == ExportState.WAITING:
        limit = settings.EXPORT_MAX_RUNNING_PER_TEAM
        return (
            f"That is a large export (#{export.pk}). Your team already has {limit} exports "
            "running: it waits its turn and starts as soon as one of them is finished."
        )
    return f"That is a large export (#{export.pk}): it is being written in the background."


@team_view()
@require_GET
def export_list(request):
    exports = selectors.exports_recent(team=request.team)
    pending = any(e.state in services.OPEN_STATES for e in exports)
    context = {
        "exports": exports,
        "pending": pending,
        "limit": settings.EXPORT_MAX_RUNNING_PER_TEAM,
    }
    return render(request, "history/exports.html", context)


@team_view()
def export_download(request, pk):
    export = selectors.export_get(team=request.team, pk=pk)
    if export.state != ExportState.DONE or not export.file:
        raise Http404("This export is not ready.")
    services.export_audit(
        team=request.team,
        user=request.user,
        fmt=export.format,
        query=export.query,
        record_ids=export.record_ids,
        rows=export.rows,
        export_id=export.pk,
    )
    name = f"history-{export.created_at:%Y%m%d-%H%M%S}.{export.format}"
    response = FileResponse(export.file.open("rb"), as_attachment=True, filename=name)
    response["Content-Type"] = CONTENT_TYPES[export.format]
    return response


@team_view()
def record_history(request, pk):
    record = record_get(team=request.team, pk=pk)
    return render(request, "history/record.html", pages.record_context(record))


@team_view()
@require_GET
def submission_list(request):
    return render(request, "history/submissions.html", pages.submissions_context(request))


@team_view()
@require_POST
def view_create(request):
    form = SavedViewForm(request.POST)
    if not form.is_valid():
        messages.error(request, "A saved view needs a name.")
        return redirect(reverse("history:list") + "?" + request.POST.get("query", ""))
    view = services.saved_view_create(team=request.team, user=request.user, **form.cleaned_data)
    messages.success(request, f"Saved the view “{view.name}”.")
    return redirect(reverse("history:list") + "?" + view.query)


@team_view()
def view_update(request, pk):
    view = pages.saved_view_owned(request, pk)
    if request.method != "POST":
        return redirect(reverse("history:list") + "?" + view.query)
    form = SavedViewForm(request.POST)
    if form.is_valid():
        services.saved_view_update(view=view, **form.cleaned_data)
        messages.success(request, f"Updated the view “{view.name}”.")
    else:
        messages.error(request, "A saved view needs a name.")
    return redirect(reverse("history:list") + "?" + view.query)


@team_view()
def view_delete(request, pk):
    view = pages.saved_view_owned(request, pk)
    if request.method != "POST":
        return redirect(reverse("history:list") + "?" + view.query)
    services.saved_view_delete(view=view)
    messages.success(request, f"Deleted the view “{view.name}”.")
    return redirect("history:list")
