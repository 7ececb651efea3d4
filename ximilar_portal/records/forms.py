"""Validate and normalise what people type; never save (services do that)."""

import re
from decimal import Decimal

from django import forms
from django.conf import settings

from ximilar_portal.lib.images import ImageRejected, inspect_image

from .codec import (
    FIELD_NAME,
    RESERVED_FIELDS,
    RowRejected,
    check_custom_field,
    format_custom_value,
    parse_custom_value,
)

MAX_URLS = 500


def parse_tags(text: str) -> list[str]:
    """Tags are typed separated by commas, `|` or `;`; blanks and repeats go."""
    tags = []
    for tag in re.split(r"[,|;\n]", text or ""):
        tag = tag.strip()
        if tag and tag not in tags:
            tags.append(tag)
    return tags


def parse_custom_fields(text: str) -> dict:
    fields = {}
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or not FIELD_NAME.match(name):
            raise forms.ValidationError(
                f"Line {number}: write one field a line as `name: value`; a name starts "
                "with a letter and has letters, digits, `_`, `.` or `-`."
            )
        if name in RESERVED_FIELDS:
            raise forms.ValidationError(f"Line {number}: `{name}` has its own box above.")
        value = parse_custom_value(value.strip())
        try:
            check_custom_field(name, value)
        except RowRejected as error:
            raise forms.ValidationError(f"Line {number}: {error}") from None
        fields[name] = value
    return fields


def format_custom_fields(fields: dict) -> str:
    """The textarea text that parse_custom_fields reads back as `fields`."""
    return "\n".join(f"{name}: {format_custom_value(value)}" for name, value in fields.items())


def check_image_upload(upload) -> tuple:
    """(bytes, ImageInfo with its thumbnail) of an uploaded file, or
    ValidationError saying why not. ImageBusy (answered 503) when no decode
    slot comes free in IMAGE_DECODE_WAIT seconds."""
    if upload.size > settings.UPLOAD_MAX_BYTES:
        limit = settings.UPLOAD_MAX_BYTES // (1024 * 1024)
        raise forms.ValidationError(f"The file is larger than {limit} MB.")
    data = upload.read()
    try:
        info = inspect_image(
            data,
            max_pixels=settings.IMAGE_MAX_PIXELS,
            max_bytes=settings.UPLOAD_MAX_BYTES,
            wait=settings.IMAGE_DECODE_WAIT,
        )
    except ImageRejected as error:
        raise forms.ValidationError(str(error)) from None
    return data, info


CUSTOM_FIELDS_HELP = (
    "One `name: value` a line. 12 and 4.5 are numbers, true/false booleans, "
    '["a", "b"] lists; anything else is text (quote it, "00123", to keep a number as text).'
)


def custom_fields_field():
    return forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "color: red\nstock: 12"}),
        help_text=CUSTOM_FIELDS_HELP,
    )


class RecordFieldsForm(forms.Form):
    """The fields of a record, without its image: the edit form."""

    ximilar_id = forms.CharField(
        label="_id", required=False, max_length=255, help_text="Leave blank to generate one."
    )
    product_id = forms.CharField(required=False, max_length=255)
    category = forms.CharField(required=False, max_length=255)
    price = forms.DecimalField(required=False, max_digits=14, decimal_places=4)
    tags = forms.CharField(required=False, help_text="Separated by commas.")
    custom_fields = custom_fields_field()

    def clean_tags(self):
        return parse_tags(self.cleaned_data.get("tags"))

    def clean_custom_fields(self):
        return parse_custom_fields(self.cleaned_data.get("custom_fields"))

    def clean_price(self):
        price = self.cleaned_data.get("price")
        if price is not None and price < Decimal(0):
            raise forms.ValidationError("A price cannot be negative.")
        return price

    @classmethod
    def initial_for(cls, record):
        return {
            "ximilar_id": record.ximilar_id,
            "product_id": record.product_id,
            "category": record.category,
            "price": record.price.normalize() if record.price is not None else None,
            "tags": ", ".join(record.tags),
            "custom_fields": format_custom_fields(record.fields),
        }


