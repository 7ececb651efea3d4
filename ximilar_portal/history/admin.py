from django.contrib import admin

from .models import Export, RecordSummary, SavedView


@admin.register(RecordSummary)
class RecordSummaryAdmin(admin.ModelAdmin):
    list_display = ("ximilar_id", "team", "status", "best_label", "best_prob", "created_at")
    list_filter = ("status", "has_error")
    search_fields = ("ximilar_id", "product_id")
    raw_id_fields = ("record", "team")


@admin.register(SavedView)
class SavedViewAdmin(admin.ModelAdmin):
    list_display = ("name", "team", "owner", "shared")


@admin.register(Export)
class ExportAdmin(admin.ModelAdmin):
    list_display = ("id", "team", "format", "state", "rows", "created_at")
    list_filter = ("state", "format")
