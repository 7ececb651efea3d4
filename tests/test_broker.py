"""The embedded broker (ximilar_portal/lib/filesystem_broker.py): no message is
read before it is whole, a file that is not a message is set aside instead of
killing the consumer, consumed files are deleted, and production refuses it.

The transport tests run on a temporary folder through kombu, whatever broker the
suite is configured with; the worker test starts a worker on such a folder."""

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import kombu.transport.filesystem
import pytest
from django.conf import settings
from kombu import Connection
from kombu.transport.virtual import BrokerState

from bench.broker import stress
from ximilar_portal.accounts.services import credential_set
from ximilar_portal.lib import filesystem_broker
from ximilar_portal.submissions import services
from ximilar_portal.submissions.models import JobState
from ximilar_portal.submissions.tasks import process_submission

from .conftest import SANDBOX_TOKEN, WorkerProcess, database_url_for_workers, wait_for
from .test_engine_workers import all_final, make_records
from .test_settings import PRODUCTION_ENV, manage

OURS = "ximilar_portal.lib.filesystem_broker:Transport"
STOCK = "kombu.transport.filesystem:Transport"
QUEUE = "broker-tests"


def options(folder: Path, **extra):
    return {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "control_folder": str(folder / "control"),
        "quarantine_folder": str(folder / "quarantine"),
        "polling_interval": 0.01,
        **extra,
    }


def connect(folder: Path, transport=OURS, **extra) -> Connection:
    return Connection(
        "filesystem://", transport=transport, transport_options=options(folder, **extra)
    )


def message_files(folder: Path, queue=QUEUE):
    return sorted(folder.glob(f"*.{queue}.msg"))


def files_in(folder: Path):
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def received(queue):
    message = queue.get(block=True, timeout=5)
    message.ack()
    return message.payload


def drop(folder: Path, name: str, content: bytes):
    """Put a file into the queue folder whole, as a careless tool would leave it."""
    staged = folder.parent / f"{name}.staged"
    staged.write_bytes(content)
    os.replace(staged, folder / name)


# --- The upstream fault, and the same moment on ours ---------------------------------


class CreatedNotWritten:
    """A file whose first write first runs `meanwhile`: the moment a publisher has
    created a message file and not yet written it."""

    def __init__(self, file, meanwhile):
        self._file, self._meanwhile = file, meanwhile

    def write(self, data):
        meanwhile, self._meanwhile = self._meanwhile, None
        if meanwhile:
            meanwhile()
        return self._file.write(data)

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()


def poll_while_publishing(monkeypatch, module, folder, transport):
    """Publish one message while a consumer polls the queue at the worst moment;
    what that poll got, and what the queue holds afterwards."""
    with connect(folder, transport) as producing, connect(folder, transport) as consuming:
        outbox, inbox = producing.SimpleQueue(QUEUE), consuming.SimpleQueue(QUEUE)
        polled = []

        def poll():
            try:
                polled.append(inbox.get(block=False).payload)
            except Exception as exc:
                polled.append(exc)

        def hooked_open(path, mode="r", *args, **kwargs):
            file = open(path, mode, *args, **kwargs)  # noqa: SIM115 - returned to the caller
            writes_a_message = "w" in mode and Path(path).parent.name != "control"
            return CreatedNotWritten(file, poll) if writes_a_message else file

        with monkeypatch.context() as patch:
            patch.setattr(module, "open", hooked_open, raising=False)
            outbox.put({"n": 1})
        afterwards = []
        with contextlib.suppress(inbox.Empty):
            afterwards.append(received(inbox))
        return polled, afterwards


def test_kombus_own_transport_hands_a_consumer_a_half_written_message(tmp_path, monkeypatch):
    """Documents kombu issue #1551, the reason for our subclass: the consumer reads
    the file its publisher has created but not yet written, fails to decode it (in
    a worker: "Unrecoverable error", the worker exits) and the message is gone."""
    # A fresh record of bindings, or kombu skips writing the table it already bound.
    monkeypatch.setattr(kombu.transport.filesystem.Transport, "global_state", BrokerState())
    polled, afterwards = poll_while_publishing(
        monkeypatch, kombu.transport.filesystem, tmp_path, STOCK
    )
    assert len(polled) == 1 and isinstance(polled[0], json.JSONDecodeError)
    assert afterwards == [], "the message was lost"


def test_a_message_is_invisible_until_it_is_whole(tmp_path, monkeypatch):
    polled, afterwards = poll_while_publishing(monkeypatch, filesystem_broker, tmp_path, OURS)
    assert len(polled) == 1 and type(polled[0]).__name__ == "Empty"
    assert afterwards == [{"n": 1}]
    assert message_files(tmp_path) == [] and files_in(tmp_path / "tmp") == []