class RecordForm(RecordFieldsForm):
    image = forms.FileField(required=False, help_text="JPEG, PNG, WEBP, HEIC, BMP, TIFF or GIF.")
    url = forms.URLField(
        label="or image URL", required=False, max_length=2000, assume_scheme="https"
    )
    allow_duplicate = forms.BooleanField(
        label="Add anyway if this image or URL is already a record", required=False
    )
    field_order = ["image", "url"]

    def clean_image(self):
        upload = self.cleaned_data.get("image")
        return check_image_upload(upload) if upload else None

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        if not cleaned.get("image") and not cleaned.get("url"):
            raise forms.ValidationError("Choose an image file or give an image URL.")
        if cleaned.get("image") and cleaned.get("url"):
            raise forms.ValidationError("Give a file or a URL, not both.")
        return cleaned


class SharedFieldsForm(forms.Form):
    """Fields applied to every record of a batch of files or URLs."""

    category = forms.CharField(required=False, max_length=255)
    tags = forms.CharField(required=False, help_text="Separated by commas.")
    custom_fields = custom_fields_field()
    allow_duplicates = forms.BooleanField(
        label="Add images or URLs that are already records anyway", required=False
    )

    def clean_tags(self):
        return parse_tags(self.cleaned_data.get("tags"))

    def clean_custom_fields(self):
        return parse_custom_fields(self.cleaned_data.get("custom_fields"))


class UrlListForm(SharedFieldsForm):
    urls = forms.CharField(
        label="Image URLs",
        widget=forms.Textarea(attrs={"rows": 8, "placeholder": "https://example.com/a.jpg"}),
        help_text=f"One http or https URL a line, up to {MAX_URLS}. Sent to Ximilar as they are.",
    )
    field_order = ["urls"]

    def clean_urls(self):
        lines = [line.strip() for line in self.cleaned_data["urls"].splitlines()]
        urls = [line for line in lines if line]
        if not urls:
            raise forms.ValidationError("Give at least one URL.")
        if len(urls) > MAX_URLS:
            raise forms.ValidationError(
                f"{len(urls)} URLs: at most {MAX_URLS} at a time; split the list."
            )
        return urls


class ImportForm(forms.Form):
    file = forms.FileField(
        label="CSV, JSON or JSON Lines file",
        help_text="CSV with a header `_id,_url,product_id,category,price,tags,…`; "
        'JSON as {"records": [ … ]}; or one record object a line.',
    )
    allow_duplicates = forms.BooleanField(
        label="Import URLs that are already records anyway", required=False
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > settings.IMPORT_MAX_BYTES:
            limit = settings.IMPORT_MAX_BYTES // (1024 * 1024)
            raise forms.ValidationError(f"The file is larger than {limit} MB; split it.")
        return upload


class IdListField(forms.Field):
    """Repeated `record=<pk>` values; which of them the team owns is the selector's job."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value):
        try:
            return sorted({int(item) for item in value or []})
        except (TypeError, ValueError):
            raise forms.ValidationError("The selection is not valid.") from None

    def validate(self, value):
        if not value:
            raise forms.ValidationError("Select at least one record.")


class BulkEditForm(forms.Form):
    record = IdListField()
    set_category = forms.BooleanField(label="Set category", required=False)
    category = forms.CharField(required=False, max_length=255)
    add_tags = forms.CharField(label="Add tags", required=False)
    remove_tags = forms.CharField(label="Remove tags", required=False)

    def clean_add_tags(self):
        return parse_tags(self.cleaned_data.get("add_tags"))

    def clean_remove_tags(self):
        return parse_tags(self.cleaned_data.get("remove_tags"))

    def clean(self):
        cleaned = super().clean()
        wants = cleaned.get("set_category") or cleaned.get("add_tags") or cleaned.get("remove_tags")
        if not self.errors and not wants:
            raise forms.ValidationError("Choose what to change: a category or tags.")
        return cleaned


class DeleteForm(forms.Form):
    record = IdListField()
    confirm = forms.BooleanField(required=False)
