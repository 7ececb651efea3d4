"""Reads of the audit log, always for one team."""

from django.contrib.auth import get_user_model

from .models import AuditEvent


def audit_events_for_team(*, team, action: str = "", actor_id: int | None = None):
    events = AuditEvent.objects.filter(team=team).select_related("actor")
    if action:
        # "member" matches every member.* event, "member.removed" only itself.
        events = (
            events.filter(action__startswith=action)
            if "." not in action
            else events.filter(action=action)
        )
    if actor_id:
        events = events.filter(actor_id=actor_id)
    return events


def audit_actions_for_team(*, team) -> list[str]:
    actions = AuditEvent.objects.filter(team=team).values_list("action", flat=True).distinct()
    return sorted(set(actions))


def audit_actors_for_team(*, team):
    """Everyone who appears in the team's log, including people who left."""
    actor_ids = AuditEvent.objects.filter(team=team, actor__isnull=False).values("actor_id")
    return get_user_model().objects.filter(pk__in=actor_ids).order_by("email")