@pytest.mark.skipif(
    not settings.CELERY_BROKER_URL.startswith("filesystem://"), reason="filesystem broker only"
)
def test_the_portal_uses_our_transport_for_filesystem_urls():
    from ximilar_portal.celery import app

    with app.connection_for_write() as connection:
        assert isinstance(connection.transport, filesystem_broker.Transport)
    folder = Path(settings.CELERY_BROKER_TRANSPORT_OPTIONS["data_folder_in"])
    assert folder / "quarantine" == settings.BROKER_QUARANTINE_DIR


# --- Under load ------------------------------------------------------------------------

PRODUCERS, PER_PRODUCER, CONSUMER_THREADS = 4, 5000, 3

CONSUMER_PROCESS = """
import json, sys
from pathlib import Path
from bench.broker import consume
transport, options, queue = sys.argv[1], json.loads(sys.argv[2]), sys.argv[4]
done = Path(sys.argv[3])
consume(transport, options, queue, lambda: not done.exists(), lambda id: print(id, flush=True))
"""


def test_many_publishers_and_consumers_lose_and_duplicate_nothing(tmp_path):
    """Threads publishing and consuming at once, plus a consumer in another
    process (as workers on one folder): every message arrives exactly once."""
    folder, done, ids = tmp_path / "broker", tmp_path / "done", tmp_path / "ids"
    folder.mkdir()
    script = [CONSUMER_PROCESS, OURS, json.dumps(options(folder)), str(done), QUEUE]
    with open(ids, "w") as out:
        other = subprocess.Popen(
            [sys.executable, "-c", *script],
            cwd=settings.BASE_DIR,
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            received, errors, elapsed = stress(
                OURS, options(folder), QUEUE, PRODUCERS, CONSUMER_THREADS, PER_PRODUCER
            )
        finally:
            done.touch()
            _, err = other.communicate(timeout=60)
    out = ids.read_text()

    assert errors == [] and other.returncode == 0, (errors, err[-2000:])
    received.update(out.split())
    sent = PRODUCERS * PER_PRODUCER
    assert len(received) == sent, f"{sent - len(received)} lost"
    assert max(received.values()) == 1, "a message was delivered twice"
    assert out.split(), "the other process consumed its share"
    # Consumed files are deleted: nothing accumulates.
    assert message_files(folder) == []
    assert files_in(folder / "claimed") == files_in(folder / "tmp") == []
    assert files_in(folder / "quarantine") == [] and not (folder / "processed").exists()
    print(f"\n{sent} messages, {len(out.split())} by the other process, {elapsed:.1f} s")


# --- Files that are not messages ---------------------------------------------------------


def test_files_that_are_not_messages_are_set_aside_and_the_consumer_goes_on(tmp_path, caplog):
    bad = {
        f"{'0' * 20}_empty.{QUEUE}.msg": b"",
        f"{'0' * 19}1_cut.{QUEUE}.msg": b'{"body": "eyJ',
        f"{'0' * 19}2_list.{QUEUE}.msg": b"[1, 2]",
        f"{'0' * 19}3_latin1.{QUEUE}.msg": b"\xff\xfe{",
    }
    with connect(tmp_path) as connection:
        queue = connection.SimpleQueue(QUEUE)
        for name, content in bad.items():
            drop(tmp_path, name, content)
        queue.put({"n": 1})
        assert received(queue) == {"n": 1}
        with pytest.raises(queue.Empty):
            queue.get(block=False)

    quarantine = tmp_path / "quarantine"
    assert {name: (quarantine / name).read_bytes() for name in files_in(quarantine)} == bad
    assert message_files(tmp_path) == [] and files_in(tmp_path / "claimed") == []
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == len(bad)
    assert all("broker.message_quarantined" in error for error in errors)
    assert any("JSONDecodeError" in error for error in errors)


def test_a_half_written_exchange_table_does_not_break_fanout(tmp_path):
    """kombu truncates and rewrites an exchange table in place; an empty one left
    that way is rewritten on the next bind instead of failing every publish."""
    (tmp_path / "control").mkdir()
    (tmp_path / "control" / "fan.exchange").write_bytes(b"")
    with connect(tmp_path) as connection:
        exchange = kombu.Exchange("fan", type="fanout")
        queues = [kombu.Queue(f"fan-{n}", exchange) for n in range(2)]
        for queue in queues:
            queue(connection.default_channel).declare()
        connection.Producer().publish({"n": 1}, exchange=exchange)
        for queue in queues:
            message = queue(connection.default_channel).get()
            assert message is not None and message.payload == {"n": 1}


def test_a_binding_this_process_recorded_is_still_written_to_the_table(tmp_path):
    """kombu records bindings once per process and skips the exchange table when
    one is recorded; a thread whose connection binds while another thread's write
    has not landed (here: the table is gone) would publish into nothing."""
    with connect(tmp_path) as first:
        first.SimpleQueue(QUEUE)
    (tmp_path / "control" / f"{QUEUE}.exchange").unlink()
    with connect(tmp_path) as second:
        queue = second.SimpleQueue(QUEUE)
        queue.put({"n": 1})
        assert received(queue) == {"n": 1}


# --- Start-up housekeeping ---------------------------------------------------------------


def test_leftovers_are_cleared_when_a_process_opens_the_broker(tmp_path):
    """The processed messages kept by earlier versions are deleted; a message a
    dead consumer claimed but never read goes back to its queue; a file a dead
    publisher never finished is removed."""
    with connect(tmp_path / "earlier") as earlier:
        earlier.SimpleQueue(QUEUE).put({"n": "claimed by a consumer that died"})
    published = message_files(tmp_path / "earlier")[0]
    for folder in ("processed", "claimed", "tmp"):
        (tmp_path / folder).mkdir()
    for number in range(3):
        (tmp_path / "processed" / f"{number}_x.{QUEUE}.msg").write_text("{}")
    os.replace(published, tmp_path / "claimed" / published.name)
    (tmp_path / "tmp" / "half.tmp").write_bytes(b'{"bo')

    processed = str(tmp_path / "processed")
    with connect(tmp_path, stale_seconds=0, processed_folder=processed) as connection:
        queue = connection.SimpleQueue(QUEUE)
        assert received(queue) == {"n": "claimed by a consumer that died"}
    assert not (tmp_path / "processed").exists()
    assert files_in(tmp_path / "claimed") == files_in(tmp_path / "tmp") == []


# --- A real worker ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_sets_bad_files_aside_and_keeps_serving(
    sandbox, owner, team, tmp_path, monkeypatch
):
    """An empty and a corrupt file named like messages, in the queue of a running
    worker (any configured database; the broker is a filesystem one here): both are
    quarantined and logged, the worker stays alive and processes the next task."""
    folder = tmp_path / "broker"
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url_for_workers(),
        XIMILAR_API_URL=sandbox.url,
        CELERY_BROKER_URL="filesystem://",
        CELERY_BROKER_FOLDER=str(folder),
        CELERY_QUEUE=QUEUE,
        XIMILAR_RATE_LIMIT="0",
    )
    worker = WorkerProcess(env, tmp_path / "worker.log").wait_ready()
    try:
        bad = {
            f"{'0' * 20}_{'e' * 8}.{QUEUE}.msg": b"",
            f"{'0' * 19}1_{'c' * 8}.{QUEUE}.msg": b'{"body": "eyJpZCI6IDF9", "properties": {"del',
        }
        for name, content in bad.items():
            drop(folder, name, content)
        quarantine = folder / "quarantine"

        def set_aside():
            assert worker.process.poll() is None, "the worker died:\n" + worker.log()[-3000:]
            return set(files_in(quarantine)) == set(bad)

        wait_for(set_aside, message="both files set aside")
        assert {name: (quarantine / name).read_bytes() for name in bad} == bad

        credential_set(team=team, token=SANDBOX_TOKEN, user=owner)
        records = make_records(team, owner, 3)
        monkeypatch.setattr(services, "submission_enqueue", lambda *a, **k: None)
        submission = services.submission_create(
            team=team, user=owner, records=records, service="generic_tags", options={}
        )
        with connect(folder) as connection:
            process_submission.apply_async((submission.pk,), connection=connection, queue=QUEUE)
        assert all_final(submission, timeout=60) == [JobState.DONE] * 3

        assert worker.process.poll() is None, "the worker is alive"
        log = worker.log()
        assert all(f"broker.message_quarantined file={quarantine / name}" in log for name in bad)
        assert "Unrecoverable error" not in log
        # Consumed messages were deleted, not kept.
        wait_for(lambda: message_files(folder) == [], message="the queue drained")
        assert files_in(folder / "claimed") == [] and not (folder / "processed").exists()
    finally:
        worker.stop()


# --- Production ---------------------------------------------------------------------------


def test_production_refuses_the_filesystem_broker(tmp_path):
    env = PRODUCTION_ENV | {"VAR_DIR": str(tmp_path), "CELERY_BROKER_URL": "filesystem://"}
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "PRODUCTION=true refuses CELERY_BROKER_URL=filesystem://" in result.stderr
    assert "ALLOW_FILESYSTEM_BROKER=true" in result.stderr


def test_production_runs_the_filesystem_broker_when_explicitly_allowed(tmp_path):
    env = PRODUCTION_ENV | {
        "VAR_DIR": str(tmp_path),
        "CELERY_BROKER_URL": "filesystem://",
        "ALLOW_FILESYSTEM_BROKER": "true",
    }
    result = manage("check", env=env)
    assert result.returncode == 0, result.stderr
