from django.contrib import admin

from .models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the log is written by the portal, never edited by hand."""

    list_display = ("created_at", "team", "actor_email", "action", "target", "ip")
    list_filter = ("action",)
    search_fields = ("actor_email", "target", "action")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
