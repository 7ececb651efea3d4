from django.contrib import admin

from .models import RecordJob, Result, Submission


@admin.register(Submission)
class SubmissionAdmin(admin.ModelAdmin):
    list_display = ("id", "team", "service", "created_by", "created_at")
    list_filter = ("service",)


@admin.register(RecordJob)
class RecordJobAdmin(admin.ModelAdmin):
    list_display = ("id", "submission", "record", "state", "attempts", "error_class")
    list_filter = ("state", "error_class")
    raw_id_fields = ("submission", "record")


@admin.register(Result)
class ResultAdmin(admin.ModelAdmin):
    list_display = ("id", "record", "service", "best_label", "best_prob", "from_sandbox")
    list_filter = ("service", "from_sandbox")
    raw_id_fields = ("job", "record")
