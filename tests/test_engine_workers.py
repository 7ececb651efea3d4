"""The engine with real worker processes and the sandbox over HTTP: workers
killed with -9, a broker that is down at submit time, every failure class, and
the shared rate limit across two workers.

These workers read their own queue (CELERY_QUEUE) and run the sweeper in
their own beat (`-B`), with short leases and grace, so nothing is published
by the test process: the sweeper is what starts and revives the work, as
after a lost message."""

import collections
import email.utils
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django.core.files.base import ContentFile

from ximilar_portal.accounts.services import credential_set
from ximilar_portal.records.models import Record
from ximilar_portal.submissions import services
from ximilar_portal.submissions.models import (
    FINAL_STATES,
    JobState,
    RecordJob,
    Result,
    Submission,
)

from .conftest import SANDBOX_TOKEN, WorkerProcess, database_url_for_workers, jpeg_bytes, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MAX_ATTEMPTS = 3
QUEUE = "engine-tests"


def worker_env(sandbox_url, tmp_path, **extra):
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url_for_workers(),
        XIMILAR_API_URL=sandbox_url,
        CELERY_QUEUE=QUEUE,
        CELERY_SWEEP_SECONDS="0.3",
        XIMILAR_SWEEP_GRACE_SECONDS="0.3",
        XIMILAR_LEASE_SECONDS="3",
        XIMILAR_BACKOFF_CAP="0.2",
        XIMILAR_MAX_ATTEMPTS=str(MAX_ATTEMPTS),
        XIMILAR_RATE_LIMIT="0",
        XIMILAR_CONCURRENCY="4",
        XIMILAR_READ_TIMEOUT="1",
        XIMILAR_CONNECT_TIMEOUT="0.5",
    )
    env.update({key: str(value) for key, value in extra.items()})
    return env


class Workers:
    """Worker processes started on demand, and one beat process running the
    sweeper every 0.3 s (its own process, so killing a worker never kills it)."""

    def __init__(self, env, tmp_path):
        self.env, self.tmp_path, self.started, self.live = env, tmp_path, 0, []
        self.beat = None

    def start(self, concurrency=4):
        if self.beat is None:
            self.beat = start_beat(self.env, self.tmp_path)
        self.started += 1
        log = self.tmp_path / f"worker-{self.started}.log"
        worker = WorkerProcess(self.env, log, concurrency=concurrency)
        self.live.append(worker.wait_ready())
        return worker

    def kill(self, worker):
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.wait()
        worker.log_file.close()
        self.live.remove(worker)

    def stop_all(self):
        for worker in list(self.live):
            worker.stop()
        self.live.clear()
        if self.beat is not None:
            beat, log = self.beat
            beat.terminate()
            beat.wait(timeout=15)
            log.close()


def start_beat(env, tmp_path):
    command = [sys.executable, "-m", "celery", "-A", "ximilar_portal", "beat"]
    command += ["--schedule", str(tmp_path / "beat-schedule"), "--loglevel", "INFO"]
    log = open(tmp_path / "beat.log", "w")  # noqa: SIM115 - closed with the process
    beat = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=settings.BASE_DIR
    )
    return beat, log


def purge_test_queue():
    """Messages left by earlier tests (a killed worker's, a sweep nobody read)."""
    from ximilar_portal.celery import app

    with app.connection_for_write() as connection:
        connection.default_channel.queue_declare(queue=QUEUE, durable=True, auto_delete=False)
        connection.default_channel.queue_purge(QUEUE)


@pytest.fixture
def workers_for(sandbox, tmp_path):
    purge_test_queue()
    made = []

    def make(**extra):
        env = worker_env(sandbox.url, tmp_path, **extra)
        made.append(Workers(env, tmp_path))
        return made[-1]

    yield make
    for workers in made:
        workers.stop_all()


@pytest.fixture
def team_with_token(owner, team):
    credential_set(team=team, token=SANDBOX_TOKEN, user=owner)
    return team


def make_records(team, owner, count):
    """Distinct small images stored through Django's storage, as uploads are."""
    records = []
    for number in range(count):
        record = Record(team=team, created_by=owner, ximilar_id=f"r{number}")
        color = (number * 7 % 256, number * 13 % 256, 90)
        record.image.save(f"{number}.jpg", ContentFile(jpeg_bytes(color=color)), save=False)
        record.image_extension, record.image_format = ".jpg", "JPEG"
        records.append(record)
    return Record.objects.bulk_create(records)


