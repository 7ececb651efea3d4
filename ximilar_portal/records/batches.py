"""Writes for upload batches: many files (one request each), a list of URLs,
and bulk imports (check every row first, then create them all in one go)."""

import contextlib
import logging
import time
from decimal import Decimal

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import DatabaseError, OperationalError, transaction
from django.utils import timezone

from ximilar_portal.lib import background
from ximilar_portal.lib.faults import database_busy
from ximilar_portal.lib.storage import delete_files, save_file

from . import codec, services
from .models import BatchItem, BatchKind, BatchState, ItemStatus, Preview, Record, UploadBatch

log = logging.getLogger(__name__)

# Imports up to this size are checked, and up to this many rows created, inside
# the request; larger ones go to a worker and the page shows progress.
INLINE_IMPORT_BYTES = 200_000
INLINE_COMMIT_ROWS = 2_000
PROGRESS_EVERY = 500
LOOKUP_CHUNK = 500


def batch_create(
    *, team, user, kind: str, shared: dict | None = None, source=None, **attrs
) -> UploadBatch:
    """`source` is an import's (name, bytes): stored first, and removed again
    if the row cannot be saved, so no file is kept without its batch."""
    shared = shared or {}
    batch = UploadBatch(
        team=team,
        created_by=user,
        kind=kind,
        allow_duplicates=shared.get("allow_duplicates", False),
        category=shared.get("category", ""),
        tags=shared.get("tags", []),
        fields=shared.get("custom_fields", {}),
        **attrs,
    )
    if source:
        save_file(batch.source, "import", ContentFile(source[1]))
    try:
        with transaction.atomic():
            batch.save()
    except Exception:
        delete_files(batch.source)
        raise
    log.info("records.batch_created id=%s kind=%s", batch.pk, kind)
    return batch


def _shared_fields(batch: UploadBatch) -> dict:
    return {"category": batch.category, "tags": batch.tags, "custom_fields": batch.fields}


def _add_item(batch, *, name, status, message="", record=None, duplicate_of=None) -> BatchItem:
    return BatchItem.objects.create(
        batch=batch,
        position=batch.items.count() + 1,
        name=name[:255],
        status=status,
        message=message[:500],
        record=record,
        duplicate_of=duplicate_of,
    )


# --- Files -------------------------------------------------------------------------------


def batch_add_file(
    *, batch, user, name: str, image=None, problem: str = "", allow_duplicate=False
) -> BatchItem:
    """One uploaded file of the batch: `image` is (bytes, ImageInfo) when it
    passed the checks, else `problem` says why it did not."""
    if not problem and batch.items.count() >= settings.UPLOAD_BATCH_MAX_FILES:
        problem = (
            f"This batch already has {settings.UPLOAD_BATCH_MAX_FILES} files, the most one "
            "batch takes; start a new upload for the rest."
        )
    if problem:
        return _add_item(batch, name=name, status=ItemStatus.REJECTED, message=problem)
    return _create_in_batch(
        batch,
        user,
        name=name,
        image=image,
        allow_duplicate=allow_duplicate or batch.allow_duplicates,
    )


def _create_in_batch(batch, user, *, name, image=None, url="", allow_duplicate) -> BatchItem:
    """The record and its item are saved together: never one without the other."""
    added = []
    try:
        services.record_create(
            team=batch.team,
            user=user,
            fields=_shared_fields(batch),
            image=image,
            url=url,
            batch=batch,
            allow_duplicate=allow_duplicate,
            along=lambda record: added.append(
                _add_item(batch, name=name, status=ItemStatus.ACCEPTED, record=record)
            ),
        )
    except services.DuplicateContent as duplicate:
        return _add_item(
            batch,
            name=name,
            status=ItemStatus.DUPLICATE,
            message=str(duplicate),
            duplicate_of=duplicate.existing,
        )
    return added[0]


# --- URLs ----------------------------------------------------------------------------------


def batch_add_urls(*, batch, user, urls: list[str]) -> list[BatchItem]:
    items = []
    for url in urls:
        try:
            url = codec.fields_from_ximilar({"_url": url})["image_url"]
        except codec.RowRejected as error:
            items.append(_add_item(batch, name=url, status=ItemStatus.REJECTED, message=str(error)))
            continue
        items.append(
            _create_in_batch(batch, user, name=url, url=url, allow_duplicate=batch.allow_duplicates)
        )
    return items


# --- Imports -------------------------------------------------------------------------------


