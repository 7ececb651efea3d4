from django.contrib import messages
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from ximilar_portal.accounts.decorators import team_view
from ximilar_portal.lib.forms import bound_data
from ximilar_portal.submissions import selectors as submission_selectors
from ximilar_portal.submissions.forms import SubmitForm

from . import selectors, services
from .forms import RecordForm


@team_view()
def record_list(request):
    records = selectors.records_for_team(team=request.team)[:200]
    return render(request, "records/list.html", {"records": records})


@team_view(write=True)
@require_http_methods(["GET", "POST"])
def record_new(request):
    form = RecordForm(*bound_data(request, files=True))
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            record = services.record_create(
                team=request.team,
                user=request.user,
                fields=data,
                image=data.get("image"),
                url=data.get("url") or "",
            )
        except services.DuplicateId as error:
            form.add_error("ximilar_id", str(error))
        else:
            messages.success(request, "Record saved.")
            return redirect(record)
    return render(request, "records/new.html", {"form": form})


@team_view()
def record_detail(request, pk):
    record = selectors.record_get(team=request.team, pk=pk)
    jobs = list(submission_selectors.jobs_for_record(record=record)[:20])
    context = {
        "record": record,
        "results": submission_selectors.results_for_record(record=record)[:20],
        "jobs": jobs,
        "pending": any(not job.is_final for job in jobs),
        "submit_form": SubmitForm(),
    }
    return render(request, "records/detail.html", context)


@team_view()
def record_file(request, pk, kind):
    """Images are served through the team check, never from a public folder, and
    always as what they were detected to be (nosniff is set globally)."""
    record = selectors.record_get(team=request.team, pk=pk)
    field = record.thumbnail if kind == "thumbnail" else record.image
    if not field:
        raise Http404("No stored image")
    content_type = "image/webp" if kind == "thumbnail" else _mime(record.image_format)
    response = FileResponse(field.open("rb"), content_type=content_type)
    response["Cache-Control"] = "private, max-age=3600"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


def _mime(image_format):
    return {
        "JPEG": "image/jpeg",
        "PNG": "image/png",
        "WEBP": "image/webp",
        "GIF": "image/gif",
        "BMP": "image/bmp",
        "TIFF": "image/tiff",
        "HEIC": "image/heic",
    }.get(image_format, "application/octet-stream")
