"""Every fault answers cleanly: a broker that is down, a storage that is full,
a database that someone else holds locked. Each answers a normal page or a
503 with Retry-After, never a 500; nothing is half-stored; nothing waits for
ever (the sweeps hand the work over again once the broker is back).

The faults are real and injected at one seam each: the Celery app's broker URL
(a Redis port on loopback that nobody listens on), the default storage backend
(a disk with a few bytes left, below), a second database connection holding
the lock."""

import errno
import os
import socket
import sqlite3
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.core.files.storage import FileSystemStorage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from ximilar_portal.accounts.services import credential_set
from ximilar_portal.celery import app
from ximilar_portal.history import tasks as history_tasks
from ximilar_portal.history.models import Export
from ximilar_portal.history.services import summary_refresh
from ximilar_portal.lib import background
from ximilar_portal.lib.images import make_thumbnail
from ximilar_portal.records import batches
from ximilar_portal.records import tasks as records_tasks
from ximilar_portal.records.models import BatchItem, Record, UploadBatch
from ximilar_portal.submissions import tasks as submissions_tasks
from ximilar_portal.submissions.models import RecordJob, Submission

from .conftest import SANDBOX_TOKEN, client_for, jpeg_bytes, wait_for

pytestmark = pytest.mark.django_db

UNREACHABLE_IMAGE = "http://127.0.0.1:9/{}.jpg"  # loopback; the preview fetch refuses it


# --- A full disk ---------------------------------------------------------------------------


class FullDisk(FileSystemStorage):
    """The media storage on a disk with `free` bytes left: a write that does not
    fit stops half-way with ENOSPC, as on a real full disk (the part written
    stays). Chosen over a tiny tmpfs, which needs mount rights CI lacks, and over
    chmod, which does not stop root."""

    free = 0

    def _save(self, name, content):
        path = Path(self.path(name))
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "xb") as out:
            for chunk in content.chunks():
                room = max(FullDisk.free, 0)
                out.write(chunk[:room])
                FullDisk.free -= len(chunk)
                if len(chunk) > room:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return name


