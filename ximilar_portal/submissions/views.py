from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import redirect, render

from ximilar_portal.accounts.decorators import team_view
from ximilar_portal.accounts.models import Credential
from ximilar_portal.records.selectors import record_get

from . import selectors, services
from .forms import SubmitForm


@team_view(write=True)
def submit_record(request, record_pk):
    record = record_get(team=request.team, pk=record_pk)
    if request.method != "POST":
        return redirect(record)
    if not Credential.objects.filter(team=request.team).exists():
        messages.error(request, "Save the team's Ximilar API token first.")
        return redirect("accounts:token")
    form = SubmitForm(request.POST)
    if not form.is_valid():
        for error in form.errors.values():
            messages.error(request, error[0])
        return redirect(record)
    services.submission_create(
        team=request.team,
        user=request.user,
        records=[record],
        service=form.cleaned_data["service"],
        options=form.options(),
    )
    messages.success(request, "Sent to the queue. The result appears here when it is ready.")
    return redirect(record)


@team_view()
def submission_detail(request, pk):
    submission = selectors.submission_get(team=request.team, pk=pk)
    counts = selectors.job_counts(submission=submission)
    if request.headers.get("Accept") == "application/json":
        return JsonResponse({"id": submission.pk, "counts": counts})
    jobs = submission.jobs.select_related("record")[:500]
    context = {"submission": submission, "counts": counts, "jobs": jobs}
    return render(request, "submissions/detail.html", context)