def submit_quietly(team, owner, records, service="generic_tags", monkeypatch=None):
    """Create the submission without publishing anything: the workers' sweeper
    finds it, as it finds work whose message was lost."""
    monkeypatch.setattr(services, "submission_enqueue", lambda *a, **k: None)
    submission = services.submission_create(
        team=team, user=owner, records=records, service=service, options={}
    )
    monkeypatch.undo()
    return submission


def all_final(submission, timeout):
    def check():
        states = list(submission.jobs.values_list("state", flat=True))
        return states if all(state in FINAL_STATES for state in states) else None

    return wait_for(check, timeout=timeout, interval=0.2, message="every record final")


def api_calls(sandbox):
    return [r for r in sandbox.requests() if not r.path.strip("/").startswith("_sandbox")]


def assert_every_send_was_an_attempt(sandbox, submission):
    """The requests are the records sent plus the retries: every record reached
    the sandbox, and none more often than the engine counted attempts for it
    (a call that timed out, or whose claim ran out, is sent again as a new
    attempt; no record goes out twice under one). On a busy machine retries
    happen, so their number is not fixed."""
    attempts = dict(submission.jobs.values_list("record__ximilar_id", "attempts"))
    sends = collections.Counter(i for call in api_calls(sandbox) for i in call.record_ids)
    assert set(sends) == set(attempts), "every record was sent"
    unexplained = {i: (sends[i], attempts[i]) for i in sends if sends[i] > attempts[i]}
    assert unexplained == {}, "(sends, attempts) of records sent more often than attempted"


# --- kill -9 ---------------------------------------------------------------------------


def test_it_loses_no_record_when_workers_are_killed(
    workers_for, sandbox, owner, team_with_token, monkeypatch
):
    sandbox.faults.latency_ms = 100
    records = make_records(team_with_token, owner, 200)
    # Slow enough (2 requests a second) that ten workers in a row die mid-submission.
    workers = workers_for(XIMILAR_MAX_ATTEMPTS=30, XIMILAR_RATE_LIMIT=2)
    submission = submit_quietly(team_with_token, owner, records, monkeypatch=monkeypatch)
    rng = random.Random(6)
    kills = 0
    while kills < 10:
        worker = workers.start()
        time.sleep(rng.uniform(0.1, 1.0))
        workers.kill(worker)
        kills += 1
        if not submission.jobs.exclude(state__in=FINAL_STATES).exists():
            break
    workers.start()
    states = all_final(submission, timeout=90)

    assert kills >= 10 or states.count(JobState.DONE) == 200
    assert states.count(JobState.DONE) == 200, states
    done = submission.jobs.filter(state=JobState.DONE)
    assert Result.objects.filter(job__in=done).count() == 200
    assert Result.objects.filter(job__submission=submission).count() == 200
    assert Result.objects.filter(record__in=records, is_current=True).count() == 200
    sent = sum(r.record_count for r in api_calls(sandbox) if r.status == 200)
    print(f"\nkill -9: {kills} kills, {sent} records sent for 200, {sent - 200} duplicate calls")
    assert sent >= 200


# --- broker down at submit --------------------------------------------------------------

SUBMIT_SCRIPT = """
import django, sys
django.setup()
from ximilar_portal.accounts.models import Team, User
from ximilar_portal.records.models import Record
from ximilar_portal.submissions.services import submission_create
team = Team.objects.get(pk=int(sys.argv[1]))
records = Record.objects.filter(team=team)
submission = submission_create(team=team, user=User.objects.get(pk=int(sys.argv[2])),
                               records=records, service="generic_tags", options={})
print("submission", submission.pk)
"""


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the block ends


