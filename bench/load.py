"""Load run (not a test): start the portal as `make run` starts it (the
Procfile under the project's supervisor: gunicorn, the Celery workers of the
engine, heavy and periodic queues, beat, the sandbox) on free
loopback ports with its own VAR_DIR, then run simulated users over real HTTP
for a while, wait for the work to settle and check what must always hold.

    .venv/bin/python bench/load.py [--users 20] [--duration 120] [--teams 4]
        [--settle 420] [--kill worker@30] [--flush]

Each user is a requests session that behaves like a browser (it reads the
CSRF cookie from a page and sends it back with every form): the first user of
each team signs up and saves the team's sandbox token on the token page, then
invites the others (they sign up from the e-mailed link, read from the
console e-mail backend's output); then until the time is up each user, with a
short pause between steps, uploads generated JPEGs, adds records with custom
fields, adds records by URL and imports a small CSV whose `_url`s point at an
image server this script runs on loopback, submits some of the team's records
to a few services, polls the submission pages, browses /history/ with filters
and exports it.

The portal's URL guard (lib/urlfetch.py) refuses loopback addresses and has no
setting to allow them, so URL records get no preview ("No preview"): that is
the guard working. The sandbox fetches their `_url` itself, so they are sent
and answered like any record.

At the end it checks, through the database and the sandbox's request log:
responses by status class (no 5xx), connection errors, every submitted record
final, one result per done job and one current result per (record, service),
and each record billed (answered 200 by the sandbox) at most once per
submission that holds it. The last line is
`load_errors: <connection errors + 5xx + lost + twice billed>`.

Embedded defaults (SQLite + filesystem broker) unless DATABASE_URL and
CELERY_BROKER_URL are set; `--flush` empties that database first (use your
own); tasks go to a queue of the run's own (CELERY_QUEUE). `--kill worker@30`
sends SIGKILL to the engine's worker 30 s into the load (web, worker, heavy,
periodic, beat or sandbox; repeatable): the supervisor restarts it. `--launcher`
replaces the supervisor command (for a different process manager).
"""

import argparse
import collections
import csv
import io
import os
import random
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PYTHON = str(ROOT / ".venv" / "bin" / "python")
# The ports are added to it: --port web=… --port sandbox=… (as the Makefile does).
LAUNCHER = f"{PYTHON} -m ximilar_portal.supervisor Procfile"
PASSWORD = "load-" + secrets.token_urlsafe(12)
SERVICES = ["generic_tags", "colors_generic", "fashion_tags", "homedecor_tags"]
ROLES = {  # a Procfile process, by what its command line holds
    "web": ("gunicorn",),
    "worker": ("celery", " worker", "engine@"),
    "heavy": ("celery", " worker", "heavy@"),
    "periodic": ("celery", " worker", "periodic@"),
    "beat": ("celery", " beat"),
    "sandbox": ("ximilar_portal.sandbox",),
}
HTTP_TIMEOUT = 60
FINAL = {"done", "failed", "cancelled"}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--duration", type=float, default=120, help="seconds of load")
    parser.add_argument("--teams", type=int, default=0, help="default: one per five users")
    parser.add_argument("--settle", type=float, default=420, help="longest wait at the end")
    parser.add_argument("--kill", action="append", default=[], help="ROLE@SECONDS, e.g. worker@30")
    parser.add_argument("--flush", action="store_true", help="empty DATABASE_URL's database")
    parser.add_argument("--launcher", default=LAUNCHER, help="command that runs the Procfile")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the VAR_DIR (logs) afterwards")
    args = parser.parse_args()
    args.teams = args.teams or max(1, round(args.users / 5))
    args.kills = []
    for spec in args.kill:
        role, _, at = spec.partition("@")
        if role not in ROLES or not at:
            parser.error(f"--kill {spec}: use ROLE@SECONDS, ROLE one of {', '.join(ROLES)}")
        args.kills.append((role, float(at)))
    return args


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def jpeg(seed: int, size=(160, 120)) -> bytes:
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        box = (x, y, x + rng.randrange(10, 60), y + rng.randrange(10, 60))
        draw.rectangle(box, fill=tuple(rng.randrange(256) for _ in range(3)))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


