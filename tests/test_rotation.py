"""`manage.py rotate_token_keys`: counts per key id, safe to run twice and to
race with a token being saved; and, with the real worker, rotation while
submissions run, after which the portal starts without the old key."""

import io
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from ximilar_portal.accounts.models import Credential
from ximilar_portal.accounts.services import credential_set, credential_token, key_ring
from ximilar_portal.lib.crypto import KeyRing
from ximilar_portal.records.models import Record
from ximilar_portal.submissions.models import JobState, RecordJob
from ximilar_portal.submissions.services import submission_create

from .conftest import (
    SANDBOX_TOKEN,
    client_for,
    database_url_for_workers,
    jpeg_bytes,
    make_user,
    wait_for,
)


def ring_entries():
    return [entry.strip() for entry in settings.XIMILAR_TOKEN_KEYS.split(",") if entry.strip()]


@pytest.fixture
def put_next_key_first(settings):
    """Changes the ring as an operator does before rotating: the new key first,
    the old one still there. Tests run with `test1,test2` (tests/environment.py).
    Returns the new key's id."""

    def change():
        old, new = ring_entries()[:2]
        settings.XIMILAR_TOKEN_KEYS = f"{new},{old}"
        return KeyRing.parse(new).primary_id

    return change


def rotate():
    out, err = io.StringIO(), io.StringIO()
    call_command("rotate_token_keys", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def teams_with_tokens(count):
    owners = [make_user(f"rot{n}@example.com") for n in range(count)]
    for owner in owners:
        credential_set(team=owner.memberships.get().team, token=SANDBOX_TOKEN, user=owner)
    return owners


@pytest.mark.django_db
def test_it_rotates_reports_per_key_and_is_safe_to_run_twice(put_next_key_first):
    teams_with_tokens(3)
    old_id = key_ring().primary_id
    next_key_first = put_next_key_first()
    out, err = rotate()
    assert f"before: 3 token(s) on key {old_id}" in out
    assert f"rotated: 3 token(s) to primary key {next_key_first}" in out
    out, err = rotate()
    assert f"before: 3 token(s) on key {next_key_first}" in out and "rotated: 0" in out
    for credential in Credential.objects.all():
        assert key_ring().key_id_of(credential.ciphertext) == next_key_first
        assert credential_token(team_id=credential.team_id) == SANDBOX_TOKEN


@pytest.mark.django_db
def test_it_reports_unreadable_rows_and_goes_on(put_next_key_first):
    teams_with_tokens(2)
    put_next_key_first()
    first, second = Credential.objects.order_by("pk")
    Credential.objects.filter(pk=first.pk).update(ciphertext="garbage")
    out, err = rotate()
    assert "rotated: 1 token(s)" in out
    assert "unreadable: 1 token(s)" in err and "garbage" not in out + err


@pytest.mark.django_db
def test_a_token_saved_during_rotation_is_not_overwritten(put_next_key_first, monkeypatch):
    (owner,) = teams_with_tokens(1)
    put_next_key_first()
    team = owner.memberships.get().team
    real_rotate = KeyRing.rotate

    def rotate_while_someone_saves(self, value, *, bound_to):
        rotated = real_rotate(self, value, bound_to=bound_to)
        credential_set(team=team, token="a-newer-token-5678", user=owner)
        return rotated

    monkeypatch.setattr(KeyRing, "rotate", rotate_while_someone_saves)
    out, _ = rotate()
    assert "rotated: 0 token(s)" in out  # the compare-and-set saw the newer value
    assert credential_token(team_id=team.pk) == "a-newer-token-5678"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_rotation_while_submissions_run(sandbox, celery_worker, put_next_key_first):
    sandbox.faults.latency_ms = 120
    owners = teams_with_tokens(6)
    for owner in owners:
        team = owner.memberships.get().team
        for number in range(2):
            image = SimpleUploadedFile(f"{number}.jpg", jpeg_bytes(color=(40 * number, 90, 30)))
            client_for(owner).post("/records/new/", {"image": image, "product_id": f"p{number}"})
        records = list(Record.objects.filter(team=team))
        submission_create(
            team=team, user=owner, records=records, service="generic_tags", options={}
        )

    wait_for(
        lambda: RecordJob.objects.filter(state=JobState.DONE).exists(), message="a first result"
    )
    still_running = RecordJob.objects.exclude(state=JobState.DONE).count()
    next_key_first = put_next_key_first()
    out, _ = rotate()
    assert still_running > 0, "rotation must overlap the submissions"
    assert "rotated: 6 token(s)" in out

    def finished():
        return not RecordJob.objects.exclude(state__in=[JobState.DONE, JobState.FAILED]).exists()

    wait_for(finished, timeout=60, message="all submissions to finish")
    assert set(RecordJob.objects.values_list("state", flat=True)) == {JobState.DONE}
    assert RecordJob.objects.count() == 12
    assert {
        key_ring().key_id_of(c) for c in Credential.objects.values_list("ciphertext", flat=True)
    } == {next_key_first}
    assert_starts_and_decrypts_with_only(ring_entries()[0], expected=6)


def assert_starts_and_decrypts_with_only(key_spec, *, expected):
    """A fresh process (settings, app registry, key-ring check) with the old
    key gone from the environment reads every stored token."""
    env = dict(os.environ, XIMILAR_TOKEN_KEYS=key_spec, DATABASE_URL=database_url_for_workers())
    script = (
        "from ximilar_portal.accounts.models import Credential\n"
        "from ximilar_portal.accounts.services import credential_token\n"
        "ok = sum(1 for c in Credential.objects.all() if credential_token(team_id=c.team_id))\n"
        "print('decrypted', ok)\n"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"decrypted {expected}" in result.stdout
    assert SANDBOX_TOKEN not in result.stdout + result.stderr