def import_start(*, team, user, name: str, data: bytes, allow_duplicates: bool) -> UploadBatch:
    """Keep the file and check its rows now (small files) or in a worker."""
    batch = batch_create(
        team=team,
        user=user,
        kind=BatchKind.IMPORT,
        shared={"allow_duplicates": allow_duplicates},
        source=(name, data),
        source_name=name[:255],
        source_format=codec.detect_format(name, data),
        state=BatchState.PARSING,
        lease_until=timezone.now(),
    )
    if len(data) <= INLINE_IMPORT_BYTES:
        _inline(import_check, batch.pk)
    else:
        _enqueue("records.import_check", batch.pk)
    return batch


def _inline(step, batch_id: int) -> None:
    """A small import's step, run in the request. The batch is already saved:
    if the database is locked meanwhile, its page shows it waiting and the
    sweep has a worker finish it, rather than a 503 saying nothing was saved."""
    try:
        step(batch_id=batch_id)
    except OperationalError as error:
        if not database_busy(error):
            raise
        log.warning("records.import_left_to_sweep batch=%s error=%r", batch_id, error)
        with contextlib.suppress(DatabaseError):  # the step's hold, if it took one
            background.release(UploadBatch.objects.filter(pk=batch_id))


def _enqueue(task_name: str, batch_id: int) -> None:
    background.enqueue_on_commit(_task(task_name), batch_id)


def _task(task_name: str):
    from . import tasks  # tasks import this module

    return {
        "records.import_check": tasks.import_check,
        "records.import_commit": tasks.import_commit,
    }[task_name]


def imports_sweep() -> int:
    """Hand over again the imports left checking or importing (the broker was
    down, or lost the task) once nobody holds them."""
    sent = 0
    for state, task_name in (
        (BatchState.PARSING, "records.import_check"),
        (BatchState.IMPORTING, "records.import_commit"),
    ):
        waiting = UploadBatch.objects.filter(kind=BatchKind.IMPORT, state=state)
        sent += background.hand_over_again(waiting, _task(task_name))
    return sent


def import_check(*, batch_id: int) -> None:
    """Read every row and store it as accepted (with the record to create) or
    rejected (with the reason). Nothing is created here."""
    if not background.claim(UploadBatch.objects.filter(pk=batch_id, state=BatchState.PARSING)):
        return  # done, or another worker holds it
    batch = UploadBatch.objects.get(pk=batch_id)
    BatchItem.objects.filter(batch=batch).delete()  # a repeated delivery starts over
    with batch.source.open("rb") as source:
        data = source.read()
    try:
        items = _check_rows(batch, codec.read_rows(data, batch.source_format))
    except codec.RowRejected as error:
        _finish(batch, BatchState.FAILED, error=str(error))
        return
    _store_items(batch, items)
    _finish(batch, BatchState.PREVIEW)


def _check_rows(batch, rows) -> list[BatchItem]:
    items, seen_ids, seen_urls = [], set(), set()
    for position, row in rows:
        items.append(_check_row(position, row, seen_ids, seen_urls))
        if len(items) % PROGRESS_EVERY == 0:
            UploadBatch.objects.filter(pk=batch.pk).update(
                processed=len(items), **background.held()
            )
    _mark_existing(batch, [item for item in items if item.status == ItemStatus.ACCEPTED])
    return items


def _check_row(position, row, seen_ids, seen_urls) -> BatchItem:
    item = BatchItem(position=position, status=ItemStatus.ACCEPTED)
    try:
        if isinstance(row, Exception):
            raise row
        fields = codec.fields_from_ximilar(row)
    except codec.RowRejected as error:
        item.status, item.message = ItemStatus.REJECTED, str(error)
        item.name = _row_name(row)
        return item
    item.name = fields["image_url"][:255]
    if fields["ximilar_id"] in seen_ids:
        item.status = ItemStatus.REJECTED
        item.message = f"`_id` “{fields['ximilar_id']}” appears earlier in the file."
    elif fields["image_url"] in seen_urls:
        item.status = ItemStatus.DUPLICATE
        item.message = "The same URL appears earlier in the file."
    seen_ids.add(fields["ximilar_id"])
    seen_urls.add(fields["image_url"])
    item.data = {**fields, "price": None if fields["price"] is None else str(fields["price"])}
    return item


def _row_name(row) -> str:
    if isinstance(row, dict):
        return str(row.get("_url") or row.get("_id") or "")[:255]
    return ""


