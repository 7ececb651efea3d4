"""The audit log belongs to the accounts work (`ximilar_portal.audit`); this
forwards to it, and logs the event when that app is not installed yet."""

import logging

log = logging.getLogger(__name__)


def audit_record(*, team, user, action, target="", details=None):
    try:
        from ximilar_portal.audit.services import audit_record as record
    except ImportError:
        log.info("%s team=%s user=%s target=%s", action, team.pk, getattr(user, "pk", None), target)
        return None
    return record(team=team, user=user, action=action, target=target, details=details)
