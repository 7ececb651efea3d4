"""Writes for who is in a team: invitations, roles, removal, leaving.

The rules (GitLab's, roughly): owners and admins manage members; only an owner
may make someone an owner or act on an owner; a team always keeps at least one
owner, so the last owner can be neither demoted, removed, nor leave."""

import hashlib
import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from ximilar_portal.audit.services import audit_record

from .models import Invitation, Membership, Role, Team, User

log = logging.getLogger(__name__)


class TeamRuleError(Exception):
    """An action the team rules refuse. The message is shown to the user."""


def invitation_token_hash(raw_token: str) -> str:
    return hashlib.sha256(raw_token.encode()).hexdigest()


def invitation_create(*, team: Team, actor: Membership, email: str, role: str) -> Invitation:
    """Store a hashed invitation and e-mail its link. A newer invitation for
    the same address replaces a pending one. When the e-mail cannot be sent the
    invitation is withdrawn and the error raised."""
    _check_may_grant(actor, role)
    email = User.objects.normalize_email(email).strip()
    if team.memberships.filter(user__email__iexact=email).exists():
        raise TeamRuleError(f"{email} is already a member of {team.name}.")
    raw_token = secrets.token_urlsafe(32)
    with transaction.atomic():
        team.invitations.filter(email__iexact=email, accepted_at__isnull=True).delete()
        invitation = Invitation.objects.create(
            team=team,
            email=email,
            role=role,
            token_hash=invitation_token_hash(raw_token),
            invited_by=actor.user,
            expires_at=timezone.now() + timedelta(days=settings.INVITATION_MAX_AGE_DAYS),
        )
    try:
        _invitation_send(invitation, raw_token)
    except Exception as error:
        invitation.delete()
        log.warning("accounts.invitation_not_sent team=%s error=%s", team.pk, type(error).__name__)
        raise TeamRuleError("The invitation e-mail could not be sent; try again later.") from error
    audit_record(
        team=team, user=actor.user, action="member.invited", target=email, details={"role": role}
    )
    return invitation


def invitation_url(raw_token: str) -> str:
    path = reverse("accounts:invitation", kwargs={"token": raw_token})
    return settings.SITE_URL.rstrip("/") + path


def _invitation_send(invitation: Invitation, raw_token: str) -> None:
    context = {
        "invitation": invitation,
        "url": invitation_url(raw_token),
        "max_age_days": settings.INVITATION_MAX_AGE_DAYS,
    }
    send_mail(
        subject=f"Join {invitation.team.name} on Ximilar Portal",
        message=render_to_string("accounts/invitation_email.txt", context),
        from_email=None,
        recipient_list=[invitation.email],
    )


def invitation_for_token(raw_token: str) -> Invitation | None:
    """The pending invitation behind a link, or None: unknown, used or expired."""
    invitation = (
        Invitation.objects.select_related("team", "invited_by")
        .filter(token_hash=invitation_token_hash(raw_token or ""))
        .first()
    )
    return invitation if invitation and invitation.is_pending else None


def invitation_accept(*, raw_token: str, user: User) -> Membership:
    """Join the team of an invitation. The link works once: the row is claimed
    with a conditional UPDATE, so two clicks at once make one membership."""
    invitation = invitation_for_token(raw_token)
    if invitation is None:
        raise TeamRuleError("This invitation link has expired or was already used.")
    if invitation.email.lower() != user.email.lower():
        raise TeamRuleError(
            f"This invitation was sent to {invitation.email}; "
            "log in with that address to accept it."
        )
    with transaction.atomic():
        claimed = Invitation.objects.filter(
            pk=invitation.pk, accepted_at__isnull=True, expires_at__gt=timezone.now()
        ).update(accepted_at=timezone.now(), accepted_by=user)
        if not claimed:
            raise TeamRuleError("This invitation link has expired or was already used.")
        membership, created = _membership_get_or_create(invitation, user)
        if created:
            audit_record(
                team=invitation.team,
                user=user,
                action="member.joined",
                target=user.email,
                details={"role": membership.role, "invited_by": _email(invitation.invited_by)},
            )
    return membership


def _membership_get_or_create(invitation, user):
    try:
        with transaction.atomic():
            return Membership.objects.get_or_create(
                team=invitation.team, user=user, defaults={"role": invitation.role}
            )
    except IntegrityError:
        return Membership.objects.get(team=invitation.team, user=user), False


@transaction.atomic
def user_signup_invited(*, raw_token: str, password: str) -> User:
    """A new account made from an invitation link: it joins the inviting team
    instead of getting a team of its own. The address is the invitation's, which
    the link itself proves."""
    from .services import user_signup

    invitation = invitation_for_token(raw_token)
    if invitation is None:
        raise TeamRuleError("This invitation link has expired or was already used.")
    user = user_signup(email=invitation.email, password=password, own_team=False)
    invitation_accept(raw_token=raw_token, user=user)
    return user


@transaction.atomic
def invitation_revoke(*, invitation: Invitation, actor: Membership) -> None:
    invitation.delete()
    audit_record(
        team=invitation.team,
        user=actor.user,
        action="member.invitation_revoked",
        target=invitation.email,
    )


@transaction.atomic
def membership_role_change(*, membership: Membership, actor: Membership, role: str) -> Membership:
    old_role = membership.role
    if role == old_role:
        return membership
    _check_may_act_on(actor, membership)
    _check_may_grant(actor, role)
    if old_role == Role.OWNER:
        _check_not_last_owner(membership, "demoted")
    membership.role = role
    membership.save(update_fields=["role"])
    audit_record(
        team=membership.team,
        user=actor.user,
        action="member.role_changed",
        target=membership.user.email,
        details={"from": old_role, "to": role},
    )
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership, actor: Membership) -> None:
    if membership.pk == actor.pk:
        raise TeamRuleError("To leave the team yourself, use “Leave team”.")
    _check_may_act_on(actor, membership)
    _membership_delete(membership, by=actor.user, action="member.removed", what="removed")


@transaction.atomic
def membership_leave(*, membership: Membership) -> None:
    _membership_delete(membership, by=membership.user, action="member.left", what="leave")


def _membership_delete(membership: Membership, *, by: User, action: str, what: str) -> None:
    if membership.role == Role.OWNER:
        _check_not_last_owner(membership, what)
    membership.delete()
    audit_record(
        team=membership.team,
        user=by,
        action=action,
        target=membership.user.email,
        details={"role": membership.role},
    )


def _check_may_grant(actor: Membership, role: str) -> None:
    if role not in Role.values:
        raise TeamRuleError("Unknown role.")
    if role == Role.OWNER and actor.role != Role.OWNER:
        raise TeamRuleError("Only an owner can make someone an owner.")


def _check_may_act_on(actor: Membership, membership: Membership) -> None:
    if membership.role == Role.OWNER and actor.role != Role.OWNER:
        raise TeamRuleError("Only an owner can change or remove an owner.")


def _check_not_last_owner(membership: Membership, what: str) -> None:
    """Locks the team's owner rows, so two owners demoting each other at the
    same moment cannot leave the team with none."""
    owners = list(
        Membership.objects.select_for_update()
        .filter(team_id=membership.team_id, role=Role.OWNER)
        .values_list("pk", flat=True)
    )
    if owners == [membership.pk]:
        verb = "leave" if what == "leave" else f"be {what}"
        raise TeamRuleError(f"The last owner cannot {verb}: make another member an owner first.")


def _email(user) -> str:
    return user.email if user else ""
