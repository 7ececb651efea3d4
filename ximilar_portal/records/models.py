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

    class Meta:
        ordering = ["-created_at", "-id"]
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
