from django.contrib import admin
from django.db import models

from .models import Record


@admin.register(Record)
class RecordAdmin(admin.ModelAdmin):
    list_display = ("ximilar_id", "team", "product_id", "category", "price", "created_at")
    list_filter = ("category",)
    search_fields = ("ximilar_id", "product_id")
    raw_id_fields = ("team", "created_by")
    # Django 6 changes URLField's default scheme; say which one we mean.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
