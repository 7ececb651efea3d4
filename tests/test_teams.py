"""Teams through their pages: invite by e-mail link, accept (signed in or as a
new account), roles, removal, leaving, switching, and the last-owner rule."""

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from ximilar_portal.accounts.models import Invitation, Membership, Role
from ximilar_portal.audit.models import AuditEvent

from .conftest import PASSWORD, client_for, make_user

pytestmark = pytest.mark.django_db


def invite(client, email, role="member"):
    mail.outbox.clear()
    response = client.post(reverse("accounts:invite"), {"email": email, "role": role})
    assert response.status_code == 302, response.content.decode()[:500]
    (message,) = mail.outbox
    return re.search(r"https?://\S+/accounts/invite/\S+/", message.body).group(0)


def path_of(link):
    return "/" + link.split("/", 3)[3]


def test_it_invites_by_email_and_a_signed_in_user_joins(owner, team, outsider):
    link = invite(client_for(owner), "outsider@example.com", role="viewer")
    client = client_for(outsider)
    assert outsider.email in client.get(path_of(link)).content.decode()
    response = client.post(path_of(link))
    assert response.status_code == 302
    membership = Membership.objects.get(team=team, user=outsider)
    assert membership.role == Role.VIEWER
    assert client.get(reverse("records:list")).context["team"] == team  # switched to it
    actions = list(AuditEvent.objects.filter(team=team).values_list("action", flat=True))
    assert {"member.invited", "member.joined"} <= set(actions)


def test_it_stores_only_a_hash_of_the_link(owner):
    link = invite(client_for(owner), "new@example.com")
    secret = link.rstrip("/").rsplit("/", 1)[1]
    stored = Invitation.objects.get()
    assert secret not in stored.token_hash and len(stored.token_hash) == 64


def test_a_link_works_once(owner, team, outsider):
    link = invite(client_for(owner), "outsider@example.com")
    client = client_for(outsider)
    client.post(path_of(link))
    Membership.objects.filter(team=team, user=outsider).delete()
    assert client.post(path_of(link)).status_code == 404
    assert not Membership.objects.filter(team=team, user=outsider).exists()


def test_an_expired_link_does_not_work(owner, team, outsider):
    link = invite(client_for(owner), "outsider@example.com")
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client_for(outsider).post(path_of(link))
    assert response.status_code == 404
    assert b"expired" in response.content
    assert not Membership.objects.filter(team=team, user=outsider).exists()


def test_a_link_is_for_its_address_only(owner, team, outsider):
    link = invite(client_for(owner), "someone-else@example.com")
    response = client_for(outsider).post(path_of(link))
    assert response.status_code == 400
    assert b"someone-else@example.com" in response.content
    assert not Membership.objects.filter(team=team, user=outsider).exists()


def test_a_new_person_signs_up_from_the_link_and_lands_in_the_team(owner, team):
    link = invite(client_for(owner), "newbie@example.com")
    client = Client()
    assert b"Sign up and join" in client.get(path_of(link)).content
    response = client.post(path_of(link), {"password1": PASSWORD, "password2": PASSWORD})
    assert response.status_code == 302
    membership = Membership.objects.get(user__email="newbie@example.com")
    assert membership.team == team  # and no team of their own
    assert client.get(reverse("records:list")).context["team"] == team


def test_the_signup_form_shows_its_errors(owner):
    link = invite(client_for(owner), "newbie@example.com")
    response = Client().post(path_of(link), {"password1": "short", "password2": "other"})
    assert response.status_code == 200
    assert b"differ" in response.content
    assert not Membership.objects.filter(user__email="newbie@example.com").exists()


def test_an_admin_cannot_invite_an_owner(team):
    admin = make_user("admin@example.com", team=team, role=Role.ADMIN)
    response = client_for(admin).post(
        reverse("accounts:invite"), {"email": "x@example.com", "role": "owner"}
    )
    assert response.status_code == 400
    assert not Invitation.objects.exists()


