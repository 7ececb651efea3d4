"""Writes for one record or a selection of records."""

import logging
import uuid

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from ximilar_portal.lib import background, urlfetch
from ximilar_portal.lib.images import ImageInfo, ImageRejected, inspect_image, sha256_hex
from ximilar_portal.lib.storage import StorageUnavailable, delete_files, save_file

from .models import Preview, Record

log = logging.getLogger(__name__)


class DuplicateId(Exception):
    def __init__(self, ximilar_id):
        super().__init__(f"This team already has a record with _id “{ximilar_id}”.")


class DuplicateContent(Exception):
    """The same image bytes or the same URL is already a record of the team."""

    def __init__(self, existing: Record, what: str):
        super().__init__(f"The same {what} is already record “{existing.ximilar_id}”.")
        self.existing = existing


def record_create(
    *,
    team,
    user,
    fields: dict,
    image: tuple[bytes, ImageInfo] | None = None,
    url: str = "",
    batch=None,
    allow_duplicate: bool = False,
    along=None,
) -> Record:
    """`fields` holds `ximilar_id` (blank: generated), product_id, category,
    price, tags and the custom fields, as the record form cleans them.
    `along(record)` writes what must exist with the record, in its transaction.
    Raises DuplicateContent (unless allowed) or DuplicateId; a storage failure
    (StorageUnavailable) or a database one leaves no file behind."""
    record = Record(
        team=team,
        created_by=user,
        batch=batch,
        ximilar_id=fields.get("ximilar_id") or uuid.uuid4().hex,
        image_url=url,
        product_id=fields.get("product_id", ""),
        category=fields.get("category", ""),
        price=fields.get("price"),
        tags=fields.get("tags", []),
        fields=fields.get("custom_fields", {}),
        preview=Preview.PENDING if url else "",
        preview_lease_until=timezone.now() if url else None,
    )
    sha256 = sha256_hex(image[0]) if image else ""
    if not allow_duplicate:
        _refuse_duplicate(team, sha256=sha256, url=url)
    if image:
        _attach_image(record, *image, sha256=sha256)
    try:
        with transaction.atomic():
            record.save()
            if along:
                along(record)
    except Exception as error:  # a taken _id, a locked database: no file without its row
        delete_files(record.image, record.thumbnail)
        if isinstance(error, IntegrityError):
            raise DuplicateId(record.ximilar_id) from None
        raise
    if url:
        _enqueue_preview(record)
    log.info("records.created team=%s record=%s", team.pk, record.pk)
    return record


def duplicate_of(*, team, sha256="", url="") -> Record | None:
    records = Record.objects.filter(team=team).order_by("pk")
    if sha256:
        return records.filter(sha256=sha256).first()
    if url:
        return records.filter(image_url=url).first()
    return None


def _refuse_duplicate(team, *, sha256, url) -> None:
    existing = duplicate_of(team=team, sha256=sha256, url=url)
    if existing:
        raise DuplicateContent(existing, "image" if sha256 else "URL")


def _attach_image(record: Record, data: bytes, info: ImageInfo, *, sha256: str) -> None:
    record.image_extension = info.extension
    record.image_format = info.format
    record.width, record.height = info.width, info.height
    record.first_frame_only = info.first_frame_only
    record.sha256 = sha256
    thumbnail = info.thumbnail  # made by the decode that checked the upload
    if thumbnail:
        record.preview = Preview.READY
    else:
        record.preview = Preview.NONE
        log.warning("records.thumbnail_failed sha256=%s", record.sha256)
    save_file(record.image, "upload", ContentFile(data))
    if thumbnail:
        try:
            save_file(record.thumbnail, "thumb", ContentFile(thumbnail))
        except StorageUnavailable:
            delete_files(record.image)
            raise


def _enqueue_preview(record: Record) -> None:
    from .tasks import fetch_preview  # tasks import services

    background.enqueue_on_commit(fetch_preview, record.pk)


# --- Previews of URL records ------------------------------------------------------------

PREVIEW_LEASE = "preview_lease_until"


