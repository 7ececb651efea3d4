"""Reads for people and teams. The active team of a request is always one the
user is a member of; everything else in the portal is scoped by it."""

from django.http import Http404
from django.utils import timezone

from .models import Membership


def memberships_for_user(*, user):
    return Membership.objects.filter(user=user).select_related("team").order_by("team__name")


def membership_get(*, user, team_id) -> Membership:
    membership = memberships_for_user(user=user).filter(team_id=team_id).first()
    if membership is None:
        raise Http404("No such team")
    return membership


def active_membership(*, user, session) -> Membership | None:
    """The team chosen in this session, else the user's first team."""
    memberships = memberships_for_user(user=user)
    chosen = memberships.filter(team_id=session.get("team_id")).first()
    return chosen or memberships.first()


def members_of_team(*, team):
    return team.memberships.select_related("user").order_by("created_at", "pk")


def pending_invitations(*, team):
    return team.invitations.filter(
        accepted_at__isnull=True, expires_at__gt=timezone.now()
    ).select_related("invited_by")
