"""The team's audit log: who did what, to what, and when. Rows are written
only through `services.audit_record`, which strips anything secret-looking
from `details` before it is stored."""

from django.conf import settings
from django.db import models

from ximilar_portal.accounts.models import Team


class AuditEvent(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="audit_events")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Kept as text too, so the log still names a person whose account is gone.
    actor_email = models.CharField(max_length=254, blank=True)
    action = models.CharField(max_length=64)  # dotted: "token.set", "member.removed"
    target = models.CharField(max_length=300, blank=True)
    details = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["team", "-created_at"], name="audit_team_time"),
            models.Index(fields=["team", "action"], name="audit_team_action"),
        ]

    def __str__(self):
        return (
            f"{self.action} by {self.actor_email or 'system'} at {self.created_at:%Y-%m-%d %H:%M}"
        )