def record_fetch_preview(*, record_id: int) -> None:
    """Download a URL record's image once (every hop checked, size and time
    capped) to make its thumbnail. Any failure keeps the record, marked as
    having no preview; the URL is still what Ximilar gets. A copy of the task
    delivered twice finds the record held (or done) and does nothing."""
    pending = Record.objects.filter(pk=record_id, preview=Preview.PENDING)
    if not background.claim(pending, field=PREVIEW_LEASE):
        return
    record = pending.first()
    if record is None or not record.image_url:
        return
    try:
        fetched = urlfetch.fetch(
            record.image_url,
            max_bytes=settings.UPLOAD_MAX_BYTES,
            timeout=settings.URL_FETCH_TIMEOUT,
        )
        info = inspect_image(
            fetched.body, max_pixels=settings.IMAGE_MAX_PIXELS, max_bytes=settings.UPLOAD_MAX_BYTES
        )
    except (urlfetch.FetchRefused, ImageRejected) as error:
        _mark_no_preview(record, str(error))
        return
    if not info.thumbnail:
        _mark_no_preview(record, "The image could not be made into a preview.")
        return
    try:
        save_file(record.thumbnail, "thumb", ContentFile(info.thumbnail))
    except StorageUnavailable:  # stays pending: the sweep tries again after the grace period
        background.release(pending, PREVIEW_LEASE)
        return
    Record.objects.filter(pk=record.pk).update(
        thumbnail=record.thumbnail.name,
        preview=Preview.READY,
        preview_error="",
        preview_lease_until=None,
    )
    log.info("records.preview_ready record=%s", record.pk)


def previews_sweep() -> int:
    """Hand over again the previews still pending after the grace period (the
    broker was down, or lost the task): a whole batch at once, or one record."""
    from .tasks import fetch_batch_previews, fetch_preview

    pending = Record.objects.filter(preview=Preview.PENDING)
    batched, single = pending.filter(batch__isnull=False), pending.filter(batch__isnull=True)
    sent = background.hand_over_again(
        batched, fetch_batch_previews, field=PREVIEW_LEASE, by="batch_id"
    )
    return sent + background.hand_over_again(single, fetch_preview, field=PREVIEW_LEASE)


def _mark_no_preview(record: Record, reason: str) -> None:
    Record.objects.filter(pk=record.pk).update(
        preview=Preview.NONE, preview_error=reason[:300], preview_lease_until=None
    )
    log.info("records.preview_failed record=%s reason=%s", record.pk, reason[:120])


# --- Edit and delete ------------------------------------------------------------------------


def record_update(*, record: Record, fields: dict) -> Record:
    """Edit the fields of one record (the image stays). Raises DuplicateId."""
    record.ximilar_id = fields.get("ximilar_id") or record.ximilar_id
    record.product_id = fields.get("product_id", "")
    record.category = fields.get("category", "")
    record.price = fields.get("price")
    record.tags = fields.get("tags", [])
    record.fields = fields.get("custom_fields", {})
    try:
        with transaction.atomic():
            record.save()
    except IntegrityError:
        raise DuplicateId(record.ximilar_id) from None
    log.info("records.updated record=%s", record.pk)
    return record


def records_bulk_update(
    *, records, category: str | None = None, add_tags=(), remove_tags=()
) -> int:
    """Set the category and add or remove tags on a team's selected records.
    Saved one by one so everything that listens to record saves hears it."""
    count = 0
    with transaction.atomic():
        for record in records.select_for_update():
            if category is not None:
                record.category = category
            tags = [tag for tag in record.tags if tag not in remove_tags]
            record.tags = tags + [tag for tag in add_tags if tag not in tags]
            record.save(update_fields=["category", "tags", "updated_at"])
            count += 1
    log.info("records.bulk_updated count=%s", count)
    return count


def records_delete(*, records) -> int:
    """Delete records with their jobs and results (cascade), then their files
    once the rows are surely gone."""
    files = [
        (field.storage, field.name)
        for record in records
        for field in (record.image, record.thumbnail)
        if field
    ]
    with transaction.atomic():
        count = records.count()
        records.delete()
        transaction.on_commit(lambda: _delete_stored(files))
    log.info("records.deleted count=%s", count)
    return count


def _delete_stored(files) -> None:
    for storage, name in files:
        try:
            storage.delete(name)
        except OSError:
            log.warning("records.file_delete_failed name=%s", name)