def test_it_finishes_work_submitted_while_the_broker_was_down(
    workers_for, sandbox, owner, team_with_token, tmp_path
):
    make_records(team_with_token, owner, 12)
    env = worker_env(sandbox.url, tmp_path)
    env["CELERY_BROKER_URL"] = f"redis://127.0.0.1:{closed_port()}/0"
    started = time.monotonic()
    submitted = subprocess.run(
        [sys.executable, "-c", SUBMIT_SCRIPT, str(team_with_token.pk), str(owner.pk)],
        env=env,
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert submitted.returncode == 0, submitted.stderr[-2000:]
    assert "queue.enqueue_failed task=submissions.process" in submitted.stderr
    assert time.monotonic() - started < 30, "the submit did not hang on the broker"
    job_states = set(RecordJob.objects.values_list("state", flat=True))
    assert job_states == {JobState.QUEUED}, "the records wait"

    workers_for().start()  # the broker is back: the sweeper enqueues the work
    states = all_final(Submission.objects.get(), timeout=30)
    assert states == [JobState.DONE] * 12
    assert Result.objects.count() == 12


# --- every failure class ----------------------------------------------------------------


def http_date(seconds_ahead):
    return email.utils.formatdate(time.time() + seconds_ahead, usegmt=True)


TRANSIENT = [
    ("500", {"status_code": 500}),
    ("502", {"status_code": 502}),
    ("503", {"status_code": 503}),
    ("504", {"status_code": 504}),
    ("malformed JSON", {"malformed_json": True}),
    ("read timeout", {"hang_seconds": 1.2}),
]


@pytest.fixture
def failure_workers(workers_for):
    workers = workers_for()
    workers.start()
    return workers


@pytest.mark.parametrize("name,faults", TRANSIENT, ids=[name for name, _ in TRANSIENT])
def test_a_transient_failure_fails_the_records_after_the_attempt_cap(
    failure_workers, sandbox, owner, team_with_token, monkeypatch, name, faults
):
    sandbox.faults.update_from_json(faults)
    submission = submit_quietly(
        team_with_token, owner, make_records(team_with_token, owner, 3), monkeypatch=monkeypatch
    )
    assert all_final(submission, timeout=30) == [JobState.FAILED] * 3
    job = submission.jobs.first()
    assert job.attempts == MAX_ATTEMPTS
    assert "gave up after 3 attempts" in job.error_message
    # A timed-out request is logged by the sandbox when it finally answers.
    wait_for(lambda: len(api_calls(sandbox)) >= MAX_ATTEMPTS, timeout=5, message="the log")
    assert len(api_calls(sandbox)) == MAX_ATTEMPTS
    assert not Result.objects.exists()


@pytest.mark.parametrize("retry_after", ["seconds", "date"])
def test_a_429_waits_for_retry_after_then_succeeds(
    failure_workers, sandbox, owner, team_with_token, monkeypatch, retry_after
):
    sandbox.faults.status_code = 429
    sandbox.faults.retry_after = "2" if retry_after == "seconds" else http_date(4)
    submission = submit_quietly(
        team_with_token, owner, make_records(team_with_token, owner, 3), monkeypatch=monkeypatch
    )
    wait_for(lambda: api_calls(sandbox), timeout=20, message="the first call")
    wait_for(
        lambda: submission.jobs.filter(error_class="RateLimited").count() == 3,
        timeout=10,
        message="the 429 recorded",
    )
    sandbox.faults.status_code = None
    assert all_final(submission, timeout=30) == [JobState.DONE] * 3
    calls = api_calls(sandbox)
    assert len(calls) == 2, "one refused call, one after Retry-After"
    assert calls[1].time - calls[0].time >= 1.0, "the retry waited for Retry-After"


def test_a_429_that_never_ends_fails_at_the_records_deadline(
    workers_for, sandbox, owner, team_with_token, monkeypatch
):
    """A 429 spends no attempt: only the per-record deadline ends the wait."""
    workers_for(XIMILAR_RECORD_DEADLINE_SECONDS=3).start()
    sandbox.faults.status_code, sandbox.faults.retry_after = 429, "0"
    submission = submit_quietly(
        team_with_token, owner, make_records(team_with_token, owner, 3), monkeypatch=monkeypatch
    )
    assert all_final(submission, timeout=30) == [JobState.FAILED] * 3
    for job in submission.jobs.all():
        assert job.error_class == "deadline"
        assert "still rate-limited when its deadline passed, 3 s after" in job.error_message


def test_a_failed_record_fails_alone_and_a_400_fails_at_once(
    failure_workers, sandbox, owner, team_with_token, monkeypatch
):
    records = make_records(team_with_token, owner, 6)
    sandbox.faults.fail_record_ids = {"r1"}
    first = submit_quietly(team_with_token, owner, records[:3], monkeypatch=monkeypatch)
    assert sorted(all_final(first, timeout=30)) == [JobState.DONE] * 2 + [JobState.FAILED]
    failed = first.jobs.get(state=JobState.FAILED)
    assert failed.record.ximilar_id == "r1" and "could not process" in failed.error_message

    sandbox.reset()
    sandbox.faults.status_code = 400
    second = submit_quietly(team_with_token, owner, records[3:], monkeypatch=monkeypatch)
    assert all_final(second, timeout=30) == [JobState.FAILED] * 3
    assert second.jobs.first().error_class == "permanent"
    assert len(api_calls(sandbox)) == 1, "a 400 is not retried"


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_token_stops_every_call(
    failure_workers, sandbox, owner, team_with_token, monkeypatch, status
):
    sandbox.faults.status_code = status
    submission = submit_quietly(
        team_with_token, owner, make_records(team_with_token, owner, 40), monkeypatch=monkeypatch
    )
    wait_for(
        lambda: submission.jobs.filter(state=JobState.BLOCKED).count() == 40,
        timeout=30,
        message="every record blocked",
    )
    refused = [r for r in api_calls(sandbox) if r.status == status]
    time.sleep(2)  # several sweeps later
    calls = api_calls(sandbox)
    late = [r for r in calls if r.time > refused[0].time + 0.5]
    assert late == [], "no call after the token was refused"
    assert len(calls) <= 4, "at most the requests already in flight"
    team_with_token.refresh_from_db()
    assert team_with_token.blocked_reason.startswith("token")


def test_a_connect_timeout_is_retried_then_fails(
    workers_for, owner, team_with_token, monkeypatch, sandbox
):
    """A listening socket whose accept queue is full: connecting hangs."""
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    port = blackhole.getsockname()[1]
    fillers = []
    for _ in range(8):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    try:
        workers = workers_for(XIMILAR_API_URL=f"http://127.0.0.1:{port}/")
        workers.start()
        submission = submit_quietly(
            team_with_token, owner, make_records(team_with_token, owner, 3), monkeypatch=monkeypatch
        )
        assert all_final(submission, timeout=30) == [JobState.FAILED] * 3
        job = submission.jobs.first()
        assert job.attempts == MAX_ATTEMPTS
        assert "connect timeout" in job.error_message or "connection" in job.error_message
    finally:
        for filler in fillers:
            filler.close()
        blackhole.close()


# --- the shared rate limit ----------------------------------------------------------------


def busiest_second(times) -> int:
    times = sorted(times)
    return max(sum(1 for t in times if start <= t < start + 1) for start in times)


def reserved_slots(workers, team) -> list[float]:
    """The rate-limit slots the workers reserved for the team (DEBUG log lines)."""
    pattern = re.compile(rf"ratelimit\.slot team={team.pk} at_us=(\d+)")
    logs = [workers.tmp_path / f"worker-{n}.log" for n in range(1, workers.started + 1)]
    return [int(m) / 1_000_000 for log in logs for m in pattern.findall(log.read_text())]


def test_two_workers_share_the_rate_limit(
    workers_for, sandbox, owner, team_with_token, monkeypatch
):
    rate = 10
    records = make_records(team_with_token, owner, 400)
    # Nothing here times out or dies: the sandbox (a thread of this busy test
    # process) may take over a second for ten records, which the 1 s read timeout
    # of the failure tests would turn into three timeouts and failed records.
    workers = workers_for(
        XIMILAR_RATE_LIMIT=rate,
        XIMILAR_CONCURRENCY=8,
        XIMILAR_READ_TIMEOUT=60,
        XIMILAR_LEASE_SECONDS=120,
    )
    workers.start(concurrency=8)
    workers.start(concurrency=8)
    submission = submit_quietly(team_with_token, owner, records, monkeypatch=monkeypatch)
    assert all_final(submission, timeout=60) == [JobState.DONE] * 400
    calls = api_calls(sandbox)
    assert len(calls) >= 40
    assert_every_send_was_an_attempt(sandbox, submission)
    assert all(call.status == 200 for call in calls)
    # The limit governs the slots requests leave at. The sandbox's arrival times
    # add the machine's delays (a thread woken late sends next to the following
    # one), so on a busy machine they bunch, and are only printed.
    slots = reserved_slots(workers, team_with_token)
    assert len(slots) == len(calls), "every request had a slot of its own"
    peak = busiest_second(slots)
    arrived = busiest_second([call.time for call in calls])
    print(f"\nrate limit {rate}/s: busiest one-second window: {peak} slots, {arrived} arrivals")
    assert peak <= 1.1 * rate
