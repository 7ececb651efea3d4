"""Signing in: password reset by e-mail, login throttling (django-axes), and
the audit page (owners and admins only, filterable, nothing secret)."""

import re

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from ximilar_portal.accounts.services import credential_set
from ximilar_portal.audit.models import AuditEvent

from .conftest import PASSWORD, SANDBOX_TOKEN, client_for, make_user

pytestmark = pytest.mark.django_db


def log_in(client, email, password):
    return client.post(reverse("accounts:login"), {"username": email, "password": password})


def test_it_resets_a_password_by_email(owner, settings):
    settings.SITE_URL = "https://portal.example.com"
    client = Client()
    response = client.post(reverse("accounts:password_reset"), {"email": "OWNER@example.com"})
    assert response.url == reverse("accounts:password_reset_done")
    (message,) = mail.outbox
    link = re.search(r"https://portal\.example\.com(/\S+/)", message.body).group(1)
    form_page = client.get(link, follow=True)
    assert b"Choose a new password" in form_page.content
    new = "another-long-password-77"
    done = client.post(
        form_page.redirect_chain[-1][0], {"new_password1": new, "new_password2": new}
    )
    assert done.url == reverse("accounts:password_reset_complete")
    assert log_in(Client(), owner.email, new).status_code == 302
    # The link worked once.
    assert b"cannot be used" in client.get(link, follow=True).content


def test_an_unknown_address_gets_the_same_answer_and_no_mail(db):
    response = Client().post(reverse("accounts:password_reset"), {"email": "nobody@example.com"})
    assert response.url == reverse("accounts:password_reset_done")
    assert mail.outbox == []


def test_it_locks_out_after_too_many_wrong_passwords(owner, settings):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert log_in(client, owner.email, "wrong-password").status_code == 200
    assert log_in(client, owner.email, "wrong-password").status_code == 429
    locked = log_in(client, owner.email, PASSWORD)  # even the right one, for a while
    assert locked.status_code == 429
    assert b"Too many failed log-ins" in locked.content
    # Another address from the same place is not locked out.
    other = make_user("other@example.com")
    assert log_in(Client(), other.email, PASSWORD).status_code == 302


def test_a_good_login_resets_the_count(owner, settings):
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        log_in(client, owner.email, "wrong-password")
    assert log_in(client, owner.email, PASSWORD).status_code == 302
    assert log_in(Client(), owner.email, "wrong-password").status_code == 200
    assert log_in(Client(), owner.email, PASSWORD).status_code == 302


def test_the_audit_log_is_for_owners_and_admins_and_filterable(owner, team, teammate, viewer):
    credential_set(team=team, token=SANDBOX_TOKEN, user=owner)
    teammate_event = AuditEvent.objects.create(
        team=team, actor=teammate, actor_email=teammate.email, action="export.downloaded"
    )
    assert client_for(teammate).get(reverse("audit:list")).status_code == 403
    assert client_for(viewer).get(reverse("audit:list")).status_code == 403
    client = client_for(owner)
    page = client.get(reverse("audit:list"))
    assert [e.action for e in page.context["page"]][:2] == ["export.downloaded", "token.set"]
    assert SANDBOX_TOKEN not in page.content.decode()
    by_action = client.get(reverse("audit:list"), {"action": "token"}).context["page"]
    assert {e.action for e in by_action} == {"token.set"}
    by_person = client.get(reverse("audit:list"), {"actor": teammate.pk}).context["page"]
    assert list(by_person) == [teammate_event]


def test_the_audit_log_shows_only_its_own_team(owner, team, outsider):
    outsider_team = outsider.memberships.get().team
    AuditEvent.objects.create(team=outsider_team, actor=outsider, action="export.downloaded")
    page = client_for(owner).get(reverse("audit:list"))
    assert all(event.team_id == team.pk for event in page.context["page"])
    assert outsider.email not in page.content.decode()
