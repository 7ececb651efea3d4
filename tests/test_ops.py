"""Health for operators: /healthz (database, broker, beat and each queue's
worker, by heartbeats) and the staff-only operations page (queue depths, the
oldest waiting record, the last hour per service, rate limits, messages set
aside), against the real database and broker and real worker and beat processes."""

import os
import socket
import threading
import time
import uuid
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client, override_settings
from django.utils import timezone
from django.utils.html import escape

from ximilar_portal.accounts.models import Team
from ximilar_portal.accounts.services import credential_set
from ximilar_portal.celery import app
from ximilar_portal.ops import services as ops_services
from ximilar_portal.ops.models import Heartbeat
from ximilar_portal.records.models import Record
from ximilar_portal.submissions import services
from ximilar_portal.submissions.models import JobState, RecordJob, Result, TeamQueue

from .conftest import (
    SANDBOX_TOKEN,
    WorkerProcess,
    client_for,
    jpeg_bytes,
    make_user,
    wait_for,
)
from .test_engine_workers import start_beat, worker_env

KINDS = ("engine", "heavy", "periodic")


def healthz(client=None, **extra):
    response = (client or Client()).get("/healthz", **extra)
    assert response["Content-Type"] == "application/json"
    return response, response.json()


def all_heartbeats_fresh():
    for kind in KINDS:
        ops_services.heartbeat_record(name=kind)


@pytest.fixture
def queues(settings):
    """Work queues of this test alone, that no worker reads; emptied after."""
    prefix = f"ops-test-{uuid.uuid4().hex[:8]}"
    settings.WORK_QUEUES = {
        "engine": prefix,
        "heavy": f"{prefix}-heavy",
        "periodic": f"{prefix}-periodic",
    }
    yield settings.WORK_QUEUES
    queues_emptied(settings.WORK_QUEUES.values())


def queues_emptied(names):
    with app.connection_for_write() as conn:
        for name in names:
            conn.default_channel.queue_declare(queue=name, durable=True, auto_delete=False)
            conn.default_channel.queue_purge(name)
            conn.default_channel.queue_delete(name)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- /healthz ---------------------------------------------------------------


@pytest.mark.django_db
def test_healthz_is_200_when_every_check_passes(queues):
    all_heartbeats_fresh()
    response, body = healthz()
    assert response.status_code == 200, body
    assert body["status"] == "ok" and body["failed"] == []
    assert set(body["checks"]) == {"database", "broker", "beat", "workers"}
    assert set(body["checks"]["workers"]["queues"]) == set(KINDS)
    assert Client().head("/healthz").status_code == 200
    assert Client().post("/healthz").status_code == 405


@pytest.mark.django_db
def test_healthz_answers_a_balancer_probing_by_address_over_http(queues, settings):
    """A load balancer asks the machine by its IP, over plain HTTP: neither
    ALLOWED_HOSTS nor the HTTPS redirect may turn its probe into a 400 or 301."""
    settings.SECURE_SSL_REDIRECT = True
    all_heartbeats_fresh()
    response, body = healthz(HTTP_HOST="10.1.2.3:8000")
    assert response.status_code == 200, body
    assert response["Cache-Control"].startswith("max-age=0")


@pytest.mark.django_db(transaction=True)
def test_healthz_is_503_naming_the_database_when_it_is_unreachable(queues):
    all_heartbeats_fresh()
    good = connection.settings_dict
    bad = dict(good)
    if connection.vendor == "sqlite":
        bad["NAME"] = "/nonexistent/folder/portal.sqlite3"
    else:
        bad["PORT"] = closed_port()
    connection.close()
    connection.settings_dict = bad
    try:
        response, body = healthz()
    finally:
        connection.close()
        connection.settings_dict = good
    assert response.status_code == 503
    assert "database" in body["failed"]
    assert body["checks"]["database"] == {"ok": False}
    assert body["checks"]["broker"]["ok"] is True
    # Back with the database: healthy again.
    assert healthz()[0].status_code == 200


@pytest.mark.django_db
def test_healthz_is_503_naming_the_broker_on_a_closed_port(queues, settings):
    all_heartbeats_fresh()
    with override_settings(CELERY_BROKER_URL=f"redis://127.0.0.1:{closed_port()}/0"):
        response, body = healthz()
    assert response.status_code == 503
    assert body["failed"] == ["broker"]
    assert body["checks"]["broker"] == {"ok": False}


