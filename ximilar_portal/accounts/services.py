"""Writes for people, teams and the team's Ximilar token."""

import dataclasses
import functools
import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from ximilar_portal.audit.services import audit_record
from ximilar_portal.lib import ximilar
from ximilar_portal.lib.crypto import DecryptionError, KeyRing, last4

from .models import Credential, Membership, Role, Team, User

log = logging.getLogger(__name__)

# Said on the banner and the token page when the key ring cannot read a token.
UNDECRYPTABLE_REASON = "token: cannot be decrypted with the configured keys"
UNDECRYPTABLE_MESSAGE = (
    "The saved token cannot be decrypted with the keys in XIMILAR_TOKEN_KEYS "
    "(its key was removed from the ring, or the value was altered). Nothing is "
    "sent with it; save the token again."
)


@dataclasses.dataclass(frozen=True)
class TokenTest:
    ok: bool
    credits_used: int | None = None
    credits_limit: int | None = None
    error_kind: str = ""  # undecryptable | refused | unavailable
    error: str = ""
    block_reason: str = ""

    @classmethod
    def failed(cls, kind: str, error: str, *, block: str = "") -> "TokenTest":
        return cls(ok=False, error_kind=kind, error=error, block_reason=block)


def key_ring() -> KeyRing:
    return _parse_key_ring(settings.XIMILAR_TOKEN_KEYS)


@functools.cache
def _parse_key_ring(spec: str) -> KeyRing:
    return KeyRing.parse(spec)


def credential_binding(team_id) -> str:
    """What a token's ciphertext is bound to: a copy in another row fails."""
    return f"credential:team:{team_id}"


@transaction.atomic
def user_signup(*, email: str, password: str, own_team: bool = True) -> User:
    """A new account, with a team of its own unless it joins one by invitation."""
    user = User.objects.create_user(email=email, password=password)
    team = team_create(user=user, name=f"{email.split('@')[0]}'s team") if own_team else None
    log.info("accounts.signup user=%s team=%s", user.pk, getattr(team, "pk", None))
    return user


@transaction.atomic
def team_create(*, user: User, name: str) -> Team:
    team = Team.objects.create(name=name.strip())
    Membership.objects.create(team=team, user=user, role=Role.OWNER)
    audit_record(team=team, user=user, action="team.created", target=team.name)
    return team


@sensitive_variables("token", "ciphertext")
@transaction.atomic
def credential_set(*, team: Team, token: str, user: User, workspace: str = "") -> Credential:
    token = token.strip()
    ciphertext = key_ring().encrypt(token, bound_to=credential_binding(team.pk))
    replaced = Credential.objects.filter(team=team).exists()
    credential, _ = Credential.objects.update_or_create(
        team=team,
        defaults={
            "ciphertext": ciphertext,
            "last4": last4(token),
            "workspace": workspace.strip(),
            "created_by": user,
            "last_error": "",
            "last_used_at": None,
            "tested_at": None,
            "credits_used": None,
            "credits_limit": None,
        },
    )
    audit_record(
        team=team,
        user=user,
        action="token.replaced" if replaced else "token.set",
        target=f"…{credential.last4}" if credential.last4 else "",
        details={"workspace": credential.workspace} if credential.workspace else None,
    )
    if team.blocked_reason:
        team_unblock(team=team)
    log.info("accounts.credential_set team=%s user=%s", team.pk, user.pk)
    return credential


@transaction.atomic
def credential_remove(*, team: Team, user: User) -> bool:
    """Forget the token. Queued work waits (blocked: no token) until a new one
    is saved; nothing is sent meanwhile."""
    credential = Credential.objects.filter(team=team).first()
    if credential is None:
        return False
    credential.delete()
    audit_record(team=team, user=user, action="token.removed", target=f"…{credential.last4}")
    log.info("accounts.credential_removed team=%s user=%s", team.pk, user.pk)
    return True


