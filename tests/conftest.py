"""Three personas (an owner, a teammate in the same team, an outsider in another
team) and the outside world: the Ximilar sandbox on a loopback port and a real
Celery worker process on the configured broker and the test database."""

import io
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from PIL import Image

from ximilar_portal.accounts.models import Membership, Role
from ximilar_portal.accounts.services import user_signup
from ximilar_portal.sandbox.server import SandboxServer

# Every test's token is a canary: it must never show up in a page, log or message.
SANDBOX_TOKEN = "canary" + secrets.token_hex(12)
PASSWORD = "a-long-test-password-42"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """PBKDF2 costs ~0.4 s per user; tests make many users and test no hashing."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def make_user(email, team=None, role=Role.MEMBER):
    user = user_signup(email=email, password=PASSWORD)
    if team is not None:
        Membership.objects.filter(user=user).delete()
        Membership.objects.create(user=user, team=team, role=role)
    return user


@pytest.fixture
def owner(db):
    return make_user("owner@example.com")


@pytest.fixture
def team(owner):
    return owner.memberships.get().team


@pytest.fixture
def teammate(team):
    return make_user("teammate@example.com", team=team)


@pytest.fixture
def viewer(team):
    return make_user("viewer@example.com", team=team, role=Role.VIEWER)


@pytest.fixture
def outsider(db):
    return make_user("outsider@example.com")


@pytest.fixture
def decode_slots():
    """Call it to set this process's bound on concurrent image decodes for one
    test; the configured bound comes back afterwards."""
    from ximilar_portal.lib import images

    yield images.set_decode_concurrency
    images.set_decode_concurrency(
        settings.IMAGE_DECODE_CONCURRENCY, slot_pixels=settings.IMAGE_MAX_PIXELS
    )


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def jpeg_bytes(color=(200, 40, 40), size=(64, 48), fmt="JPEG"):
    image = Image.new("RGB", size, color)
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


# --- The outside world -------------------------------------------------------


@pytest.fixture(scope="session")
def sandbox_server():
    server = SandboxServer(tokens=(SANDBOX_TOKEN,)).start()
    yield server
    server.stop()


@pytest.fixture
def sandbox(sandbox_server, settings):
    """The sandbox, reset for this test, and the portal pointed at it."""
    sandbox_server.reset()
    settings.XIMILAR_API_URL = sandbox_server.url
    return sandbox_server


def database_url_for_workers():
    """The test database as a URL, so worker processes use the same one."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


class WorkerProcess:
    """A real `celery worker` in its own process, as `make run` starts it. It
    reads the queues named (`-Q`), or all three kinds of work of its
    CELERY_QUEUE (engine, heavy, periodic: every queue settings declare)."""

    def __init__(self, env, log_path: Path, concurrency=2, queues=()):
        self.log_path = log_path
        self.log_file = open(log_path, "w")  # noqa: SIM115 - lives as long as the process
        command = [sys.executable, "-m", "celery", "-A", "ximilar_portal", "worker"]
        command += ["-Q", ",".join(queues)] if queues else []
        command += ["--pool", "threads"]  # as in the Procfile; see README "Workers"
        command += ["--concurrency", str(concurrency), "--loglevel", "DEBUG", "--without-gossip"]
        command += ["--without-mingle", "--without-heartbeat"]
        self.process = subprocess.Popen(
            command, env=env, stdout=self.log_file, stderr=subprocess.STDOUT, cwd=settings.BASE_DIR
        )

    def wait_ready(self, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if " ready." in self.log_path.read_text():
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise RuntimeError("Celery worker did not start:\n" + self.log_path.read_text()[-3000:])

    def log(self):
        return self.log_path.read_text()

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log_file.close()


def purge_broker():
    from ximilar_portal.celery import app

    app.control.purge()


@pytest.fixture(scope="session", autouse=True)
def no_stray_database_sessions(django_db_setup, django_db_blocker):
    """PostgreSQL refuses to drop the test database while a worker process or
    thread still holds a connection; end those sessions before it is dropped."""
    yield
    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, sandbox_server, tmp_path_factory):
    """One worker for the session, on the test database and the sandbox."""
    with django_db_blocker.unblock():
        env = dict(os.environ)
        env.update(
            DATABASE_URL=database_url_for_workers(),
            XIMILAR_API_URL=sandbox_server.url,
            XIMILAR_BACKOFF_CAP="0.5",
        )
        purge_broker()
    worker = WorkerProcess(env, tmp_path_factory.mktemp("worker") / "worker.log")
    yield worker.wait_ready()
    worker.stop()


def wait_for(predicate, timeout=30, interval=0.2, message="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")
