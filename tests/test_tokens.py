"""The team token's page: test (credits, last used, last error), remove, and
what happens when a stored token cannot be decrypted or is moved to another
team's row: it fails closed, pauses the team and says why."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from ximilar_portal.accounts.models import Credential, Team
from ximilar_portal.accounts.services import UNDECRYPTABLE_REASON, credential_set, key_ring
from ximilar_portal.audit.models import AuditEvent
from ximilar_portal.lib.crypto import KeyRing, generate_key_spec
from ximilar_portal.records.models import Record
from ximilar_portal.submissions import services as engine
from ximilar_portal.submissions.models import JobState

from .conftest import SANDBOX_TOKEN, client_for, jpeg_bytes, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def saved(owner, team):
    return credential_set(team=team, token=SANDBOX_TOKEN, user=owner)


def test_it_tests_the_token_and_shows_the_credits(sandbox, owner, team, saved):
    response = client_for(owner).post(reverse("accounts:token_test"))
    body = response.content.decode()
    assert "The token works." in body
    assert "of <strong>" in body
    saved.refresh_from_db()
    assert saved.credits_limit > 0 and saved.credits_used is not None
    assert saved.tested_at and saved.last_used_at and saved.last_error == ""
    assert [r.path for r in sandbox.requests()] == ["/account/v2/details/"]
    event = AuditEvent.objects.get(action="token.tested")
    assert event.target == "ok" and SANDBOX_TOKEN not in str(event.details)


def test_a_refused_token_records_the_error_and_pauses_the_team(sandbox, owner, team):
    credential_set(team=team, token="not-the-sandbox-token-1234", user=owner)
    response = client_for(owner).post(reverse("accounts:token_test"))
    assert b"Token test failed" in response.content
    credential = Credential.objects.get(team=team)
    assert "401" in credential.last_error
    team.refresh_from_db()
    assert team.blocked_reason == "token: refused by Ximilar (401)"
    # Saving a good token resumes the team.
    credential_set(team=team, token=SANDBOX_TOKEN, user=owner)
    team.refresh_from_db()
    assert team.blocked_reason == ""


def test_it_removes_the_token(owner, team, saved):
    response = client_for(owner).post(reverse("accounts:token_remove"))
    assert response.status_code == 302
    assert not Credential.objects.filter(team=team).exists()
    assert AuditEvent.objects.filter(team=team, action="token.removed").exists()
    assert b"not set" in client_for(owner).get(reverse("accounts:token")).content


def test_saving_twice_audits_set_then_replaced(owner, team, saved):
    credential_set(team=team, token=SANDBOX_TOKEN + "x", user=owner)
    actions = AuditEvent.objects.filter(team=team, action__startswith="token.")
    assert sorted(actions.values_list("action", flat=True)) == ["token.replaced", "token.set"]


def test_an_undecryptable_token_is_explained_and_blocks(sandbox, owner, team, saved):
    other_ring = KeyRing.parse(generate_key_spec("gone"))
    Credential.objects.filter(team=team).update(
        ciphertext=other_ring.encrypt(SANDBOX_TOKEN, bound_to=f"credential:team:{team.pk}")
    )
    client = client_for(owner)
    client.post(reverse("accounts:token_test"))
    team.refresh_from_db()
    assert team.blocked_reason == UNDECRYPTABLE_REASON
    page = client.get(reverse("accounts:token")).content.decode()
    assert "cannot be decrypted with the keys in XIMILAR_TOKEN_KEYS" in page  # token page
    assert "cannot be read with the keys this server has" in page  # banner
    assert sandbox.requests() == []  # nothing was sent with it


def make_record(owner):
    image = SimpleUploadedFile("a.jpg", jpeg_bytes())
    client_for(owner).post("/records/new/", {"image": image, "product_id": "p"})
    return Record.objects.filter(created_by=owner).latest("pk")


def test_ciphertext_moved_to_another_team_fails_closed(sandbox, monkeypatch, owner, team, saved):
    """Team B's row gets team A's ciphertext (a database edit, a bad restore):
    B's submission must block, never send anything, let alone A's token."""
    monkeypatch.setattr(engine, "submission_enqueue", lambda pk, **kw: None)
    other_owner = make_user("b-owner@example.com")
    team_b = other_owner.memberships.get().team
    credential_set(team=team_b, token="team-b-token-123456", user=other_owner)
    Credential.objects.filter(team=team_b).update(ciphertext=saved.ciphertext)
    record = make_record(other_owner)
    submission = engine.submission_create(
        team=team_b, user=other_owner, records=[record], service="generic_tags", options={}
    )
    engine.submission_process(submission_id=submission.pk)
    assert sandbox.requests() == []
    assert list(submission.jobs.values_list("state", flat=True)) == [JobState.BLOCKED]
    assert Team.objects.get(pk=team_b.pk).blocked_reason == UNDECRYPTABLE_REASON
    assert Team.objects.get(pk=team.pk).blocked_reason == ""  # A is unaffected
    assert key_ring().decrypt(saved.ciphertext, bound_to=f"credential:team:{team.pk}")


def test_the_token_page_says_so_before_any_submission_fails(owner, team, saved):
    Credential.objects.filter(team=team).update(ciphertext=saved.ciphertext[:-6] + "AAAAAA")
    page = client_for(owner).get(reverse("accounts:token")).content.decode()
    assert "The saved token cannot be used." in page
    team.refresh_from_db()
    assert team.blocked_reason == ""  # only looking does not pause the team
