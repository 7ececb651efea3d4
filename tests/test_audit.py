"""The audit log: what is recorded, that nothing secret is, and who may read it."""

import pytest

from ximilar_portal.audit.models import AuditEvent
from ximilar_portal.audit.services import REDACTED, audit_record

pytestmark = pytest.mark.django_db


def test_it_records_an_event_with_its_actor(team, owner):
    event = audit_record(team=team, user=owner, action="export.downloaded", target="export 7")
    assert AuditEvent.objects.get(action="export.downloaded") == event
    assert (event.actor, event.actor_email, event.action) == (
        owner,
        owner.email,
        "export.downloaded",
    )
    assert event.details == {}


def test_it_never_stores_a_secret_in_details(team, owner):
    details = {
        "token": "abc-very-secret",
        "nested": {"api_key": "k", "old": "enc:aesgcm:k1:AAAA", "rows": 3},
        "list": ["fine", "enc:aesgcm:k1:BBBB"],
    }
    event = audit_record(team=team, user=owner, action="x.y", details=details)
    event.refresh_from_db()
    assert event.details == {
        "token": REDACTED,
        "nested": {"api_key": REDACTED, "old": REDACTED, "rows": 3},
        "list": ["fine", REDACTED],
    }
