"""Validate and normalise what people type; never save (services do that)."""

import json
import re
from decimal import Decimal

from django import forms
from django.conf import settings

from ximilar_portal.lib.images import ImageRejected, inspect_image

RESERVED_FIELDS = {"product_id", "category", "price", "tags"}
FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


def parse_tags(text: str) -> list[str]:
    """Tags are typed separated by commas, `|` or `;`; blanks and repeats go."""
    tags = []
    for tag in re.split(r"[,|;\n]", text or ""):
        tag = tag.strip()
        if tag and tag not in tags:
            tags.append(tag)
    return tags


def parse_custom_value(text: str):
    """`42`, `4.5`, `true`, `["a","b"]` keep their JSON type; anything else is text."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, int | float | bool | list) else text


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
        fields[name] = parse_custom_value(value.strip())
    return fields


class RecordForm(forms.Form):
    image = forms.FileField(required=False, help_text="JPEG, PNG, WEBP, HEIC, BMP, TIFF or GIF.")
    url = forms.URLField(
        label="or image URL", required=False, max_length=2000, assume_scheme="https"
    )
    ximilar_id = forms.CharField(
        label="_id", required=False, max_length=255, help_text="Leave blank to generate one."
    )
    product_id = forms.CharField(required=False, max_length=255)
    category = forms.CharField(required=False, max_length=255)
    price = forms.DecimalField(required=False, max_digits=14, decimal_places=4)
    tags = forms.CharField(required=False, help_text="Separated by commas.")
    custom_fields = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "color: red\nstock: 12"}),
        help_text="One `name: value` a line. Numbers, true/false and [lists] keep their type.",
    )

    def clean_image(self):
        upload = self.cleaned_data.get("image")
        if not upload:
            return None
        if upload.size > settings.UPLOAD_MAX_BYTES:
            limit = settings.UPLOAD_MAX_BYTES // (1024 * 1024)
            raise forms.ValidationError(f"The file is larger than {limit} MB.")
        data = upload.read()
        try:
            info = inspect_image(
                data, max_pixels=settings.IMAGE_MAX_PIXELS, max_bytes=settings.UPLOAD_MAX_BYTES
            )
        except ImageRejected as error:
            raise forms.ValidationError(str(error)) from None
        return data, info

    def clean_tags(self):
        return parse_tags(self.cleaned_data.get("tags"))

    def clean_custom_fields(self):
        return parse_custom_fields(self.cleaned_data.get("custom_fields"))

    def clean_price(self):
        price = self.cleaned_data.get("price")
        if price is not None and price < Decimal(0):
            raise forms.ValidationError("A price cannot be negative.")
        return price

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        if not cleaned.get("image") and not cleaned.get("url"):
            raise forms.ValidationError("Choose an image file or give an image URL.")
        if cleaned.get("image") and cleaned.get("url"):
            raise forms.ValidationError("Give a file or a URL, not both.")
        return cleaned
