import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.urls import reverse

from ximilar_portal.accounts.models import Team


def image_path(record, filename):
    """Stored names are generated: the uploaded name is never used on disk."""
    return f"records/{record.team_id}/{uuid.uuid4().hex}{record.image_extension}"


def thumbnail_path(record, filename):
    return f"thumbs/{record.team_id}/{uuid.uuid4().hex}.webp"


def import_path(batch, filename):
    return f"imports/{batch.team_id}/{uuid.uuid4().hex}.{batch.source_format or 'dat'}"


class Preview(models.TextChoices):
    PENDING = "pending", "Fetching preview"
    READY = "ready", "Preview"
    NONE = "none", "No preview"


class Record(models.Model):
    """One image with its fields, in Ximilar's record format: `_id`, `_url` or
    the image bytes, the well-known fields as columns (they are filtered on) and
    any other custom field in `fields`."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="records")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    ximilar_id = models.CharField("_id", max_length=255)
    image = models.FileField(upload_to=image_path, blank=True)
    image_url = models.URLField("_url", max_length=2000, blank=True)
    thumbnail = models.FileField(upload_to=thumbnail_path, blank=True)
    image_extension = models.CharField(max_length=8, blank=True)
    image_format = models.CharField(max_length=8, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    first_frame_only = models.BooleanField(default=False)
    sha256 = models.CharField(max_length=64, blank=True, db_index=True)

    product_id = models.CharField(max_length=255, blank=True, db_index=True)
    category = models.CharField(max_length=255, blank=True, db_index=True)
    price = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    tags = models.JSONField(default=list, blank=True)
    fields = models.JSONField(default=dict, blank=True)

    batch = models.ForeignKey(
        "UploadBatch", null=True, blank=True, on_delete=models.SET_NULL, related_name="records"
    )
    # URL records get their thumbnail from a background fetch; "none" means the
    # URL could not be fetched (the record is kept and sent to Ximilar as is).
    preview = models.CharField(max_length=8, choices=Preview.choices, blank=True)
    preview_error = models.CharField(max_length=300, blank=True)
    # While pending: when the preview was handed to the broker (past) or until
    # when a worker holds it (future); see lib/background.py.
    preview_lease_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["team", "image_url"], name="records_team_url"),
            # The sweep of pending previews reads these every tick.
            models.Index(fields=["preview", "preview_lease_until"], name="records_preview_lease"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["team", "ximilar_id"], name="unique_id_per_team")
        ]

    def __str__(self):
        return self.ximilar_id

    def get_absolute_url(self):
        return reverse("records:detail", args=[self.pk])

    def as_ximilar(self) -> dict:
        """The record exactly as Ximilar takes it, without the image bytes."""
        record = {"_id": self.ximilar_id}
        if self.image_url:
            record["_url"] = self.image_url
        for name in ("product_id", "category"):
            if getattr(self, name):
                record[name] = getattr(self, name)
        if self.price is not None:
            record["price"] = price_as_number(self.price)
        if self.tags:
            record["tags"] = list(self.tags)
        record.update(self.fields)
        return record


def price_as_number(price: Decimal):
    """300 stays 300 and 32.5 stays 32.5, as the user wrote them."""
    normalized = price.normalize()
    return int(normalized) if normalized == normalized.to_integral() else float(normalized)


class BatchKind(models.TextChoices):
    FILES = "files", "Files"
    URLS = "urls", "URLs"
    IMPORT = "import", "Import"


class BatchState(models.TextChoices):
    OPEN = "open", "Open"  # files: accepting uploads
    PARSING = "parsing", "Checking rows"
    PREVIEW = "preview", "Ready to import"
    IMPORTING = "importing", "Importing"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class UploadBatch(models.Model):
    """One upload session (many files), one list of URLs or one import file,
    with the fields shared by all its records and what happened to each item,
    so its page shows the same after a reload."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="upload_batches")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    kind = models.CharField(max_length=8, choices=BatchKind.choices)
    state = models.CharField(max_length=10, choices=BatchState.choices, default=BatchState.OPEN)
    allow_duplicates = models.BooleanField(default=False)
    # Shared fields applied to every record of the batch.
    category = models.CharField(max_length=255, blank=True)
    tags = models.JSONField(default=list, blank=True)
    fields = models.JSONField(default=dict, blank=True)
    # Imports: the file as uploaded (generated name), its format and progress.
    source = models.FileField(upload_to=import_path, blank=True)
    source_name = models.CharField(max_length=255, blank=True)
    source_format = models.CharField(max_length=8, blank=True)
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    # While checking rows or importing: handed to the broker at (past) or held
    # by a worker until (future); see lib/background.py.
    lease_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.get_kind_display()} batch {self.pk}"

    def get_absolute_url(self):
        return reverse("records:batch", args=[self.pk])

    @property
    def busy(self):
        return self.state in (BatchState.PARSING, BatchState.IMPORTING)


class ItemStatus(models.TextChoices):
    ACCEPTED = "accepted", "Accepted"
    DUPLICATE = "duplicate", "Duplicate"
    REJECTED = "rejected", "Rejected"


class BatchItem(models.Model):
    """One file, URL or import row of a batch and what became of it."""

    batch = models.ForeignKey(UploadBatch, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveIntegerField()  # import: the line or record number
    name = models.CharField(max_length=255, blank=True)  # file name or URL, shown only
    status = models.CharField(max_length=10, choices=ItemStatus.choices)
    message = models.CharField(max_length=500, blank=True)
    record = models.ForeignKey(
        Record, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    duplicate_of = models.ForeignKey(
        Record, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    data = models.JSONField(default=dict, blank=True)  # import: the record to create

    class Meta:
        ordering = ["position", "id"]

    def __str__(self):
        return f"{self.name or self.position}: {self.status}"


class RecordChange(models.Model):
    """The outbox of the history: a record whose summary must be rebuilt. Every
    write that changes what a summary shows adds a row in its own transaction,
    so a change is never committed without it; the history's worker drains it.
    `record_id` is a plain column because the record may be gone by then."""

    record_id = models.BigIntegerField()
    noted_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self):
        return f"record {self.record_id} changed"