def credential_test(*, team: Team, user: User) -> TokenTest:
    """Ask Ximilar for the account details with the saved token: proves it
    works and shows the credits. A token that cannot be decrypted or that
    Ximilar refuses pauses the team, as a failed submission would."""
    outcome = _token_test_outcome(team)
    _credential_record_test(team=team, outcome=outcome)
    audit_record(
        team=team,
        user=user,
        action="token.tested",
        target="ok" if outcome.ok else outcome.error_kind,
        details={"credits_used": outcome.credits_used, "credits_limit": outcome.credits_limit},
    )
    if outcome.block_reason:
        team_block(team_id=team.pk, reason=outcome.block_reason)
    elif outcome.ok and team.blocked_reason:
        team_unblock(team=team)
    return outcome


def _token_test_outcome(team: Team) -> TokenTest:
    try:
        client = client_for_team(team_id=team.pk)
    except Credential.DoesNotExist:
        return TokenTest.failed("missing", "No token is saved.")
    except DecryptionError:
        return TokenTest.failed("undecryptable", UNDECRYPTABLE_MESSAGE, block=UNDECRYPTABLE_REASON)
    try:
        with client:
            details = client.account_details()
    except ximilar.AuthError as error:
        reason = f"token: refused by Ximilar ({error.http_status})"
        return TokenTest.failed("refused", error.message, block=reason)
    except ximilar.XimilarError as error:
        return TokenTest.failed("unavailable", error.message)
    return TokenTest(
        ok=True,
        credits_used=_as_int(details.get("credits_counter")),
        credits_limit=_as_int(details.get("credits_limit")),
    )


def _credential_record_test(*, team: Team, outcome: TokenTest) -> None:
    now = timezone.now()
    fields = {"tested_at": now, "last_error": outcome.error[:300]}
    if outcome.error_kind != "undecryptable":
        fields["last_used_at"] = now
    if outcome.ok:
        fields.update(credits_used=outcome.credits_used, credits_limit=outcome.credits_limit)
    Credential.objects.filter(team=team).update(**fields)


def client_for_team(*, team_id: int, session=None) -> ximilar.Client:
    """A client signed with the team's token. Raises Credential.DoesNotExist or
    DecryptionError; never builds a client from a value it could not decrypt.
    Workers pass their long-lived `session` to reuse its connection pool."""
    credential = Credential.objects.get(team_id=team_id)
    return ximilar.Client(
        token=_plaintext(credential),
        base_url=settings.XIMILAR_API_URL,
        workspace=credential.workspace or None,
        connect_timeout=settings.XIMILAR_CONNECT_TIMEOUT,
        read_timeout=settings.XIMILAR_READ_TIMEOUT,
        session=session,
    )


def _as_int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


@sensitive_variables()
def credential_token(*, team_id: int) -> str:
    """The plaintext token, for the one moment a request is signed. Raises
    DecryptionError (fail closed) when the key ring cannot read it."""
    return _plaintext(Credential.objects.get(team_id=team_id))


@sensitive_variables()
def _plaintext(credential: Credential) -> str:
    return key_ring().decrypt(
        credential.ciphertext, bound_to=credential_binding(credential.team_id)
    )


def credential_is_readable(*, credential: Credential) -> bool:
    """Whether the key ring can decrypt the stored token (for the token page,
    which says so before any submission trips over it)."""
    try:
        credential_token(team_id=credential.team_id)
    except DecryptionError:
        return False
    return True


# A token in steady use has its "last used" time moved at most this often:
# once per batch was a write that every worker queued for.
LAST_USED_RESOLUTION = timedelta(seconds=10)
LAST_USED_SECONDS = LAST_USED_RESOLUTION.total_seconds()


# Per process: when it last knew each team's mark to be fresh, so a steady
# stream of batches asks the database about the mark once per resolution.
_fresh_at: dict[int, float] = {}


def credential_mark_used(*, team_id: int, error: str = "") -> None:
    since_fresh = time.monotonic() - _fresh_at.get(team_id, float("-inf"))
    if not error and since_fresh < LAST_USED_SECONDS:
        return
    now = timezone.now()
    rows = Credential.objects.filter(team_id=team_id)
    fresh = rows.filter(last_error="", last_used_at__gt=now - LAST_USED_RESOLUTION)
    if error or not fresh.exists():  # the check is a read: no write lock taken
        rows.update(last_used_at=now, last_error=error[:300])
    if error:
        _fresh_at.pop(team_id, None)
    else:
        _fresh_at[team_id] = time.monotonic()


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
