"""Queues by kind of work: the engine, the heavy jobs (exports, imports,
previews) and the periodic tasks each go to their own queue, and the Procfile
starts a worker for each, so twelve exports never take the engine's threads.

The last test runs the Procfile's own worker lines (real processes, on their
own CELERY_QUEUE): the engine finishes a submission while an export waits in
the heavy queue unread, and the heavy worker then writes it."""

import re
import subprocess

import pytest
from django.conf import settings

from ximilar_portal.accounts.services import credential_set
from ximilar_portal.celery import app
from ximilar_portal.history import services as history
from ximilar_portal.history.models import Export, ExportState
from ximilar_portal.submissions.models import JobState

from .conftest import SANDBOX_TOKEN, WorkerProcess, wait_for
from .test_engine_workers import all_final, make_records, start_beat, submit_quietly, worker_env

PROCFILE = settings.BASE_DIR / "Procfile"
KIND_OF_TASK = {
    "submissions.process": "engine",
    "history.run_export": "heavy",
    "records.import_check": "heavy",
    "records.import_commit": "heavy",
    "records.fetch_preview": "heavy",
    "records.fetch_batch_previews": "heavy",
    "submissions.sweep": "periodic",
    "history.sync": "periodic",
    "history.exports_sweep": "periodic",
    "records.sweep": "periodic",
}
# Beat sends a heartbeat to every queue: each names its queue itself.
HEARTBEAT = "ops.heartbeat"
PREFIX = "queues-tests"


def procfile() -> dict[str, str]:
    lines = PROCFILE.read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def queues_read(command: str, prefix="celery") -> list[str]:
    found = re.search(r" -Q (\S+)", command)
    if not found:
        return []
    return found.group(1).replace("${CELERY_QUEUE:-celery}", prefix).split(",")


def test_every_task_goes_to_its_kinds_queue():
    tasks = {name for name in app.tasks if not name.startswith("celery.")}
    assert set(KIND_OF_TASK) | {HEARTBEAT} >= tasks
    for task, kind in KIND_OF_TASK.items():
        assert app.amqp.router.route({}, task)["queue"].name == settings.WORK_QUEUES[kind], task


def test_every_periodic_task_goes_to_the_periodic_queue():
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        options = entry.get("options", {})
        queue = app.amqp.router.route(dict(options), entry["task"])["queue"]
        expected = (
            options["queue"] if entry["task"] == HEARTBEAT else settings.WORK_QUEUES["periodic"]
        )
        assert getattr(queue, "name", queue) == expected, entry["task"]


def test_the_procfile_starts_a_worker_for_each_kind():
    workers = {name: cmd for name, cmd in procfile().items() if " worker " in cmd}
    readers = {queue: name for name, cmd in workers.items() for queue in queues_read(cmd)}

    assert sorted(readers) == sorted(settings.WORK_QUEUES.values())
    assert len(set(readers.values())) == 3, "one worker process per kind"
    heavy = workers[readers[settings.WORK_QUEUES["heavy"]]]
    assert heavy.startswith("exec nice "), "the heavy worker yields the CPU to the engine"
    assert all("--pool threads" in command for command in workers.values())
    assert {"beat", "web", "sandbox"} <= set(procfile())


class ProcfileWorker(WorkerProcess):
    """One worker line of the Procfile, run as the process manager runs it."""

    def __init__(self, name, env, tmp_path):
        self.name, self.log_path = name, tmp_path / f"{name}.log"
        self.log_file = open(self.log_path, "w")  # noqa: SIM115 - closed with the process
        self.process = subprocess.Popen(
            ["sh", "-c", procfile()[name]],
            env=env,
            cwd=settings.BASE_DIR,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )
        self.wait_ready()


def purge(queues):
    with app.connection_for_write() as connection:
        for queue in queues:
            connection.default_channel.queue_declare(queue=queue, durable=True, auto_delete=False)
            connection.default_channel.queue_purge(queue)


@pytest.fixture
def procfile_workers(sandbox, tmp_path):
    env = worker_env(sandbox.url, tmp_path, CELERY_QUEUE=PREFIX, EXPORT_STALE_SECONDS=1)
    purge([PREFIX, f"{PREFIX}-heavy", f"{PREFIX}-periodic"])
    started, beat = {}, start_beat(env, tmp_path)

    def start(name):
        started[name] = ProcfileWorker(name, env, tmp_path)
        return started[name]

    start.started = started
    yield start
    for worker in started.values():
        worker.stop()
    beat[0].terminate()
    beat[0].wait(timeout=15)
    beat[1].close()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_engine_works_while_an_export_waits_for_the_heavy_worker(
    procfile_workers, owner, team, monkeypatch
):
    credential_set(team=team, token=SANDBOX_TOKEN, user=owner)
    periodic = procfile_workers("periodic")
    procfile_workers("worker")
    records = make_records(team, owner, 5)
    # Nothing is published from here: the workers' sweepers find both.
    monkeypatch.setattr(history, "_export_enqueue", lambda export_id: None)
    export, _ = history.export_create(team=team, user=owner, fmt="csv", query="", record_ids=[])
    monkeypatch.undo()
    submission = submit_quietly(team, owner, records, monkeypatch=monkeypatch)

    states = all_final(submission, timeout=90)
    assert states == [JobState.DONE] * 5
    wait_for(lambda: "resent=1" in periodic.log(), timeout=60, message="the export sent")
    export.refresh_from_db()
    assert export.state == ExportState.RUNNING and export.run_token == "", "nobody took it"

    procfile_workers("heavy")
    wait_for(
        lambda: Export.objects.filter(pk=export.pk, state=ExportState.DONE).exists(),
        timeout=90,
        message="the export written by the heavy worker",
    )
    ran = {name: received(worker.log()) for name, worker in procfile_workers.started.items()}
    assert ran["heavy"] == {"history.run_export"}
    assert ran["worker"] == {"submissions.process"}
    assert ran["periodic"] >= {"submissions.sweep", "history.exports_sweep"}
    assert ran["periodic"] <= set(settings.CELERY_TASK_ROUTES) - set(settings.HEAVY_TASKS)


def received(log: str) -> set[str]:
    """Names of the tasks a worker received (its log at INFO)."""
    return set(re.findall(r"Task ([\w.]+)\[[\w-]+\] received", log))
