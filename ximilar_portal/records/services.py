"""Writes for records."""

import logging
import uuid

from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction

from ximilar_portal.lib.images import ImageInfo, ImageRejected, make_thumbnail, sha256_hex

from .models import Record

log = logging.getLogger(__name__)


class DuplicateId(Exception):
    def __init__(self, ximilar_id):
        super().__init__(f"This team already has a record with _id “{ximilar_id}”.")


def record_create(
    *,
    team,
    user,
    fields: dict,
    image: tuple[bytes, ImageInfo] | None = None,
    url: str = "",
) -> Record:
    """`fields` holds `ximilar_id` (blank: generated), product_id, category,
    price, tags and the custom fields, as the record form cleans them."""
    record = Record(
        team=team,
        created_by=user,
        ximilar_id=fields.get("ximilar_id") or uuid.uuid4().hex,
        image_url=url,
        product_id=fields.get("product_id", ""),
        category=fields.get("category", ""),
        price=fields.get("price"),
        tags=fields.get("tags", []),
        fields=fields.get("custom_fields", {}),
    )
    if image:
        _attach_image(record, *image)
    try:
        with transaction.atomic():
            record.save()
    except IntegrityError:
        _delete_files(record)
        raise DuplicateId(record.ximilar_id) from None
    log.info("records.created team=%s record=%s", team.pk, record.pk)
    return record


def _attach_image(record: Record, data: bytes, info: ImageInfo) -> None:
    record.image_extension = info.extension
    record.image_format = info.format
    record.width, record.height = info.width, info.height
    record.first_frame_only = info.first_frame_only
    record.sha256 = sha256_hex(data)
    record.image.save("upload", ContentFile(data), save=False)
    try:
        record.thumbnail.save("thumb", ContentFile(make_thumbnail(data)), save=False)
    except ImageRejected:
        log.warning("records.thumbnail_failed sha256=%s", record.sha256)


def _delete_files(record: Record) -> None:
    for field in (record.image, record.thumbnail):
        if field:
            field.delete(save=False)