def test_a_member_can_be_demoted_and_removed(owner, team, teammate):
    client = client_for(owner)
    membership = teammate.memberships.get()
    client.post(reverse("accounts:member_role", args=[membership.pk]), {"role": "viewer"})
    membership.refresh_from_db()
    assert membership.role == Role.VIEWER
    assert client_for(teammate).post(reverse("records:new")).status_code == 403
    client.post(reverse("accounts:member_remove", args=[membership.pk]))
    assert not Membership.objects.filter(pk=membership.pk).exists()
    assert client_for(teammate).get(reverse("records:list")).status_code == 302
    audit = AuditEvent.objects.filter(team=team, target=teammate.email)
    assert set(audit.values_list("action", flat=True)) == {"member.role_changed", "member.removed"}


def test_the_last_owner_can_neither_leave_nor_be_demoted(owner, team):
    admin = make_user("admin@example.com", team=team, role=Role.ADMIN)
    mine = owner.memberships.get()
    client = client_for(owner)
    client.post(reverse("accounts:team_leave"))
    assert Membership.objects.filter(pk=mine.pk).exists()
    client.post(reverse("accounts:member_role", args=[mine.pk]), {"role": "member"})
    # An admin may not touch an owner at all.
    client_for(admin).post(reverse("accounts:member_role", args=[mine.pk]), {"role": "member"})
    client_for(admin).post(reverse("accounts:member_remove", args=[mine.pk]))
    mine.refresh_from_db()
    assert mine.role == Role.OWNER


def test_an_owner_can_leave_once_another_owner_exists(owner, team, teammate):
    client = client_for(owner)
    theirs = teammate.memberships.get()
    client.post(reverse("accounts:member_role", args=[theirs.pk]), {"role": "owner"})
    response = client.post(reverse("accounts:team_leave"))
    assert response.status_code == 302
    assert not Membership.objects.filter(team=team, user=owner).exists()
    assert AuditEvent.objects.filter(team=team, action="member.left").exists()
    # In no team now: sent to create one.
    assert client.get(reverse("records:list")).url == reverse("accounts:team_create")


def test_it_creates_and_switches_teams(owner, team):
    client = client_for(owner)
    client.post(reverse("accounts:team_create"), {"name": "  Second   team "})
    second = Membership.objects.get(user=owner, team__name="Second team").team
    assert client.get(reverse("records:list")).context["team"] == second
    page = client.get(reverse("accounts:team")).content.decode()
    assert reverse("accounts:team_switch", args=[team.pk]) in page  # the switcher
    client.post(reverse("accounts:team_switch", args=[team.pk]))
    assert client.get(reverse("records:list")).context["team"] == team


def test_the_members_page_lists_role_and_joined_date(owner, team, teammate):
    page = client_for(teammate).get(reverse("accounts:team")).content.decode()
    assert owner.email in page and teammate.email in page
    assert timezone.now().strftime("%Y-%m-%d") in page
    assert "Send invitation" not in page  # members do not manage


class BrokenEmailBackend:
    def __init__(self, *args, **kwargs):
        pass

    def send_messages(self, messages):
        raise ConnectionRefusedError("smtp down")


def test_an_invitation_that_cannot_be_mailed_is_withdrawn(owner, settings):
    settings.EMAIL_BACKEND = "tests.test_teams.BrokenEmailBackend"
    response = client_for(owner).post(
        reverse("accounts:invite"), {"email": "new@example.com", "role": "member"}
    )
    assert response.status_code == 400
    assert b"could not be sent" in response.content
    assert not Invitation.objects.exists()
    assert not AuditEvent.objects.filter(action="member.invited").exists()


def test_a_withdrawn_invitation_no_longer_works(owner, outsider):
    link = invite(client_for(owner), "outsider@example.com")
    client_for(owner).post(
        reverse("accounts:invitation_revoke", args=[Invitation.objects.get().pk])
    )
    assert client_for(outsider).post(path_of(link)).status_code == 404
