from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from ximilar_portal.accounts.decorators import team_view
from ximilar_portal.accounts.models import Credential
from ximilar_portal.records.selectors import record_get

from . import actions, selectors, services
from .calls import SERVICE_KEYS, requests_needed
from .forms import SubmitForm

MAX_SELECTED_IDS = 5000
# Object actions look the object up before the method, so an outsider gets 404
# whatever the method (tests/test_isolation.py).


def _no_token(request):
    if Credential.objects.filter(team=request.team).exists():
        return None
    messages.error(request, "Save the team's Ximilar API token first.")
    return redirect("accounts:token")


@team_view(write=True)
def submit_record(request, record_pk):
    """The record page's quick form: one record, one service."""
    record = record_get(team=request.team, pk=record_pk)
    if request.method != "POST":
        return redirect(record)
    if response := _no_token(request):
        return response
    form = SubmitForm(request.POST, team=request.team)
    if not form.is_valid():
        for error in form.errors.values():
            messages.error(request, error[0])
        return redirect(record)
    _create(request, form, [record])
    messages.success(request, "Sent to the queue. The result appears here when it is ready.")
    return redirect(record)


def _selection(request):
    """(records queryset, hidden inputs that carry the selection, what it is)."""
    data = request.POST if request.method == "POST" else request.GET
    team = request.team
    if data.get("all") == "1":
        return selectors.records_selected(team=team, everything=True), [("all", "1")], "all"
    if data.get("batch", "").isdigit():
        batch = selectors.upload_batch_get(team=team, pk=int(data["batch"]))
        if batch is not None:
            records = selectors.records_selected(team=team, batch_id=batch.pk)
            return records, [("batch", batch.pk)], str(batch)
    ids = [int(v) for v in data.getlist("record") if v.isdigit()][:MAX_SELECTED_IDS]
    records = selectors.records_selected(team=team, record_ids=ids)
    return records, [("record", pk) for pk in records.values_list("pk", flat=True)], "selection"


def _initial(request) -> dict:
    """The service, and the collection when a link names one of the team's
    ("Search again from this answer" names the collection it searched)."""
    initial = {"service": request.GET.get("service", "generic_tags")}
    wanted = request.GET.get("collection", "")
    collections = selectors.collections_for_team(team=request.team)
    if wanted.isdigit() and collections.filter(pk=int(wanted)).exists():
        initial["collection"] = int(wanted)
    return initial


@team_view(write=True)
@require_http_methods(["GET", "POST"])
def submission_new(request):
    records, hidden, what = _selection(request)
    count = records.count()
    form = SubmitForm(
        request.POST if request.method == "POST" else None,
        team=request.team,
        initial=_initial(request),
    )
    if request.method == "POST" and count and form.is_valid():
        if response := _no_token(request):
            return response
        submission = _create(request, form, list(records))
        messages.success(request, f"{count} record{'s' if count != 1 else ''} sent to the queue.")
        return redirect(submission)
    context = {
        "form": form,
        "count": count,
        "hidden": hidden,
        "what": what,
        "sample": records[:12],
        "requests": {key: requests_needed(key, count) for key in SERVICE_KEYS},
        "has_collections": selectors.collections_for_team(team=request.team).exists(),
    }
    return render(request, "submissions/new.html", context, status=400 if form.errors else 200)


def _create(request, form, records):
    return services.submission_create(
        team=request.team,
        user=request.user,
        records=records,
        service=form.cleaned_data["service"],
        options=form.options(),
        collection=form.cleaned_data.get("collection"),
    )


@team_view()
def submission_list(request):
    context = {
        "submissions": selectors.submissions_with_counts(team=request.team),
        "paused": selectors.queue_paused(team=request.team),
    }
    return render(request, "submissions/list.html", context)


@team_view()
def submission_list_status(request):
    rows = selectors.submissions_with_counts(team=request.team)
    data = [{"id": s.pk, "state": s.state, "counts": s.counts} for s in rows]
    return JsonResponse({"submissions": data, "paused": selectors.queue_paused(team=request.team)})


@team_view()
def submission_detail(request, pk):
    submission = selectors.submission_get(team=request.team, pk=pk)
    progress = selectors.submission_progress(submission=submission)
    jobs = submission.jobs.select_related("record").order_by("id")[:500]
    context = {"submission": submission, "progress": progress, "jobs": jobs}
    return render(request, "submissions/detail.html", context)


@team_view()
def submission_progress(request, pk):
    submission = selectors.submission_get(team=request.team, pk=pk)
    return JsonResponse(selectors.submission_progress(submission=submission))


@team_view(write=True)
def submission_cancel(request, pk):
    submission = selectors.submission_get(team=request.team, pk=pk)
    if request.method != "POST":
        return redirect(submission)
    count = actions.submission_cancel(submission=submission, user=request.user)
    messages.success(request, f"Cancelled: {count} record{'s' if count != 1 else ''} not sent.")
    return redirect(submission)


@team_view(write=True)
@require_http_methods(["GET", "POST"])
def submission_delete(request, pk):
    submission = selectors.submission_get(team=request.team, pk=pk)
    counts = selectors.job_counts(submission=submission)
    if request.method == "POST":
        if counts["waiting"]:
            messages.error(request, "Cancel the submission first: records are still waiting.")
            return redirect(submission)
        actions.submission_delete(submission=submission, user=request.user)
        messages.success(request, f"Submission #{pk} deleted.")
        return redirect("submissions:list")
    context = {"submission": submission, "counts": counts}
    return render(request, "submissions/delete.html", context)


@team_view(write=True)
def submission_retry(request, pk):
    submission = selectors.submission_get(team=request.team, pk=pk)
    if request.method != "POST":
        return redirect(submission)
    count = actions.jobs_retry_failed(submission=submission)
    messages.success(request, f"{count} failed record{'s' if count != 1 else ''} sent again.")
    return redirect(submission)


@team_view(write=True)
def job_retry(request, pk, job_pk):
    submission = selectors.submission_get(team=request.team, pk=pk)
    job = selectors.job_get(submission=submission, pk=job_pk)
    if request.method != "POST":
        return redirect(submission)
    count = actions.jobs_retry_failed(submission=submission, job_id=job.pk)
    messages.success(request, "Record sent again." if count else "That record has not failed.")
    return redirect(submission)


@team_view(write=True)
@require_POST
def queue_toggle(request):
    if request.POST.get("action") == "resume":
        actions.team_queue_resume(team=request.team, user=request.user)
        messages.success(request, "The team's queue is running again.")
    else:
        actions.team_queue_pause(team=request.team, user=request.user)
        messages.success(request, "The team's queue is paused: nothing is sent until you resume.")
    return redirect(reverse("submissions:list"))
