from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_http_methods, require_POST

from ximilar_portal.accounts.decorators import team_view
from ximilar_portal.lib.forms import bound_data
from ximilar_portal.submissions import selectors as submission_selectors
from ximilar_portal.submissions.forms import SubmitForm

from . import selectors, services
from .forms import BulkEditForm, DeleteForm, RecordFieldsForm, RecordForm
from .uploads import capped_uploads

LIST_LIMIT = 200


@team_view()
def record_list(request):
    records = selectors.records_for_team(team=request.team)[:LIST_LIMIT]
    return render(request, "records/list.html", {"records": records, "bulk_form": BulkEditForm()})


def _form_with_problem(request, problem):
    """The body was cut short: keep what was typed, say only what went wrong."""
    form = RecordForm(request.POST)
    form.full_clean()
    form.errors.clear()
    form.add_error("image", problem)
    return render(request, "records/new.html", {"form": form}, status=400)


@team_view(write=True)
@capped_uploads(max_bytes=lambda: settings.UPLOAD_MAX_BYTES, on_problem=_form_with_problem)
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
                allow_duplicate=data.get("allow_duplicate", False),
            )
        except services.DuplicateId as error:
            form.add_error("ximilar_id", str(error))
        except services.DuplicateContent as duplicate:
            form.add_error(None, str(duplicate))
            return render(request, "records/new.html", {"form": form, "duplicate": duplicate})
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
        "pending": any(not job.is_final for job in jobs) or record.preview == "pending",
        "submit_form": SubmitForm(team=request.team),
    }
    return render(request, "records/detail.html", context)


@team_view(write=True)
def record_edit(request, pk):
    record = selectors.record_get(team=request.team, pk=pk)  # outsiders: 404 on any method
    form = RecordFieldsForm(*bound_data(request), initial=RecordFieldsForm.initial_for(record))
    if request.method == "POST" and form.is_valid():
        try:
            services.record_update(record=record, fields=form.cleaned_data)
        except services.DuplicateId as error:
            form.add_error("ximilar_id", str(error))
        else:
            messages.success(request, "Record updated.")
            return redirect(record)
    return render(request, "records/edit.html", {"form": form, "record": record})


@team_view(write=True)
def record_delete(request, pk):
    record = selectors.record_get(team=request.team, pk=pk)  # outsiders: 404 on any method
    if request.method == "POST":
        services.records_delete(records=selectors.records_selected(team=request.team, ids=[pk]))
        messages.success(request, f"Record “{record.ximilar_id}” deleted.")
        return redirect("records:list")
    return render(request, "records/delete.html", {"records": [record], "single": record})


@team_view(write=True)
@require_POST
def records_bulk(request):
    """The list page's one form: edit, delete or send the selected records."""
    action = request.POST.get("action")
    if action == "send":
        return _send_selected(request)
    if action == "delete":
        return _delete_selected(request)
    form = BulkEditForm(request.POST)
    if not form.is_valid():
        for error in form.errors.values():
            messages.error(request, " ".join(error))
        return redirect("records:list")
    data = form.cleaned_data
    count = services.records_bulk_update(
        records=selectors.records_selected(team=request.team, ids=data["record"]),
        category=data["category"] if data["set_category"] else None,
        add_tags=data["add_tags"],
        remove_tags=data["remove_tags"],
    )
    messages.success(request, f"{count} record{'s' if count != 1 else ''} updated.")
    return redirect("records:list")


def _send_selected(request):
    form = DeleteForm(request.POST)  # only its `record` list is used
    if not form.is_valid():
        messages.error(request, "Select at least one record to send.")
        return redirect("records:list")
    ids = selectors.records_selected(team=request.team, ids=form.cleaned_data["record"])
    query = urlencode([("record", pk) for pk in ids.values_list("pk", flat=True)])
    try:
        return redirect(reverse("submissions:new") + "?" + query)
    except NoReverseMatch:
        messages.error(request, "Sending a selection is not available yet.")
        return redirect("records:list")


def _delete_selected(request):
    form = DeleteForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Select at least one record to delete.")
        return redirect("records:list")
    records = selectors.records_selected(team=request.team, ids=form.cleaned_data["record"])
    if not form.cleaned_data["confirm"]:
        return render(request, "records/delete.html", {"records": records.order_by("-pk")})
    count = services.records_delete(records=records)
    messages.success(request, f"{count} record{'s' if count != 1 else ''} deleted.")
    return redirect("records:list")


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