# --- What the run counts ------------------------------------------------------


class Tally:
    """Responses by status class, connection errors, and what users created."""

    def __init__(self):
        self.lock = threading.Lock()
        self.statuses = collections.Counter()
        self.by_action = collections.Counter()
        self.connection_errors = collections.Counter()  # kind -> count
        self.server_errors = []  # (when, method, path, status)
        self.seconds = []  # how long each answered request took
        self.first_connection_error = None
        self.submissions = {}  # pk -> (team key, records asked for)
        self.records_created = collections.Counter()  # how -> count
        self.notes = collections.Counter()

    def response(self, method, path, status, when, seconds=None):
        with self.lock:
            if seconds is not None:
                self.seconds.append(seconds)
            self.statuses[f"{status // 100}xx"] += 1
            if status >= 500:
                self.server_errors.append((when, method, path, status))

    def connection_error(self, kind, when):
        with self.lock:
            self.connection_errors[kind] += 1
            if self.first_connection_error is None:
                self.first_connection_error = when

    def note(self, what, count=1):
        with self.lock:
            self.notes[what] += count


class Browser:
    """A requests session that sends Django's CSRF token back like a browser."""

    def __init__(self, base, tally, started):
        self.base, self.tally, self.started = base, tally, started
        self.session = requests.Session()

    def _path_label(self, path):
        return re.sub(r"/\d+/", "/<n>/", path.split("?")[0])

    def request(self, method, path, **kwargs):
        """The response, or None after a connection error (counted, then a pause)."""
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        url = path if path.startswith("http") else self.base + path
        sent = time.monotonic()
        try:
            response = self.session.request(method, url, **kwargs)
        except requests.Timeout:
            self.tally.connection_error("timeout", time.monotonic() - self.started)
        except requests.ConnectionError as error:
            kind = "refused" if "refused" in str(error).lower() else "connection"
            self.tally.connection_error(kind, time.monotonic() - self.started)
        else:
            when = time.monotonic() - self.started
            label, took = self._path_label(path), time.monotonic() - sent
            self.tally.response(method, label, response.status_code, when, took)
            for hop in response.history:  # redirects answered on the way
                self.tally.response(method, self._path_label(path), hop.status_code, when)
            return response
        time.sleep(1)  # a person whose page failed waits before trying again
        return None

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def csrf(self):
        return self.session.cookies.get("csrftoken", "")

    def post(self, path, data=None, *, form_page=None, files=None):
        """GET the form's page first (as a browser has it open), then POST it."""
        page = form_page or path
        if self.get(page) is None:
            return None
        data = {**(data or {}), "csrfmiddlewaretoken": self.csrf()}
        headers = {"Referer": self.base + page, "Origin": self.base}
        return self.request("POST", path, data=data, files=files, headers=headers)

    def post_file(self, path, files, referer):
        """What the upload page's script sends: the CSRF token as a header."""
        headers = {"X-CSRFToken": self.csrf(), "Referer": self.base + referer}
        headers["Origin"] = self.base
        return self.request("POST", path, files=files, headers=headers)


# --- The users -----------------------------------------------------------------


class Team:
    def __init__(self, number, token, tag):
        self.number, self.token = number, token
        self.owner_email = f"owner{number}-{tag}@example.com"
        self.ready = threading.Event()
        self.records = []  # record pks any member created
        self.lock = threading.Lock()

    def add_records(self, pks):
        with self.lock:
            self.records.extend(pks)

    def pick_records(self, rng, count):
        with self.lock:
            return rng.sample(self.records, min(count, len(self.records)))


