"""Writes to the audit log. Other apps call `audit_record` for their own
events ("submission.cancelled", "export.downloaded", ...).

Nothing secret is ever stored: details whose key names a secret are replaced
by "[redacted]", and any value that looks like an encrypted token is refused
the same way, so a careless caller cannot leak a token into the log."""

import contextvars
import logging
import re

from .models import AuditEvent

log = logging.getLogger(__name__)

REDACTED = "[redacted]"
SECRET_KEY_NAME = re.compile(
    r"token|secret|password|passwd|ciphertext|api[_-]?key|authorization", re.I
)
CIPHERTEXT = re.compile(r"enc:[a-z0-9]+:")
MAX_TEXT = 500

# The client address of the request being served, set by AuditRequestMiddleware,
# so callers need not pass the request down to the service that records.
current_ip: contextvars.ContextVar[str | None] = contextvars.ContextVar("audit_ip", default=None)


def audit_record(
    *, team, user, action: str, target: str = "", details: dict | None = None
) -> AuditEvent:
    actor = user if getattr(user, "is_authenticated", False) else None
    event = AuditEvent.objects.create(
        team=team,
        actor=actor,
        actor_email=actor.email if actor else "",
        action=action,
        target=str(target)[:300],
        details=scrub(details or {}),
        ip=current_ip.get(),
    )
    log.info(
        "audit.%s team=%s user=%s target=%s",
        action,
        team.pk,
        getattr(actor, "pk", None),
        event.target,
    )
    return event


def scrub(value, key=""):
    """A JSON-safe copy of `value` with every secret-looking entry redacted."""
    if key and SECRET_KEY_NAME.search(key):
        return REDACTED
    if isinstance(value, dict):
        return {str(k): scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [scrub(item) for item in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    text = str(value)
    return REDACTED if CIPHERTEXT.search(text) else text[:MAX_TEXT]
