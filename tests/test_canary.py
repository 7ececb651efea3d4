"""The canary: the team's token (conftest.SANDBOX_TOKEN, random per run) is
saved, then every place it could leak to is read back. It may be found in
none of them, and in the database only as ciphertext.

Channels: every page as owner and as anonymous visitor (bodies and headers),
form-error re-renders, the admin, the 500 e-mail (text and HTML), DEBUG logs
of this process, the worker's DEBUG log, the task message as Celery publishes
it and as it sits in the broker, stdout/stderr, and every text column of every
table."""

import base64
import json
import logging
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.contrib import admin
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils.log import AdminEmailHandler

from ximilar_portal.accounts.models import Credential
from ximilar_portal.accounts.services import credential_set
from ximilar_portal.submissions import services as engine
from ximilar_portal.submissions.models import JobState, RecordJob

from . import test_isolation as walker
from .conftest import SANDBOX_TOKEN, client_for, jpeg_bytes, wait_for

scenario = walker.scenario  # the isolation walker's team, objects and saved token

CANARY = SANDBOX_TOKEN
# The token, what the UI may not show of it (all but the last four), and the
# encodings it could travel in.
NEEDLES = [
    CANARY,
    CANARY[:-4],
    base64.b64encode(CANARY.encode()).decode()[:-4],
    quote(CANARY),
    json.dumps(CANARY)[1:-1],
]
# Apps whose admin change pages are opened (every app's list page is).
CHANGE_PAGES_OF = {"accounts", "audit", "axes"}
# Pattern arguments that are not objects of the scenario.
OTHER_KWARGS = {
    "accounts:password_reset_confirm": {"uidb64": "MQ", "token": "set-password"},
    "accounts:invitation": {"token": "not-a-real-invitation"},
}


def assert_clean(text, channel):
    if isinstance(text, bytes | memoryview):
        text = bytes(text).decode("utf-8", "replace")
    found = [needle for needle in NEEDLES if needle in str(text)]
    assert not found, f"the token leaked into {channel}"


def response_text(response):
    headers = "\n".join(f"{k}: {v}" for k, v in response.items())
    cookies = response.cookies.output()
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return f"{headers}\n{cookies}\n{body.decode('utf-8', 'replace')}"


def every_url(objects):
    for name in sorted(set(walker.url_names())):
        if name in walker.OBJECT_URLS:
            yield name, reverse(name, kwargs=walker.OBJECT_URLS[name](objects))
        elif name in OTHER_KWARGS:
            yield name, reverse(name, kwargs=OTHER_KWARGS[name])
        else:
            yield name, reverse(name)


@pytest.fixture
def canary_scenario(scenario):
    """The isolation walker's scenario, which saves SANDBOX_TOKEN as the team's
    token."""
    assert Credential.objects.get(team=scenario["team"]).last4 == CANARY[-4:]
    return scenario


@pytest.mark.django_db
def test_the_token_is_on_no_page(canary_scenario, owner, caplog):
    caplog.set_level(logging.DEBUG)
    owner_client, anonymous = client_for(owner), Client()
    walked = 0
    for name, url in every_url(canary_scenario):
        for client in (owner_client, anonymous):
            response = client.get(url)
            assert response.status_code < 500, f"GET {name}"
            assert_clean(response_text(response), f"GET {name}")
            walked += 1
    assert walked == 2 * len(set(walker.url_names()))
    assert_clean(caplog.text, "the logs")


@pytest.mark.django_db
def test_the_token_is_not_in_form_error_rerenders(canary_scenario, owner, caplog):
    caplog.set_level(logging.DEBUG)
    client = client_for(owner)
    url = reverse("accounts:token")
    bad_inputs = [
        {"token": CANARY, "workspace": "w" * 65},  # valid token, bad workspace
        {"token": CANARY + " x"},  # a space in the token
        {"token": CANARY[:5]},  # too short
        {"token": CANARY, "workspace": "w" * 99, "extra": CANARY},  # an echoed field?
    ]
    for data in bad_inputs:
        response = client.post(url, data)
        assert response.status_code == 400
        assert b"has-error" in response.content
        assert_clean(response_text(response), "the token form's error page")
    saved = client.post(url, {"token": CANARY}, follow=True)
    assert_clean(response_text(saved), "the page after saving")
    tested = client.post(reverse("accounts:token_test"))
    assert b"The token works." in tested.content
    assert_clean(response_text(tested), "the token test page")
    assert_clean(caplog.text, "the logs")


@pytest.mark.django_db
def test_the_token_is_not_in_the_admin(canary_scenario, django_user_model):
    superuser = django_user_model.objects.create_superuser(email="root@example.com", password="x")
    client = client_for(superuser)
    pages = ["/admin/"]
    for model in admin.site._registry:
        meta = model._meta
        pages.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        first = model.objects.order_by("pk").first()
        if first is not None and meta.app_label in CHANGE_PAGES_OF:
            pages.append(
                reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[first.pk])
            )
    pages.append(reverse("admin:accounts_credential_changelist") + f"?q={CANARY[-4:]}")
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
        assert_clean(response_text(response), f"admin {page}")
    assert any("credential" in page and "change" in page for page in pages)
    assert any("/team/" in page and "change" in page for page in pages)


@pytest.fixture
def error_mail(settings):
    """A forced 500 as in production: DEBUG off, ADMINS set; both the text
    e-mail Django sends by default and the HTML one an operator may enable."""
    settings.DEBUG = False
    settings.ADMINS = [("Ops", "ops@example.com")]
    html_handler = AdminEmailHandler(include_html=True)
    logger = logging.getLogger("django.request")
    logger.addHandler(html_handler)
    mail.outbox.clear()
    yield mail.outbox
    logger.removeHandler(html_handler)


