"""Writes for people, teams and the team's Ximilar token."""

import functools
import logging

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ximilar_portal.lib.crypto import KeyRing, last4

from .models import Credential, Membership, Role, Team, User

log = logging.getLogger(__name__)


def key_ring() -> KeyRing:
    return _parse_key_ring(settings.XIMILAR_TOKEN_KEYS)


@functools.cache
def _parse_key_ring(spec: str) -> KeyRing:
    return KeyRing.parse(spec)


def credential_binding(team_id) -> str:
    """What a token's ciphertext is bound to: a copy in another row fails."""
    return f"credential:team:{team_id}"


@transaction.atomic
def user_signup(*, email: str, password: str) -> User:
    user = User.objects.create_user(email=email, password=password)
    team = Team.objects.create(name=f"{email.split('@')[0]}'s team")
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    log.info("accounts.signup user=%s team=%s", user.pk, team.pk)
    return user


@transaction.atomic
def credential_set(*, team: Team, token: str, user: User, workspace: str = "") -> Credential:
    token = token.strip()
    ciphertext = key_ring().encrypt(token, bound_to=credential_binding(team.pk))
    credential, _ = Credential.objects.update_or_create(
        team=team,
        defaults={
            "ciphertext": ciphertext,
            "last4": last4(token),
            "workspace": workspace.strip(),
            "created_by": user,
            "last_error": "",
        },
    )
    if team.blocked_reason:
        team_unblock(team=team)
    log.info("accounts.credential_set team=%s user=%s", team.pk, user.pk)
    return credential


def credential_token(*, team_id: int) -> str:
    """The plaintext token, for the one moment a request is signed. Raises
    DecryptionError (fail closed) when the key ring cannot read it."""
    credential = Credential.objects.get(team_id=team_id)
    return key_ring().decrypt(credential.ciphertext, bound_to=credential_binding(team_id))


def credential_mark_used(*, team_id: int, error: str = "") -> None:
    Credential.objects.filter(team_id=team_id).update(
        last_used_at=timezone.now(), last_error=error[:300]
    )


def team_block(*, team_id: int, reason: str) -> None:
    """Stop the team's queue: Ximilar refused its token. Nothing more is sent
    until a new token is saved."""
    from ximilar_portal.submissions.services import jobs_block_for_team

    Team.objects.filter(pk=team_id).update(blocked_reason=reason)
    jobs_block_for_team(team_id=team_id, reason=reason)
    log.warning("accounts.team_blocked team=%s reason=%s", team_id, reason)


def team_unblock(*, team: Team) -> None:
    from ximilar_portal.submissions.services import jobs_unblock_for_team

    Team.objects.filter(pk=team.pk).update(blocked_reason="")
    team.blocked_reason = ""
    jobs_unblock_for_team(team_id=team.pk)
    log.info("accounts.team_unblocked team=%s", team.pk)
