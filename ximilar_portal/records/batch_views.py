"""Pages that bring many records in: files (one request each), URL lists and imports."""

from django.conf import settings
from django.contrib import messages
from django.forms import ValidationError
from django.http import HttpResponseNotAllowed, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from ximilar_portal.accounts.decorators import team_view
from ximilar_portal.lib.forms import bound_data

from . import batches, selectors
from .forms import ImportForm, SharedFieldsForm, UrlListForm, check_image_upload
from .models import BatchKind, BatchState, ItemStatus, Preview
from .uploads import capped_uploads

RECENT_BATCHES = 10


@team_view(write=True)
@require_http_methods(["GET", "POST"])
def upload_start(request):
    form = SharedFieldsForm(*bound_data(request))
    if request.method == "POST" and form.is_valid():
        batch = batches.batch_create(
            team=request.team, user=request.user, kind=BatchKind.FILES, shared=form.cleaned_data
        )
        return redirect(batch)
    recent = selectors.batches_for_team(team=request.team)[:RECENT_BATCHES]
    return render(request, "records/upload.html", {"form": form, "recent": recent})


@team_view()
def batch_detail(request, pk):
    batch = selectors.batch_get(team=request.team, pk=pk)
    context = {"batch": batch, "counts": selectors.batch_counts(batch=batch)}
    if batch.kind == BatchKind.IMPORT:
        context["problems"], context["accepted"] = selectors.batch_preview_rows(batch=batch)
    else:
        context["items"] = selectors.batch_items(batch=batch)
        context["pending_previews"] = batch.records.filter(preview=Preview.PENDING).exists()
    context["max_files"] = settings.UPLOAD_BATCH_MAX_FILES
    context["max_mb"] = settings.UPLOAD_MAX_BYTES // (1024 * 1024)
    return render(request, "records/batch.html", context)


def _file_problem(request, problem):
    return JsonResponse({"status": "rejected", "message": problem}, status=400)


@team_view(write=True)
@capped_uploads(max_bytes=lambda: settings.UPLOAD_MAX_BYTES, on_problem=_file_problem)
def batch_file(request, pk):
    """One file of a batch. The answer is JSON for the upload page's script."""
    batch = selectors.batch_get(team=request.team, pk=pk)  # outsiders: 404 on any method
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    upload = request.FILES.get("file")
    if batch.kind != BatchKind.FILES or upload is None:
        message = "Send one image as the `file` field of an open file upload."
        return JsonResponse({"status": "rejected", "message": message}, status=400)
    image, problem = None, ""
    try:
        image = check_image_upload(upload)
    except ValidationError as error:
        problem = " ".join(error.messages)
    item = batches.batch_add_file(
        batch=batch,
        user=request.user,
        name=upload.name,
        image=image,
        problem=problem,
        allow_duplicate=request.POST.get("allow_duplicate") == "1",
    )
    return JsonResponse(_item_json(item), status=_ITEM_STATUS[item.status])


_ITEM_STATUS = {ItemStatus.ACCEPTED: 201, ItemStatus.DUPLICATE: 200, ItemStatus.REJECTED: 422}


def _item_json(item) -> dict:
    answer = {"status": item.status, "message": item.message, "name": item.name}
    if item.record_id:
        answer["record_url"] = reverse("records:detail", args=[item.record_id])
        answer["record_id"] = item.record.ximilar_id
        if item.record.thumbnail:
            answer["thumbnail_url"] = reverse("records:thumbnail", args=[item.record_id])
    if item.duplicate_of_id:
        answer["duplicate_url"] = reverse("records:detail", args=[item.duplicate_of_id])
    return answer


@team_view(write=True)
@require_http_methods(["GET", "POST"])
def url_list(request):
    form = UrlListForm(*bound_data(request))
    if request.method == "POST" and form.is_valid():
        batch = batches.batch_create(
            team=request.team, user=request.user, kind=BatchKind.URLS, shared=form.cleaned_data
        )
        batches.batch_add_urls(batch=batch, user=request.user, urls=form.cleaned_data["urls"])
        return redirect(batch)
    return render(request, "records/urls.html", {"form": form})


def _import_problem(request, problem):
    form = ImportForm()
    return render(request, "records/import.html", {"form": form, "problem": problem}, status=400)


@team_view(write=True)
@capped_uploads(max_bytes=lambda: settings.IMPORT_MAX_BYTES, on_problem=_import_problem)
@require_http_methods(["GET", "POST"])
def import_start(request):
    form = ImportForm(*bound_data(request, files=True))
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        batch = batches.import_start(
            team=request.team,
            user=request.user,
            name=upload.name,
            data=upload.read(),
            allow_duplicates=form.cleaned_data["allow_duplicates"],
        )
        return redirect(batch)
    return render(request, "records/import.html", {"form": form})


@team_view(write=True)
def import_confirm(request, pk):
    batch = selectors.batch_get(team=request.team, pk=pk)
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if batch.kind != BatchKind.IMPORT or batch.state != BatchState.PREVIEW:
        messages.error(request, "This import is not waiting for a confirmation.")
        return redirect(batch)
    batches.import_confirm(batch=batch)
    batch.refresh_from_db()
    if batch.state == BatchState.DONE:
        messages.success(request, f"{batch.records.count()} records imported.")
    return redirect(batch)