def mail_text(message):
    parts = [message.subject, message.body]
    parts += [content for content, _ in getattr(message, "alternatives", [])]
    return "\n".join(parts)


@pytest.mark.django_db
def test_the_token_is_not_in_the_500_email(canary_scenario, owner, error_mail, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    client = Client(raise_request_exception=False)
    client.force_login(owner)

    def explode(*args, **kwargs):
        raise RuntimeError("forced failure")

    # 1. While saving: the token is in the POST and in the service's locals.
    monkeypatch.setattr(Credential.objects, "update_or_create", explode)
    assert client.post(reverse("accounts:token"), {"token": CANARY}).status_code == 500
    monkeypatch.undo()
    # 2. While calling Ximilar: the Authorization header is in requests' frames.
    monkeypatch.setattr("requests.adapters.HTTPAdapter.send", explode)
    assert client.post(reverse("accounts:token_test")).status_code == 500
    assert len(error_mail) == 4  # two errors, text and HTML report each
    assert any("forced failure" in mail_text(message) for message in error_mail)
    assert any("Traceback" in mail_text(message) for message in error_mail)
    html = [content for m in error_mail for content, _ in getattr(m, "alternatives", [])]
    assert any("HTTPAdapter" in page or "adapters.py" in page for page in html)  # deep frames
    for message in error_mail:
        assert_clean(mail_text(message), "the 500 e-mail")
    assert_clean(caplog.text, "the logs")


@pytest.mark.django_db
def test_the_token_is_not_in_the_logs_of_a_failing_submission(
    canary_scenario, owner, team, sandbox, monkeypatch, caplog, capfd
):
    """In this process, with DEBUG everywhere, including urllib3."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="urllib3")
    monkeypatch.setattr(engine, "submission_enqueue", lambda pk, **kw: None)
    submission = canary_scenario["submission"]
    for status in (500, 401):
        sandbox.faults.status_code = status
        RecordJob.objects.filter(submission=submission).update(next_attempt_at=None)
        engine.submission_process(submission_id=submission.pk)
    assert sandbox.requests(), "the calls were made"
    job = RecordJob.objects.get(submission=submission)
    assert job.state == JobState.BLOCKED and job.error_message
    assert_clean(caplog.text, "DEBUG logs")
    assert_clean(job.error_message + Credential.objects.get(team=team).last_error, "errors")
    out, err = capfd.readouterr()
    assert_clean(out + err, "stdout/stderr")
    assert_database_holds_only_ciphertext()


def assert_database_holds_only_ciphertext():
    """Every text value of every table; the credential row only as ciphertext."""
    scanned = 0
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            # Table names from the database's own catalogue, quoted.
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            for row in cursor.fetchall():
                for value in row:
                    if isinstance(value, str | bytes | memoryview):
                        assert_clean(value, f"table {table}")
                        scanned += 1
    ciphertexts = Credential.objects.values_list("ciphertext", flat=True)
    assert ciphertexts and all(c.startswith("enc:aesgcm:") for c in ciphertexts)
    assert scanned > 50
    return scanned


# --- With the real worker and broker ---------------------------------------------


def raw_broker_messages(queue):
    """The messages of `queue` exactly as the broker stores them."""
    url = settings.CELERY_BROKER_URL
    if url.startswith("filesystem://"):
        folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_out"])
        return [path.read_bytes() for path in folder.glob(f"*.{queue}.msg")]
    if url.startswith("redis://"):
        import redis

        return redis.Redis.from_url(url).lrange(queue, 0, -1)
    pytest.fail(f"no raw reader for broker {url.split(':')[0]}")


def drop_queue(queue):
    from ximilar_portal.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_delete(queue)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_token_is_not_in_broker_messages_or_the_worker_log(owner, team, sandbox, celery_worker):
    from celery.signals import before_task_publish

    from ximilar_portal.submissions.tasks import process_submission

    credential_set(team=team, token=CANARY, user=owner)
    image = SimpleUploadedFile("a.jpg", jpeg_bytes())
    client_for(owner).post("/records/new/", {"image": image, "product_id": "p"})
    published = []

    def keep(body=None, headers=None, **kwargs):
        published.append(json.dumps([body, headers], default=str))

    before_task_publish.connect(keep)
    try:
        sandbox.faults.status_code = 500  # the call fails; the task retries
        record = owner.memberships.get().team.records.get()
        submission = engine.submission_create(
            team=team, user=owner, records=[record], service="generic_tags", options={}
        )
        wait_for(lambda: sandbox.requests(), message="the worker's failing call")
        # The same task, to a queue no worker reads, to see it in the broker.
        queue = f"canary-{CANARY[-8:]}"
        process_submission.apply_async((submission.pk,), queue=queue)
    finally:
        before_task_publish.disconnect(keep)
    raw = raw_broker_messages(queue)
    drop_queue(queue)
    assert (
        len(raw) == 1
        and str(submission.pk) in base64.b64decode(json.loads(raw[0])["body"]).decode()
    )
    assert published and all(str(submission.pk) in message for message in published)
    for message in published + raw:
        assert_clean(message, "a Celery message")
    wait_for(
        lambda: RecordJob.objects.filter(submission=submission, attempts__gte=1).exists(),
        message="the failure recorded",
    )
    assert "HTTP 500" in RecordJob.objects.get(submission=submission).error_message
    assert_clean(celery_worker.log(), "the worker's DEBUG log")
    sandbox.faults.status_code = None