@pytest.mark.django_db
def test_the_broker_check_gives_up_on_a_broker_that_never_answers(queues, settings):
    """A port that accepts connections and says nothing: the check ends after
    HEALTH_BROKER_TIMEOUT, not when the load balancer gives up."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes the handshakes; nobody ever reads
    settings.HEALTH_BROKER_TIMEOUT = 0.5
    outcome = {}

    def probe_once():
        with override_settings(CELERY_BROKER_URL=f"redis://127.0.0.1:{silent.getsockname()[1]}/0"):
            # The broker alone: this thread cannot see the test's uncommitted rows.
            outcome["response"], outcome["body"] = healthz(data={"check": "broker"})

    probe = threading.Thread(target=probe_once)
    probe.start()
    probe.join(timeout=60)  # generous: the point is that it ends at all
    silent.close()
    assert not probe.is_alive(), "the probe hung on a silent broker"
    assert outcome["response"].status_code == 503
    assert outcome["body"]["failed"] == ["broker"]


@pytest.mark.django_db
def test_healthz_is_503_naming_a_stale_queue_heartbeat(queues, settings, caplog):
    settings.HEALTH_HEARTBEAT_MAX_AGE = 60
    all_heartbeats_fresh()
    Heartbeat.objects.filter(name="heavy").update(seen_at=timezone.now() - timedelta(seconds=61))
    response, body = healthz()
    assert response.status_code == 503
    # A probe every few seconds while a queue is down sends no error e-mail each time.
    assert not [record for record in caplog.records if record.name == "django.request"]
    assert body["failed"] == ["workers"]
    assert body["checks"]["beat"]["ok"] is True
    heavy = body["checks"]["workers"]["queues"]["heavy"]
    assert heavy["ok"] is False and heavy["age_seconds"] >= 61
    assert body["checks"]["workers"]["queues"]["engine"]["ok"] is True


@pytest.mark.django_db
def test_healthz_says_beat_when_no_heartbeat_ran_anywhere(queues, settings):
    settings.HEALTH_HEARTBEAT_MAX_AGE = 60
    all_heartbeats_fresh()
    Heartbeat.objects.update(seen_at=timezone.now() - timedelta(minutes=5))
    response, body = healthz()
    assert response.status_code == 503
    assert body["failed"] == ["beat", "workers"]
    Heartbeat.objects.all().delete()  # a fresh install before beat's first beat
    response, body = healthz()
    assert body["failed"] == ["beat", "workers"]
    assert body["checks"]["beat"]["age_seconds"] is None


@pytest.mark.django_db
def test_healthz_checks_only_what_it_is_asked(queues):
    """A load balancer in front of several web machines probes the database
    alone: dead workers are no reason to stop sending people to this machine."""
    response = Client().get("/healthz", {"check": "database"})
    assert response.status_code == 200
    assert list(response.json()["checks"]) == ["database"]
    response = Client().get("/healthz", {"check": ["database", "workers"]})
    assert response.status_code == 503 and response.json()["failed"] == ["workers"]
    assert Client().get("/healthz", {"check": "nope"}).status_code == 400


@pytest.mark.django_db
def test_healthz_tells_nothing_secret_or_about_any_team(queues, owner, team, settings):
    credential_set(team=team, token=SANDBOX_TOKEN, user=owner)
    Team.objects.filter(pk=team.pk).update(name="Acme Secret Team")
    settings.HEALTH_HEARTBEAT_MAX_AGE = 60
    all_heartbeats_fresh()
    healthy = Client().get("/healthz").content.decode()
    Heartbeat.objects.update(seen_at=timezone.now() - timedelta(hours=1))
    with override_settings(CELERY_BROKER_URL=f"redis://:hunter2pass@127.0.0.1:{closed_port()}/0"):
        unhealthy = Client().get("/healthz").content.decode()
    assert '"status": "ok"' in healthy and '"broker"' in unhealthy
    for text in (healthy, unhealthy):
        for secret in (SANDBOX_TOKEN, "Acme", owner.email, settings.SECRET_KEY, "hunter2"):
            assert secret not in text
        for name in settings.WORK_QUEUES.values():
            assert name not in text  # kinds only, not the deployment's queue names


# --- The operations page ------------------------------------------------------


@pytest.fixture
def staff(db):
    user = make_user("ops@example.com")
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    return user


@pytest.fixture
def enqueued(monkeypatch):
    """Task hand-offs the in-process engine would have sent to the broker."""
    monkeypatch.setattr(services, "submission_enqueue", lambda pk, **kw: None)


def add_records(user, team, names):
    client = client_for(user)
    for number, name in enumerate(names):
        image = SimpleUploadedFile(f"{name}.jpg", jpeg_bytes(color=(number * 60, 90, 200)))
        client.post("/records/new/", {"image": image, "ximilar_id": name})
    credential_set(team=team, token=SANDBOX_TOKEN, user=user)
    return list(Record.objects.filter(team=team).order_by("ximilar_id"))


def ops_page(user):
    response = client_for(user).get("/ops/")
    assert response.status_code == 200
    return response, response.content.decode()


def test_everyone_but_staff_gets_404(owner, teammate, outsider, team):
    for user in (owner, teammate, outsider):
        assert client_for(user).get("/ops/").status_code == 404
    assert Client().get("/ops/").status_code == 404
    assert 'href="/ops/"' not in client_for(owner).get("/records/").content.decode()


def test_staff_find_the_page_in_the_navigation(staff):
    assert 'href="/ops/"' in client_for(staff).get("/records/").content.decode()


def test_the_page_works_with_an_empty_database(staff, queues):
    Heartbeat.objects.all().delete()
    response, html = ops_page(staff)
    assert "No record is waiting." in html
    assert "Nothing was stored or failed in the last hour" in html
    assert response.context["report"]["failed"] == ["beat", "workers"]
    assert [queue["depth"] for queue in response.context["queues"]] == [0, 0, 0]


def test_staff_sees_each_queue_depth_from_the_broker(staff, queues):
    for _ in range(3):
        app.send_task("ops.heartbeat", args=["nobody"], queue=queues["heavy"])
    app.send_task("ops.heartbeat", args=["nobody"], queue=queues["periodic"])
    response, html = ops_page(staff)
    depths = {queue["kind"]: queue["depth"] for queue in response.context["queues"]}
    assert depths == {"engine": 0, "heavy": 3, "periodic": 1}
    assert queues["heavy"] in html


def test_staff_sees_the_oldest_waiting_record(staff, queues, owner, team, outsider, enqueued):
    mine = add_records(owner, team, ["a0", "a1"])
    theirs_team = outsider.memberships.get().team
    theirs = add_records(outsider, theirs_team, ["b0"])
    newer = services.submission_create(
        team=team, user=owner, records=mine, service="generic_tags", options={}
    )
    older = services.submission_create(
        team=theirs_team, user=outsider, records=theirs, service="generic_tags", options={}
    )
    RecordJob.objects.filter(submission=older).update(
        created_at=timezone.now() - timedelta(hours=3)
    )
    response, html = ops_page(staff)
    assert response.context["oldest"].submission_id == older.pk
    assert response.context["waiting"] == 3
    assert escape(theirs_team.name) in html
    assert f"/admin/submissions/submission/{older.pk}/change/" in html
    assert "3\xa0hours" in html
    assert newer.pk != older.pk


def test_staff_sees_the_last_hour_per_service(staff, queues, owner, team, sandbox, enqueued):
    records = add_records(owner, team, ["r0", "r1", "r2", "r3"])
    # Generic tagging: one record refused by Ximilar, three answered.
    sandbox.faults.fail_record_ids = {"r1"}
    tags = services.submission_create(
        team=team, user=owner, records=records, service="generic_tags", options={}
    )
    services.submission_process(submission_id=tags.pk)
    sandbox.faults.clear()
    # Colors: a server error first, so every record waits for a retry...
    sandbox.faults.status_code = 500
    colors = services.submission_create(
        team=team, user=owner, records=records, service="colors_generic", options={}
    )
    services.submission_process(submission_id=colors.pk)
    sandbox.faults.clear()
    rows = {row["service"]: row for row in ops_page(staff)[0].context["services"]}
    assert rows["colors_generic"]["waiting_retry"] == 4
    assert rows["colors_generic"]["stored"] == 0
    # ... then answered on the second attempt.
    RecordJob.objects.filter(submission=colors).update(next_attempt_at=None)
    services.submission_process(submission_id=colors.pk)
    assert Result.objects.count() == 7

    response, html = ops_page(staff)
    rows = {row["service"]: row for row in response.context["services"]}
    assert rows["generic_tags"] | {"label": ""} == {
        "service": "generic_tags",
        "label": "",
        "stored": 3,
        "failed": 1,
        "retries": 0,
        "waiting_retry": 0,
        "failure_rate": 0.25,
    }
    assert (rows["colors_generic"]["stored"], rows["colors_generic"]["failed"]) == (4, 0)
    assert rows["colors_generic"]["retries"] == 4
    assert rows["colors_generic"]["waiting_retry"] == 0
    assert "25 %" in html
    assert any(reason["n"] == 1 for reason in response.context["reasons"])

    # What happened more than an hour ago is not counted.
    RecordJob.objects.filter(submission=tags, state=JobState.FAILED).update(
        finished_at=timezone.now() - timedelta(minutes=61)
    )
    Result.objects.filter(job__submission=colors).update(
        created_at=timezone.now() - timedelta(minutes=61)
    )
    rows = {row["service"]: row for row in ops_page(staff)[0].context["services"]}
    assert (rows["generic_tags"]["stored"], rows["generic_tags"]["failed"]) == (3, 0)
    assert "colors_generic" not in rows


def test_staff_sees_the_rate_limit_in_force_per_team(
    staff, queues, owner, team, outsider, settings, enqueued
):
    settings.XIMILAR_RATE_LIMIT = 5
    other = outsider.memberships.get().team
    now_us = int(time.time() * 1_000_000)
    TeamQueue.objects.create(team=team, paused=True, paused_at=timezone.now(), paused_by=owner)
    TeamQueue.objects.create(team=other, next_slot_us=now_us + 30_000_000)  # a 429's backoff
    idle = Team.objects.create(name="Idle team")
    TeamQueue.objects.create(team=idle, next_slot_us=now_us - 5_000_000)
    response, html = ops_page(staff)
    rows = {row["team"].pk: row for row in response.context["rate_rows"]}
    assert set(rows) == {team.pk, other.pk}, "an idle team is not listed"
    assert rows[team.pk]["paused"] and rows[team.pk]["paused_by"] == owner
    assert 20 < rows[other.pk]["next_slot_in"] <= 30
    assert rows[other.pk]["limit"] == 5
    assert "paused" in html and owner.email in html
    assert "requests/s" in html


# --- Heartbeats with real processes ----------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_real_beat_and_workers_keep_every_queue_fresh(tmp_path, settings, sandbox):
    """Beat sends the heartbeat to each queue; a worker on the engine's queue
    alone leaves the other two stale (503, naming them); workers on them
    make /healthz 200."""
    prefix = f"ops-live-{uuid.uuid4().hex[:6]}"
    env = worker_env(
        sandbox.url,
        tmp_path,
        CELERY_QUEUE=prefix,
        HEALTH_HEARTBEAT_SECONDS="0.5",
        HEALTH_HEARTBEAT_MAX_AGE="30",  # generous, the machine is busy (also each message's expiry)
        CELERY_SWEEP_SECONDS="3600",
        HISTORY_SYNC_SECONDS="3600",
    )
    settings.WORK_QUEUES = {"engine": prefix, "heavy": f"{prefix}-heavy"}
    settings.WORK_QUEUES["periodic"] = f"{prefix}-periodic"
    settings.HEALTH_HEARTBEAT_MAX_AGE = 30
    beat, beat_log = start_beat(env, tmp_path)
    workers = [WorkerProcess(env, tmp_path / "engine.log", queues=(prefix,)).wait_ready()]
    try:

        def queue_ok(body, kind):
            return body["checks"]["workers"]["queues"][kind]["ok"]

        wait_for(
            lambda: queue_ok(healthz()[1], "engine"),
            timeout=90,
            message="the engine queue's heartbeat",
        )
        response, body = healthz()
        assert body["checks"]["beat"]["ok"] is True
        assert response.status_code == 503
        assert body["failed"] == ["workers"]
        assert not queue_ok(body, "heavy") and not queue_ok(body, "periodic")

        for kind in ("heavy", "periodic"):
            queues = (settings.WORK_QUEUES[kind],)
            log_path = tmp_path / f"{kind}.log"
            workers.append(WorkerProcess(env, log_path, queues=queues).wait_ready())
        wait_for(lambda: healthz()[0].status_code == 200, timeout=90, message="/healthz 200")
        assert set(Heartbeat.objects.values_list("name", flat=True)) == set(KINDS)
    finally:
        for worker in workers:
            worker.stop()
        beat.terminate()
        beat.wait(timeout=15)
        beat_log.close()
        queues_emptied(settings.WORK_QUEUES.values())


def test_staff_sees_the_messages_the_broker_set_aside(staff, queues, settings, tmp_path):
    settings.BROKER_QUARANTINE_DIR = tmp_path / "quarantine"
    assert "is empty" in ops_page(staff)[1], "a folder not made yet is an empty one"
    settings.BROKER_QUARANTINE_DIR.mkdir()
    for age, name in ((600, "1.000_a.celery.msg"), (60, "2.000_b.celery-heavy.msg")):
        path = settings.BROKER_QUARANTINE_DIR / name
        path.write_text("{not json")
        os.utime(path, (time.time() - age, time.time() - age))
    response, html = ops_page(staff)
    assert response.context["quarantine"]["count"] == 2
    assert "2.000_b.celery-heavy.msg" in html, "the newest is named"
    assert "set aside 1\xa0minute ago" in html
    settings.BROKER_QUARANTINE_DIR = None  # Redis or AMQP
    assert "Only the filesystem broker sets undecodable messages aside" in ops_page(staff)[1]


def test_the_page_says_so_when_the_broker_is_down(staff, queues):
    all_heartbeats_fresh()
    with override_settings(CELERY_BROKER_URL=f"redis://127.0.0.1:{closed_port()}/0"):
        response, html = ops_page(staff)
    assert [queue["depth"] for queue in response.context["queues"]] == [None, None, None]
    assert "broker did not answer" in html
    assert response.context["report"]["failed"] == ["broker"]