@pytest.fixture
def media(settings, tmp_path):
    """The default storage in a folder of its own, with room for `free` bytes."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "tests.test_faults.FullDisk",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }
    FullDisk.free = 10**9
    return tmp_path / "media"


def stored_files(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def assert_unavailable(response, words=b"nothing was saved"):
    assert response.status_code == 503, response.content[:300]
    assert int(response["Retry-After"]) > 0
    assert words in response.content.lower()


def image_bytes(color=(10, 20, 30)):
    return jpeg_bytes(color=color, size=(300, 200))


def image_upload(color=(10, 20, 30)):
    return SimpleUploadedFile("photo.jpg", image_bytes(color), "image/jpeg")


def room_for(what: str) -> int:
    """Free bytes with which the image's write, or else its thumbnail's, stops half-way."""
    image = image_bytes()
    if what == "image":
        return len(image) // 2
    return len(image) + len(make_thumbnail(image)) // 2


@pytest.mark.parametrize("fails", ["image", "thumbnail"])
def test_a_full_disk_answers_503_on_the_record_form_and_keeps_no_file(owner, media, fails):
    FullDisk.free = room_for(fails)
    response = client_for(owner).post(reverse("records:new"), {"image": image_upload()})
    assert_unavailable(response, b"storage is unavailable")
    assert not Record.objects.exists()
    assert stored_files(media) == []


def test_a_full_disk_answers_503_json_to_the_upload_script(owner, media):
    client = client_for(owner)
    batch = batches.batch_create(team=owner.memberships.get().team, user=owner, kind="files")
    FullDisk.free = room_for("thumbnail")
    response = client.post(
        reverse("records:batch_file", args=[batch.pk]),
        {"file": image_upload()},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert "nothing was saved" in response.json()["message"]
    assert not Record.objects.exists() and not BatchItem.objects.exists()
    assert stored_files(media) == []

    FullDisk.free = 10**9  # room again: the same request succeeds
    response = client.post(
        reverse("records:batch_file", args=[batch.pk]),
        {"file": image_upload()},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 201
    record = Record.objects.get()
    assert {p.name for p in stored_files(media)} == {
        Path(record.image.name).name,
        Path(record.thumbnail.name).name,
    }


def test_a_full_disk_answers_503_on_an_import_and_keeps_no_batch(owner, media):
    FullDisk.free = 10
    content = b"_id,_url\na,http://127.0.0.1:9/a.jpg\n"
    response = client_for(owner).post(
        "/records/import/", {"file": SimpleUploadedFile("rows.csv", content)}
    )
    assert_unavailable(response)
    assert not UploadBatch.objects.exists()
    assert stored_files(media) == []


def test_a_full_disk_fails_a_background_export_clearly_and_keeps_no_file(owner, media, monkeypatch):
    team = owner.memberships.get().team
    Record.objects.create(team=team, ximilar_id="one")
    export = background_export(owner, monkeypatch)
    FullDisk.free = 3
    history_tasks.run_export(export.pk)
    export.refresh_from_db()
    assert export.state == "failed"
    assert "storage is unavailable" in export.error_message
    assert stored_files(media) == []


def background_export(owner, monkeypatch):
    from ximilar_portal.history import views

    monkeypatch.setattr(views, "INLINE_EXPORT_ROWS", 0)
    team = owner.memberships.get().team
    summary_refresh(record_ids=Record.objects.filter(team=team).values_list("pk", flat=True))
    response = client_for(owner).post(reverse("history:export"), {"format": "csv", "query": ""})
    assert response.status_code == 302
    return Export.objects.get()


# --- A database someone else holds locked ------------------------------------------------


@contextmanager
def database_locked(*tables):
    """Another connection holds the write lock: the whole SQLite file (BEGIN
    IMMEDIATE), or these PostgreSQL tables (ACCESS EXCLUSIVE: reads wait too)."""
    settings_dict = connection.settings_dict
    if connection.vendor == "sqlite":
        holder = sqlite3.connect(settings_dict["NAME"], isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
    else:
        import psycopg

        holder = psycopg.connect(
            dbname=settings_dict["NAME"],
            user=settings_dict["USER"],
            password=settings_dict["PASSWORD"] or None,
            host=settings_dict["HOST"] or "localhost",
            port=settings_dict["PORT"] or 5432,
        )
        holder.execute(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")
    try:
        yield
    finally:
        holder.rollback()
        holder.close()


@pytest.fixture
def short_lock_wait(settings):
    settings.DATABASE_WEB_LOCK_TIMEOUT = 0.5


@pytest.mark.django_db(transaction=True)
def test_an_upload_during_a_lock_answers_503_and_keeps_nothing(owner, media, short_lock_wait):
    client = client_for(owner)
    batch = batches.batch_create(team=owner.memberships.get().team, user=owner, kind="files")
    url = reverse("records:batch_file", args=[batch.pk])
    with database_locked("records_record", "records_batchitem"):
        response = client.post(url, {"file": image_upload()}, HTTP_ACCEPT="application/json")
        assert response.status_code == 503
        assert response.json()["status"] == "unavailable"
        assert int(response["Retry-After"]) > 0
        form = client.post(reverse("records:new"), {"image": image_upload((90, 1, 1))})
        assert_unavailable(form, b"database is busy")
    assert not Record.objects.exists() and not BatchItem.objects.exists()
    assert stored_files(media) == []

    response = client.post(url, {"file": image_upload()}, HTTP_ACCEPT="application/json")
    assert response.status_code == 201
    assert Record.objects.count() == BatchItem.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_an_import_during_a_lock_saves_nothing_or_is_finished_later(
    owner, media, short_lock_wait, settings
):
    client = client_for(owner)
    rows = b"_id,_url\na,http://127.0.0.1:9/a.jpg\n"
    with database_locked("records_uploadbatch"):
        response = client.post("/records/import/", {"file": SimpleUploadedFile("a.csv", rows)})
    assert_unavailable(response, b"database is busy")
    assert not UploadBatch.objects.exists() and stored_files(media) == []
    if connection.vendor == "sqlite":
        return  # SQLite locks the whole file: the batch row is the first write refused

    with database_locked("records_batchitem"):  # the batch is saved, its rows' check is not
        response = client.post("/records/import/", {"file": SimpleUploadedFile("b.csv", rows)})
    assert response.status_code == 302
    batch = UploadBatch.objects.get()
    assert batch.state == "parsing" and not batch.items.exists()
    settings.BACKGROUND_SWEEP_GRACE_SECONDS = 0
    settings.EXPORT_STALE_SECONDS = 0
    assert background.stale(UploadBatch.objects.filter(pk=batch.pk)).exists(), "for the sweep"
    batches.import_check(batch_id=batch.pk)  # as the worker the sweep hands it to
    assert UploadBatch.objects.get().state == "preview"


@pytest.mark.django_db(transaction=True)
def test_a_submit_during_a_lock_answers_503_and_sends_nothing(owner, short_lock_wait):
    team = owner.memberships.get().team
    credential_set(team=team, token=SANDBOX_TOKEN, user=owner)
    record = Record.objects.create(team=team, ximilar_id="one")
    client = client_for(owner)
    url = reverse("submissions:submit_record", args=[record.pk])
    form = {"service": "generic_tags", "lang": "en"}
    with database_locked("submissions_submission", "submissions_recordjob"):
        assert_unavailable(client.post(url, form), b"database is busy")
    assert not Submission.objects.exists() and not RecordJob.objects.exists()

    assert client.post(url, form).status_code == 302
    assert RecordJob.objects.filter(record=record).count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_history_during_a_lock_answers_503_then_opens(owner, short_lock_wait):
    team = owner.memberships.get().team
    Record.objects.bulk_create([Record(team=team, ximilar_id="new")])  # to summarise on visit
    client = client_for(owner)
    with (
        database_locked("history_recordsummary", "history_syncmark"),
        CaptureQueriesContext(connection) as queries,
    ):
        assert_unavailable(client.get(reverse("history:list")), b"database is busy")
    first = queries.captured_queries[0]["sql"]
    assert first in ("PRAGMA busy_timeout = 500", "SET lock_timeout = 500"), "a person waits less"
    response = client.get(reverse("history:list"))
    assert response.status_code == 200
    assert b"new" in response.content


@pytest.mark.django_db(transaction=True)
def test_the_periodic_tasks_skip_a_tick_during_a_lock_and_work_at_the_next(owner, settings):
    settings.BACKGROUND_SWEEP_GRACE_SECONDS = 0
    settings.EXPORT_STALE_SECONDS = 0
    team = owner.memberships.get().team
    record = Record.objects.create(
        team=team, ximilar_id="u", image_url=UNREACHABLE_IMAGE, preview="pending"
    )
    with (
        short_busy_timeout(),
        database_locked(
            "records_record",
            "records_uploadbatch",
            "history_export",
            "submissions_recordjob",
            "submissions_submission",
            "history_recordsummary",
        ),
    ):
        for task in (records_tasks.sweep, history_tasks.exports_sweep, submissions_tasks.sweep):
            task()  # logs and returns: no exception
        history_tasks.sync()
    record.refresh_from_db()
    assert record.preview_lease_until is None  # nothing was stamped under the lock
    with broker_unreachable():  # the next tick: the record is stamped, the send refused
        records_tasks.sweep()
    record.refresh_from_db()
    assert record.preview_lease_until is not None


@contextmanager
def short_busy_timeout():
    """Workers wait 30 s for SQLite's lock; this test's own connection less."""
    if connection.vendor != "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 500")
        yield
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout = 500")
    yield
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout = 30000")


# --- A broker that is down -----------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the block ends


@contextmanager
def broker_unreachable():
    """Every task the portal sends goes to a Redis port nobody listens on."""
    saved = app.conf.broker_write_url
    app.conf.broker_write_url = f"redis://127.0.0.1:{closed_port()}/0"
    _fresh_producers()
    try:
        yield
    finally:
        app.conf.broker_write_url = saved
        _fresh_producers()


def _fresh_producers():
    app._pool = None
    app.amqp._producer_pool = None


def sweep_now(settings):
    settings.BACKGROUND_SWEEP_GRACE_SECONDS = 0
    settings.EXPORT_STALE_SECONDS = 0
    records_tasks.sweep()
    history_tasks.exports_sweep()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_work_added_while_the_broker_is_down_is_finished_once_it_is_back(
    owner, celery_worker, settings, monkeypatch
):
    team = owner.memberships.get().team
    client = client_for(owner)
    monkeypatch.setattr(batches, "INLINE_IMPORT_BYTES", 0)  # the import goes to a worker
    with broker_unreachable():
        single = client.post(reverse("records:new"), {"url": UNREACHABLE_IMAGE.format("one")})
        assert single.status_code == 302
        urls = "\n".join(UNREACHABLE_IMAGE.format(n) for n in ("two", "three"))
        listed = client.post(reverse("records:urls"), {"urls": urls})
        assert listed.status_code == 302
        rows = "_id,_url\n" + "\n".join(f"i{n},{UNREACHABLE_IMAGE.format(n)}" for n in range(3))
        imported = client.post(
            "/records/import/", {"file": SimpleUploadedFile("rows.csv", rows.encode())}
        )
        assert imported.status_code == 302
        export = background_export(owner, monkeypatch)
        for response in (single, listed, imported):
            assert client.get(response.url).status_code == 200
        assert client.get(reverse("history:exports")).status_code == 200
    assert Record.objects.filter(team=team, preview="pending").count() == 3
    batch = UploadBatch.objects.get(kind="import")
    assert batch.state == "parsing"
    assert Export.objects.get().state == "running"

    sweep_now(settings)  # the broker is back
    wait_for(lambda: UploadBatch.objects.get(pk=batch.pk).state == "preview", timeout=60)
    wait_for(lambda: Export.objects.get().state == "done", timeout=60, message="the export")
    export.refresh_from_db()
    assert export.file and export.rows == 3
    wait_for(
        lambda: not Record.objects.filter(preview="pending").exists(),
        timeout=60,
        message="the previews",
    )
    assert set(Record.objects.values_list("preview", flat=True)) == {"none"}

    monkeypatch.setattr(batches, "INLINE_COMMIT_ROWS", 0)  # the commit goes to a worker too
    with broker_unreachable():
        confirmed = client.post(f"/records/batches/{batch.pk}/import/")
        assert confirmed.status_code == 302
    assert UploadBatch.objects.get(pk=batch.pk).state == "importing"
    sweep_now(settings)
    wait_for(lambda: UploadBatch.objects.get(pk=batch.pk).state == "done", timeout=60)
    imported_records = Record.objects.filter(batch=batch)
    assert imported_records.count() == 3
    wait_for(lambda: not imported_records.filter(preview="pending").exists(), timeout=60)


def test_a_copy_of_a_task_delivered_twice_does_nothing_the_second_time(owner, settings):
    """The sweep may hand over work that is only slow, not lost: a worker takes
    it once, and the later copy finds it held or done."""
    team = owner.memberships.get().team
    batch = batches.batch_create(team=team, user=owner, kind="import")
    UploadBatch.objects.filter(pk=batch.pk).update(state="importing")

    waiting = UploadBatch.objects.filter(pk=batch.pk, state="importing")
    assert background.claim(waiting)
    assert not background.claim(waiting), "held by the first worker"
    assert batches.import_commit(batch_id=batch.pk) == 0
    settings.BACKGROUND_SWEEP_GRACE_SECONDS = 0
    settings.EXPORT_STALE_SECONDS = 0
    assert not background.stale(waiting).exists(), "a held import is not swept"