class User:
    def __init__(self, number, team, run):
        self.number, self.team, self.run = number, team, run
        self.is_owner = number < run.args.teams
        self.email = team.owner_email if self.is_owner else f"user{number}-{run.tag}@example.com"
        self.rng = random.Random((run.args.seed or 0) * 1000 + number)
        self.browser = Browser(run.base, run.tally, run.started)
        self.submissions = []
        self.serial = 0

    # Getting in.

    def join(self):
        if self.is_owner:
            self.sign_up_as_owner()
            return
        if not self.team.ready.wait(timeout=120):
            self.run.tally.note("member gave up waiting for the owner")
            return
        link = self.run.invitation_link(self.email, timeout=30)
        if link is None:
            self.run.tally.note("invitation link not found: member logs in to its own team")
            self.sign_up_as_owner()
            return
        path = link.split("://", 1)[-1].split("/", 1)[1]
        answer = self.browser.post("/" + path, {"password1": PASSWORD, "password2": PASSWORD})
        if answer is not None and answer.ok:
            self.run.tally.note("members joined by invitation")

    def sign_up_as_owner(self):
        b = self.browser
        data = {"email": self.email, "password1": PASSWORD, "password2": PASSWORD}
        if b.post("/accounts/signup/", data) is None:
            return
        b.post("/accounts/team/token/", {"token": self.team.token})
        if self.is_owner:
            for member in self.run.members_of(self.team):
                b.post(
                    "/accounts/team/invite/",
                    {"email": member, "role": "member"},
                    form_page="/accounts/team/",
                )
            self.team.ready.set()

    def log_in_again(self):
        """A user whose session ended (a restart, a lockout) logs in again."""
        data = {"username": self.email, "password": PASSWORD}
        self.browser.post("/accounts/login/", data)

    # What a team does.

    def next_id(self, kind):
        self.serial += 1
        return f"{kind}-{self.run.tag}-u{self.number}-{self.serial}"

    def upload_files(self):
        b = self.browser
        shared = {"category": "load", "tags": "load, upload", "custom_fields": "batch: yes"}
        batch = b.post("/records/upload/", shared)
        if batch is None or "/records/batches/" not in batch.url:
            return
        batch_path = "/" + batch.url.split("/", 3)[3]
        created = []
        for _ in range(self.rng.randint(1, 3)):
            name = self.next_id("file")
            data = jpeg(hash(name) & 0xFFFFFFFF)
            answer = b.post_file(
                batch_path + "files/", {"file": (name + ".jpg", data, "image/jpeg")}, batch_path
            )
            if answer is not None and answer.status_code == 201:
                created.append(int(answer.json()["record_url"].rstrip("/").rsplit("/", 1)[1]))
        self.team.add_records(created)
        self.run.tally.records_created["file upload"] += len(created)

    def add_record(self):
        ximilar_id = self.next_id("rec")
        data = {
            "ximilar_id": ximilar_id,
            "product_id": f"sku-{self.rng.randrange(1000)}",
            "category": self.rng.choice(["shoes", "shirts", "lamps"]),
            "price": f"{self.rng.randrange(1, 500)}.50",
            "tags": "load, form",
            "custom_fields": f"stock: {self.rng.randrange(50)}\ncolor: red",
        }
        image = {"image": (ximilar_id + ".jpg", jpeg(hash(ximilar_id) & 0xFFFFFFFF), "image/jpeg")}
        answer = self.browser.post("/records/new/", data, files=image)
        if answer is not None and (match := re.search(r"/records/(\d+)/$", answer.url)):
            self.team.add_records([int(match.group(1))])
            self.run.tally.records_created["form"] += 1

    def add_urls(self):
        urls = [self.run.image_url(self.next_id("url")) for _ in range(self.rng.randint(1, 3))]
        data = {"urls": "\n".join(urls), "category": "load", "custom_fields": "source: url"}
        answer = self.browser.post("/records/urls/", data)
        if answer is not None and "/records/batches/" in answer.url:
            self.run.tally.records_created["url list"] += len(urls)
            self.run.url_batches.append((self.team, answer.url))

    def import_file(self):
        b = self.browser
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["_id", "_url", "product_id", "category", "price", "tags", "stock"])
        for _ in range(self.rng.randint(3, 6)):
            ximilar_id = self.next_id("imp")
            url = self.run.image_url(ximilar_id)
            writer.writerow([ximilar_id, url, "sku-imp", "imported", "9.90", "a|b", "3"])
        files = {"file": ("rows.csv", out.getvalue().encode(), "text/csv")}
        started = b.post("/records/import/", {}, files=files)
        if started is None or "/records/batches/" not in started.url:
            return
        batch_path = "/" + started.url.split("/", 3)[3]
        if not self.wait_page(batch_path, "Ready to import", 120):
            self.run.tally.note("import not checked within 120 s")
            return
        b.post(batch_path + "import/", {}, form_page=batch_path)
        self.run.tally.records_created["imports confirmed"] += 1  # rows: see the database

    def wait_page(self, path, marker, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.run.stopping.is_set():
            page = self.browser.get(path)
            if page is not None and marker in page.text:
                return True
            time.sleep(1)
        return False

    def submit(self):
        picked = self.team.pick_records(self.rng, self.rng.randint(5, 30))
        if not picked:
            return
        service = self.rng.choice(SERVICES)
        data = {"service": service, "lang": "en", "mode": "complex", "endpoint": "detect_tags"}
        data["record"] = [str(pk) for pk in picked]
        query = "&".join(f"record={pk}" for pk in picked)
        answer = self.browser.post(
            "/submissions/new/", data, form_page="/submissions/new/?" + query
        )
        if answer is not None and (match := re.search(r"/submissions/(\d+)/$", answer.url)):
            pk = int(match.group(1))
            self.submissions.append(pk)
            with self.run.tally.lock:
                self.run.tally.submissions[pk] = (self.team.number, len(picked))

    def poll_submissions(self):
        b = self.browser
        b.get("/submissions/")
        b.get("/submissions/status.json")
        for pk in self.submissions[-2:]:
            b.get(f"/submissions/{pk}/")
            b.get(f"/submissions/{pk}/progress.json")

    def browse_history(self):
        b = self.browser
        service = self.rng.choice(SERVICES)
        b.get(f"/history/?service={service}")
        b.get("/history/?status=done&category=shoes&sort=-updated")
        b.get(f"/history/?q=load&min_prob=0.1&service={service}")
        b.get("/history/insights/")
        b.get("/")
        if pks := self.team.pick_records(self.rng, 1):
            b.get(f"/records/{pks[0]}/")
            b.get(f"/history/records/{pks[0]}/")

    def export(self):
        query = f"service={self.rng.choice(SERVICES)}"
        self.browser.post(
            "/history/export/", {"format": "csv", "query": query}, form_page="/history/?" + query
        )

    ACTIONS = [
        (upload_files, 3),
        (add_record, 3),
        (add_urls, 1),
        (import_file, 1),
        (submit, 4),
        (poll_submissions, 3),
        (browse_history, 3),
        (export, 1),
    ]

    def work(self):
        self.join()
        actions, weights = zip(*self.ACTIONS, strict=True)
        for action in (User.add_record, User.upload_files):  # something to submit soon
            action(self)
        while time.monotonic() < self.run.deadline and not self.run.stopping.is_set():
            action = self.rng.choices(actions, weights)[0]
            self.run.tally.by_action[action.__name__] += 1
            try:
                action(self)
            except (ValueError, KeyError) as error:  # a page we did not expect
                self.run.tally.note(f"{action.__name__}: unexpected page ({error!r})")
            if "sessionid" not in self.browser.session.cookies:
                self.log_in_again()
            time.sleep(self.rng.uniform(0.3, 1.5))


# --- The image server the URL records point at --------------------------------


class ImageServer:
    def __init__(self):
        self.fetches = collections.Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                server.fetches[name] += 1
                body = jpeg(hash(name) & 0xFFFFFFFF)
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# --- The portal's processes ------------------------------------------------------


def process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process we can read."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        table[int(entry.name)] = (ppid, cmdline)
    return table


class Portal:
    """The Procfile's processes, started the way `make run` starts them."""

    def __init__(self, args, var_dir: Path, tokens: list[str]):
        self.args, self.var_dir = args, var_dir
        self.port, self.sandbox_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.sandbox_url = f"http://127.0.0.1:{self.sandbox_port}/"
        env = {
            k: v for k, v in os.environ.items() if k not in ("CELERY_BROKER_FOLDER", "MEDIA_ROOT")
        }
        env.update(
            VAR_DIR=str(var_dir),
            PORT=str(self.port),
            SANDBOX_PORT=str(self.sandbox_port),
            XIMILAR_API_URL=self.sandbox_url,
            XIMILAR_SANDBOX_TOKENS=",".join(tokens),
            DJANGO_SETTINGS_MODULE="ximilar_portal.settings",
            PYTHONUNBUFFERED="1",
        )
        # A queue of its own: a shared broker (a Redis db that tests also use) is
        # never read from or purged for anyone else.
        env.setdefault("CELERY_QUEUE", f"bench-load-{secrets.token_hex(3)}")
        self.env = env
        self.log_path = var_dir / "portal.log"
        self.process = None
        self.known = {}  # pid -> role of every portal process seen
        self.exits = []  # (seconds into the load, role, pid)
        self.last_log, self.log_taken_at = None, 0.0  # the sandbox's log, read every 5 s
        self.earlier_logs = []  # what sandboxes before a restart logged

    def sandbox_log(self) -> tuple[list, str]:
        """The sandbox's request log, or the last copy taken if it has stopped.
        A restarted sandbox starts a new log: what the one before it logged
        (its last copy) is kept in front of it."""
        self.log_taken_at = time.monotonic()
        try:
            answer = requests.get(self.sandbox_url + "_sandbox/log", timeout=30)
            fresh = answer.json()
        except (requests.RequestException, ValueError):
            if self.last_log is None:
                return [], "unavailable (the sandbox had stopped)"
            return self.earlier_logs + self.last_log, (
                "the sandbox had stopped: the last copy, read within 5 s of it"
            )
        if self.last_log and len(fresh) < len(self.last_log):
            self.earlier_logs += self.last_log  # the sandbox was restarted
        self.last_log = fresh
        return self.earlier_logs + fresh, "read at the end"

    def prepare(self):
        run = {"cwd": ROOT, "env": self.env, "check": True}
        subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v0"], **run)
        if self.args.flush:
            subprocess.run([PYTHON, "manage.py", "flush", "--noinput"], **run)
            purge = [PYTHON, "-m", "celery", "-A", "ximilar_portal", "purge", "-f"]
            subprocess.run(purge, **run, stdout=subprocess.DEVNULL)

    def start(self):
        log = self.log_path.open("w")
        self.process = subprocess.Popen(
            shlex.split(self.args.launcher)
            + ["--port", f"web={self.port}", "--port", f"sandbox={self.sandbox_port}"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                requests.get(self.base + "/accounts/login/", timeout=5).raise_for_status()
                requests.get(self.sandbox_url + "_sandbox/faults", timeout=5).raise_for_status()
                self.refresh()
                if set(self.roles_alive()) >= set(ROLES):
                    return
            except requests.RequestException:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        raise SystemExit(f"the portal did not start: see {self.log_path}")

    def descendants(self, table):
        found, frontier = set(), {self.process.pid}
        while frontier:
            children = {pid for pid, (ppid, _) in table.items() if ppid in frontier}
            frontier = children - found
            found |= children
        return found

    def refresh(self):
        """Remember every portal process (a child that outlives the launcher is still ours)."""
        table = process_table()
        for pid in self.descendants(table):
            role = next(
                (r for r, parts in ROLES.items() if all(p in table[pid][1] for p in parts)), None
            )
            if role and pid not in self.known:
                self.known[pid] = role
        return table

    def roles_alive(self) -> dict[str, list[int]]:
        alive = collections.defaultdict(list)
        for pid, role in self.known.items():
            if Path(f"/proc/{pid}").exists() and not _zombie(pid):
                alive[role].append(pid)
        return alive

    def watch(self, stopping, started):
        """Notice processes that exit (and new ones), once a second."""
        seen = set(self.known)
        while not stopping.wait(1):
            if time.monotonic() - self.log_taken_at > 5:
                self.sandbox_log()
            self.refresh()
            alive = {pid for pids in self.roles_alive().values() for pid in pids}
            for pid in sorted(seen - alive):
                self.exits.append((time.monotonic() - started, self.known[pid], pid))
            seen = alive

    def kill(self, role):
        pids = self.roles_alive().get(role, [])
        # The main process of the role: the one whose parent is not of the same role.
        main = [p for p in pids if self.known.get(process_table().get(p, (0, ""))[0]) != role]
        for pid in main[:1]:
            os.kill(pid, signal.SIGKILL)
        return main[:1]

    def stop(self):
        """Stop the launcher's group, then any portal process that outlived it."""
        if self.process is None:
            return []
        self.refresh()
        with _suppress():
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with _suppress():
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        time.sleep(1)
        leftovers = [pid for pids in self.roles_alive().values() for pid in pids]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in leftovers:
                with _suppress():
                    os.kill(pid, sig)
            time.sleep(3)
        self.process = None
        return leftovers


def _zombie(pid) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        return kind is not None and issubclass(kind, ProcessLookupError | PermissionError)


# --- The run -----------------------------------------------------------------------


class Run:
    def __init__(self, args, portal, images):
        self.args, self.portal, self.images = args, portal, images
        self.base = portal.base
        self.tag = secrets.token_hex(3)
        self.tally = Tally()
        self.started = time.monotonic()
        self.deadline = self.started + args.duration
        self.stopping = threading.Event()
        self.url_batches = []
        self.teams = []
        self.users = []

    def image_url(self, name):
        return f"http://127.0.0.1:{self.images.port}/img/{name}.jpg"

    def members_of(self, team):
        return [u.email for u in self.users if u.team is team and not u.is_owner]

    def invitation_link(self, email, timeout):
        """The link in the invitation e-mail the console backend printed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.portal.log_path.read_text(errors="replace")
            at = text.find(f"To: {email}")
            if at >= 0:
                match = re.search(r"https?://\S+/accounts/invite/[^/\s]+/", text[at : at + 4000])
                if match:
                    return match.group(0)
            time.sleep(0.5)
        return None


def run_load(args, portal, images, tokens):
    run = Run(args, portal, images)
    run.teams = [Team(n, tokens[n], run.tag) for n in range(args.teams)]
    run.users = [User(n, run.teams[n % args.teams], run) for n in range(args.users)]
    watcher = threading.Thread(target=portal.watch, args=(run.stopping, run.started), daemon=True)
    watcher.start()
    threads = [threading.Thread(target=u.work, name=f"user{u.number}") for u in run.users]
    for thread in threads:
        thread.start()
    kills = sorted(args.kills, key=lambda k: k[1])
    killed = []
    for role, at in kills:
        time.sleep(max(0, run.started + at - time.monotonic()))
        pids = portal.kill(role)
        killed.append((role, at, pids))
        print(f"  killed {role} {pids} at {at:.0f} s", flush=True)
    while any(t.is_alive() for t in threads):
        if time.monotonic() > run.deadline + 180:
            run.stopping.set()  # users stuck on a page: stop waiting for them
        time.sleep(1)
    run.load_seconds = time.monotonic() - run.started
    run.killed = killed
    return run


def settle(run, args):
    """Wait until every job of the run's submissions is final (or the time is up)."""
    from ximilar_portal.submissions.models import RecordJob

    started = time.monotonic()
    pks = list(run.tally.submissions)
    while time.monotonic() - started < args.settle:
        open_jobs = RecordJob.objects.filter(submission_id__in=pks).exclude(state__in=FINAL)
        open_imports = _open_batches(run)
        if not open_jobs.exists() and not open_imports:
            break
        if not run.portal.roles_alive().get("worker") and time.monotonic() - started > 30:
            print("  no worker alive: not waiting any longer", flush=True)
            break
        time.sleep(2)
    return time.monotonic() - started


def _run_teams(run):
    from ximilar_portal.accounts.models import Membership

    emails = [u.email for u in run.users]
    return set(Membership.objects.filter(user__email__in=emails).values_list("team_id", flat=True))


def _open_batches(run):
    from ximilar_portal.records.models import UploadBatch

    return UploadBatch.objects.filter(
        team_id__in=_run_teams(run), state__in=["parsing", "importing"]
    ).count()


def check(run):
    """The invariants, from the database and the sandbox's log."""
    from django.db.models import Count

    from ximilar_portal.lib.ximilar import SERVICES as PATHS
    from ximilar_portal.records.models import Preview, Record, UploadBatch
    from ximilar_portal.submissions.models import RecordJob, Result, Submission

    teams = _run_teams(run)
    pks = set(run.tally.submissions)
    found = set(Submission.objects.filter(pk__in=pks).values_list("pk", flat=True))
    jobs = RecordJob.objects.filter(submission__team_id__in=teams)
    states = collections.Counter(jobs.values_list("state", flat=True))
    open_jobs = sum(n for s, n in states.items() if s not in FINAL)
    failed = collections.Counter(jobs.filter(state="failed").values_list("error_class", flat=True))
    done_without_result = jobs.filter(state="done", result__isnull=True).count()
    asked = sum(count for _, count in run.tally.submissions.values())
    results = Result.objects.filter(team_id__in=teams)
    two_current = (
        results.filter(is_current=True)
        .values("record", "service")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    done_pairs = set(jobs.filter(state="done").values_list("record_id", "submission__service"))
    current_pairs = set(results.filter(is_current=True).values_list("record_id", "service"))
    no_current = len(done_pairs - current_pairs)

    # Billing: each 200 answer that carried a record's _id billed it once.
    log, log_source = run.portal.sandbox_log()
    prefixes = [(PATHS[s].path, s) for s in SERVICES]
    billed, refused = collections.Counter(), collections.Counter()
    for entry in log:
        service = next((s for p, s in prefixes if entry["path"].lstrip("/").startswith(p)), None)
        for ximilar_id in entry.get("record_ids", []):
            (billed if entry["status"] == 200 else refused)[(service, ximilar_id)] += 1
    per_record = collections.Counter(
        (service, ximilar_id)
        for service, ximilar_id in jobs.values_list("submission__service", "record__ximilar_id")
    )
    twice = {key: n - per_record[key] for key, n in billed.items() if n > per_record[key]}
    twice_retried = {key: n for key, n in twice.items() if refused[key]}
    done_unbilled = sum(
        1
        for key in set(
            jobs.filter(state="done").values_list("submission__service", "record__ximilar_id")
        )
        if not billed[key]
    )
    records = Record.objects.filter(team_id__in=teams)
    seen = {pk for team in run.teams for pk in team.records}  # pages said these were created
    previews = collections.Counter(records.values_list("preview", flat=True))
    batches = collections.Counter(
        UploadBatch.objects.filter(team_id__in=teams).values_list("kind", "state")
    )
    return {
        "submissions asked": len(pks),
        "submissions missing": len(pks - found),
        "submissions (database)": Submission.objects.filter(team_id__in=teams).count(),
        "records asked": asked,
        "jobs": sum(states.values()),
        "job states": dict(states),
        "open jobs": open_jobs,
        "failed reasons": dict(failed),
        "done without result": done_without_result,
        "two current results": two_current,
        "done without a current result": no_current,
        "sandbox requests": len(log),
        "sandbox log": log_source,
        "sandbox log full": len(log) >= 10_000,
        "records billed": sum(billed.values()),
        "twice billed": sum(twice.values()),
        "twice billed after a logged retry": sum(twice_retried.values()),
        "done but never billed": done_unbilled,
        "records": records.count(),
        "previews": {Preview(k).label: v for k, v in previews.items()},
        "pending previews": previews.get(Preview.PENDING, 0),  # a preview task lost
        "batches": {f"{k}/{s}": n for (k, s), n in batches.items()},
        "records missing": len(
            seen - set(records.filter(pk__in=seen).values_list("pk", flat=True))
        ),
        "lost": len(pks - found)
        + open_jobs
        + done_without_result
        + len(seen - set(records.filter(pk__in=seen).values_list("pk", flat=True))),
    }


def django_setup(portal):
    os.environ.update({k: v for k, v in portal.env.items() if k != "PYTHONUNBUFFERED"})
    for name in ("CELERY_BROKER_FOLDER", "MEDIA_ROOT"):
        os.environ.pop(name, None)
    import django

    django.setup()


def log_findings(path: Path) -> list[str]:
    patterns = (
        "Unrecoverable error",
        "Traceback",
        "stopped (rc=",
        "exited with code",
        "Address already in use",
        "WorkerLostError",
        "database is locked",
    )
    lines = path.read_text(errors="replace").splitlines()
    counts = collections.Counter()
    firsts = {}
    for line in lines:
        for pattern in patterns:
            if pattern in line:
                counts[pattern] += 1
                firsts.setdefault(pattern, line.strip()[:200])
    return [f"{counts[p]} x {p!r}, first: {firsts[p]}" for p in patterns if counts[p]]


def report(args, run, facts, settle_seconds, leftovers):
    tally = run.tally
    config = "PostgreSQL + Redis" if os.environ.get("DATABASE_URL") else "embedded defaults"
    print()
    print(f"configuration: {config} ({args.launcher.split('/')[-1]})")
    print(
        f"users: {args.users} in {args.teams} teams, load {run.load_seconds:.0f} s "
        f"(asked {args.duration:.0f} s), settle {settle_seconds:.0f} s"
    )
    print(f"actions: {dict(tally.by_action)}")
    requests_total = sum(tally.statuses.values())
    print(f"responses: {requests_total} ({dict(sorted(tally.statuses.items()))})")
    if tally.seconds:
        ordered = sorted(tally.seconds)
        p50, p95 = ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.95)]
        print(f"response time: median {p50:.2f} s, p95 {p95:.2f} s, max {ordered[-1]:.2f} s")
    connection_errors = sum(tally.connection_errors.values())
    first = tally.first_connection_error
    print(
        f"connection errors: {connection_errors} {dict(tally.connection_errors)}"
        + (f", first at {first:.1f} s" if first is not None else "")
    )
    for when, method, path, status in tally.server_errors[:10]:
        print(f"  {status} at {when:.1f} s: {method} {path}")
    if len(tally.server_errors) > 10:
        print(f"  … {len(tally.server_errors) - 10} more 5xx")
    print(f"records created (as the users saw it): {dict(tally.records_created)}")
    for key in (
        "records",
        "previews",
        "batches",
        "submissions asked",
        "submissions missing",
        "records asked",
        "jobs",
        "job states",
        "failed reasons",
        "open jobs",
        "done without result",
        "two current results",
        "done without a current result",
        "sandbox requests",
        "records billed",
        "twice billed",
        "twice billed after a logged retry",
        "done but never billed",
    ):
        print(f"{key}: {facts[key]}")
    if facts["sandbox log"] != "read at the end":
        print("warning: the sandbox's last requests may be missing: 'never billed' may count them")
    if facts["sandbox log full"]:
        print("warning: the sandbox log reached its limit; billing counts are partial")
    for role, at, pids in run.killed:
        print(f"killed on purpose: {role} {pids} at {at:.0f} s")
    for when, role, pid in run.portal.exits:
        print(f"process exited: {role} (pid {pid}) at {when:.1f} s into the load")
    for line in facts["log findings"]:
        print(f"portal log: {line}")
    if leftovers:
        print(f"processes that outlived the launcher's group: {len(leftovers)}")
    for note, count in tally.notes.items():
        print(f"note: {note}: {count}")
    fives = tally.statuses.get("5xx", 0)
    errors = connection_errors + fives + facts["lost"] + facts["twice billed"]
    print(
        f"summary: {connection_errors} connection errors, {fives} 5xx, {facts['lost']} lost, "
        f"{facts['twice billed']} twice billed"
    )
    print(f"load_errors: {errors}")
    return errors


def main() -> int:
    args = parse_args()
    if args.seed is not None:
        random.seed(args.seed)
    tokens = [f"load-{secrets.token_hex(8)}-t{n:03d}" for n in range(args.teams)]
    var_dir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    images = ImageServer()
    portal = Portal(args, var_dir, tokens)
    leftovers, errors = [], 1
    try:
        portal.prepare()
        portal.start()
        print(f"portal {portal.base}, sandbox {portal.sandbox_url}, VAR_DIR {var_dir}", flush=True)
        run = run_load(args, portal, images, tokens)
        print(f"load over after {run.load_seconds:.0f} s; settling…", flush=True)
        django_setup(portal)
        settle_seconds = settle(run, args)
        facts = check(run)
        facts["log findings"] = log_findings(portal.log_path)  # before our own stop is logged
        run.stopping.set()
        leftovers = portal.stop()
        errors = report(args, run, facts, settle_seconds, leftovers)
    finally:
        portal.stop()
        images.stop()
        if args.keep:
            print(f"kept {var_dir}")
        else:
            subprocess.run(["rm", "-rf", str(var_dir)], check=False)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