def _mark_existing(batch, items) -> None:
    """Rows whose `_id` the team already has are rejected; rows whose URL it
    already has are duplicates (imported only when the user allowed it)."""
    ids = _existing(batch.team, "ximilar_id", [item.data["ximilar_id"] for item in items])
    urls = _existing(batch.team, "image_url", [item.data["image_url"] for item in items])
    for item in items:
        if item.data["ximilar_id"] in ids:
            item.status = ItemStatus.REJECTED
            item.message = f"This team already has a record with _id “{item.data['ximilar_id']}”."
        elif item.data["image_url"] in urls:
            item.status = ItemStatus.DUPLICATE
            item.duplicate_of_id = urls[item.data["image_url"]]
            item.message = "The same URL is already a record."


def _existing(team, column: str, values: list) -> dict:
    found = {}
    for start in range(0, len(values), LOOKUP_CHUNK):
        chunk = values[start : start + LOOKUP_CHUNK]
        rows = Record.objects.filter(team=team, **{f"{column}__in": chunk})
        found.update(rows.order_by("-pk").values_list(column, "pk"))
    return found


def _store_items(batch, items) -> None:
    for item in items:
        item.batch = batch
        if item.status == ItemStatus.DUPLICATE and batch.allow_duplicates:
            item.status = ItemStatus.ACCEPTED
            item.message = "Duplicate URL, imported anyway as asked."
    BatchItem.objects.bulk_create(items, batch_size=1000)


def _finish(batch, state, *, error="") -> None:
    total = batch.items.count()
    UploadBatch.objects.filter(pk=batch.pk).update(
        state=state, error=error[:500], total=total, processed=total, lease_until=None
    )
    log.info("records.batch_state id=%s state=%s rows=%s", batch.pk, state, total)


def import_confirm(*, batch) -> None:
    """The user saw the preview and wants the accepted rows."""
    updated = UploadBatch.objects.filter(pk=batch.pk, state=BatchState.PREVIEW).update(
        state=BatchState.IMPORTING, lease_until=timezone.now()
    )
    if not updated:
        return
    if batch.items.filter(status=ItemStatus.ACCEPTED).count() <= INLINE_COMMIT_ROWS:
        _inline(import_commit, batch.pk)
    else:
        _enqueue("records.import_commit", batch.pk)


def import_commit(*, batch_id: int) -> int:
    """Create every accepted row in one transaction. Rows whose `_id` was
    taken since the preview are rejected now rather than failing the lot."""
    if not background.claim(UploadBatch.objects.filter(pk=batch_id, state=BatchState.IMPORTING)):
        return 0  # done, or another worker holds it
    batch = UploadBatch.objects.get(pk=batch_id)
    items = list(batch.items.filter(status=ItemStatus.ACCEPTED))
    taken = _existing(batch.team, "ximilar_id", [item.data["ximilar_id"] for item in items])
    records = [_record_from(batch, item) for item in items if item.data["ximilar_id"] not in taken]
    with transaction.atomic():
        Record.objects.bulk_create(records, batch_size=500)
        _reject_taken(batch, taken)
        UploadBatch.objects.filter(pk=batch.pk).update(state=BatchState.DONE, lease_until=None)
    if records:
        _enqueue_previews(batch)
    log.info("records.imported batch=%s count=%s", batch.pk, len(records))
    return len(records)


def _record_from(batch, item) -> Record:
    data = dict(item.data)
    price = data.pop("price")
    return Record(
        team_id=batch.team_id,
        created_by_id=batch.created_by_id,
        batch=batch,
        price=None if price is None else Decimal(price),
        preview=Preview.PENDING,
        preview_lease_until=timezone.now(),
        **data,
    )


def _reject_taken(batch, taken) -> None:
    if taken:
        BatchItem.objects.filter(
            batch=batch, status=ItemStatus.ACCEPTED, data__ximilar_id__in=list(taken)
        ).update(status=ItemStatus.REJECTED, message="The _id was taken after the preview.")


def _enqueue_previews(batch) -> None:
    from .tasks import fetch_batch_previews

    background.enqueue_on_commit(fetch_batch_previews, batch.pk)


def batch_fetch_previews(*, batch_id: int) -> None:
    """Thumbnails for an import's URL records, one after another. The ones
    still to come are marked as handed over now and then, so the sweep does not
    start a second task on a batch this one is still working through."""
    pending = Record.objects.filter(batch_id=batch_id, preview=Preview.PENDING)
    every = settings.BACKGROUND_SWEEP_GRACE_SECONDS / 3
    marked = -every
    for record_id in list(pending.values_list("pk", flat=True)):
        if time.monotonic() - marked >= every:
            background.mark_handed_over(pending, services.PREVIEW_LEASE)
            marked = time.monotonic()
        services.record_fetch_preview(record_id=record_id)
