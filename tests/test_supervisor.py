"""`make run`'s supervisor (ximilar_portal/supervisor.py): a process that dies is
restarted while the others keep serving; every way of stopping it (signals, a kill
of its process group, SIGKILL of the supervisor itself) leaves no child running and
stops the sandbox last; the next start after each one is clean."""

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from ximilar_portal import supervisor
from ximilar_portal.supervisor import Entry, SupervisorError, group_members, process_alive

from .conftest import wait_for

CHILD = Path(__file__).with_name("supervised_child.py")
STOP_TIMEOUT = 5


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_status(port: int, path: str = "/") -> int | None:
    """The HTTP status a GET gets, None when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def answers(port: int, path: str = "/") -> bool:
    return http_status(port, path) == 200


# --- Without processes -------------------------------------------------------------


def test_procfile_lines_comments_and_errors():
    text = "# the portal\n\nweb: exec gunicorn --bind 127.0.0.1:${PORT}\nsandbox:  exec sb\n"
    assert supervisor.procfile_parse(text) == [
        Entry("web", "exec gunicorn --bind 127.0.0.1:${PORT}"),
        Entry("sandbox", "exec sb"),
    ]
    with pytest.raises(SupervisorError, match="line 2 is not"):
        supervisor.procfile_parse("web: a\nno colon here\n")
    with pytest.raises(SupervisorError, match="named twice"):
        supervisor.procfile_parse("web: a\nweb: b\n")
    with pytest.raises(SupervisorError, match="no processes"):
        supervisor.procfile_parse("# nothing\n")


def test_the_sandbox_starts_first_whatever_its_line():
    entries = [Entry(n, "x") for n in ("web", "worker-engine", "sandbox", "beat")]
    order = [e.name for e in supervisor.start_order(entries, ["sandbox"])]
    assert order == ["sandbox", "web", "worker-engine", "beat"]


def test_backoff_grows_while_a_process_dies_at_once_and_resets_after_a_good_run():
    delays = [None]
    for _ in range(8):
        delays.append(supervisor.restart_delay(delays[-1], ran_for=0.2))
    assert delays[1] == supervisor.RESTART_FIRST_DELAY
    assert delays[1:] == sorted(delays[1:]) and delays[-1] == supervisor.RESTART_MAX_DELAY
    assert supervisor.restart_delay(delays[-1], ran_for=60) == supervisor.RESTART_FIRST_DELAY


# --- A Procfile of tiny processes ----------------------------------------------------


class Supervised:
    """The supervisor in its own process group (as `make run` is a terminal's job)."""

    def __init__(self, folder: Path, procfile: Path, ports: dict[str, int]):
        self.folder, self.procfile, self.ports = folder, procfile, ports
        self.pidfile = folder / "supervisor.pids"
        self.process = None
        self.starts = 0

    def start(self, *extra, under_shell=False):
        self.starts += 1
        self.log_path = self.folder / f"supervisor-{self.starts}.log"
        command = [sys.executable, "-m", "ximilar_portal.supervisor", str(self.procfile)]
        command += ["--stop-timeout", str(STOP_TIMEOUT), "--pidfile", str(self.pidfile)]
        command += [f"--port={name}={port}" for name, port in self.ports.items()]
        command += extra
        if under_shell:  # a parent that waits for it, as make waits for its recipe
            command = ["/bin/sh", "-c", f"{shlex.join(command)}; true"]
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=settings.BASE_DIR,
                env=dict(os.environ, MARK_DIR=str(self.folder), **self.port_env()),
                start_new_session=True,
            )
        return self

    def port_env(self):
        return {f"{name.upper()}_PORT": str(port) for name, port in self.ports.items()}

    def log(self) -> str:
        return self.log_path.read_text()

    def pids(self, name) -> list[int]:
        path = self.folder / f"{name}.started"
        return [int(p) for p in path.read_text().split()] if path.exists() else []

    def all_pids(self) -> list[int]:
        return [int(p) for f in self.folder.glob("*.started") for p in f.read_text().split()]

    def wait_up(self, names):
        def up():
            assert self.process.poll() is None, self.log()
            return all(len([p for p in self.pids(n) if process_alive(p)]) >= 1 for n in names)

        wait_for(up, timeout=60, message=f"{names} up")
        for name, port in self.ports.items():
            wait_for(lambda port=port: answers(port), timeout=60, message=f"{name} answering")
        return self

    def wait_exit(self, timeout=60) -> int:
        return self.process.wait(timeout=timeout)

    def stop_order(self) -> list[tuple[str, str]]:
        path = self.folder / "stopped"
        lines = path.read_text().splitlines() if path.exists() else []
        return [tuple(line.split(" alive=")) for line in lines]

    def kill(self):
        """The supervisor's whole group, even when its parent shell is gone already."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


NAMES = ["web", "worker", "sandbox", "beat"]


@pytest.fixture
def supervised(tmp_path):
    python, child = sys.executable, CHILD
    procfile = tmp_path / "Procfile"
    # The sandbox is third, so starting it first is the supervisor's doing; beat's
    # folder comes through a shell default, the ports through variables.
    procfile.write_text(
        f"web: exec {python} {child} web {tmp_path} ${{WEB_PORT}}\n"
        f"worker: exec {python} {child} worker {tmp_path}\n"
        f"sandbox: exec {python} {child} sandbox {tmp_path} ${{SANDBOX_PORT}}\n"
        f"beat: exec {python} {child} beat ${{MARK_DIR:-/nonexistent}}\n"
    )
    runner = Supervised(tmp_path, procfile, {"sandbox": free_port(), "web": free_port()})
    yield runner
    runner.kill()
    for pid in runner.all_pids():
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)


def assert_all_gone(runner: Supervised):
    wait_for(
        lambda: not [p for p in runner.all_pids() if process_alive(p)],
        timeout=30,
        message="every child gone",
    )
    assert not runner.pidfile.exists()


def assert_sandbox_stopped_last(runner: Supervised):
    order = runner.stop_order()
    assert [name for name, _ in order] == ["beat", "worker", "web", "sandbox"], order
    assert dict(order)["sandbox"] == "", order  # nothing else was running any more


@pytest.mark.slow
def test_a_killed_child_is_restarted_while_the_others_keep_serving(supervised):
    supervised.start().wait_up(NAMES)
    assert [line.split("|")[1] for line in supervised.log().splitlines()[:1]] == [
        f" sandbox started (pid {supervised.pids('sandbox')[0]})"
    ]
    (worker,) = supervised.pids("worker")
    os.kill(worker, signal.SIGKILL)
    while len(supervised.pids("worker")) < 2:  # web answers all along
        assert answers(supervised.ports["web"])
        time.sleep(0.05)
    assert "worker exited with code -9 after" in supervised.log()
    assert "restarting in 1 s" in supervised.log()
    assert process_alive(supervised.pids("worker")[-1])
    assert all(len(supervised.pids(n)) == 1 for n in ("web", "sandbox", "beat"))
    os.kill(supervised.process.pid, signal.SIGTERM)
    assert supervised.wait_exit() == 0
    assert_all_gone(supervised)


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "SIGHUP", "group"])
def test_every_way_of_stopping_leaves_nothing_and_stops_the_sandbox_last(supervised, how):
    supervised.start().wait_up(NAMES)
    if how == "group":  # what killing `make run`'s process group does
        os.killpg(supervised.process.pid, signal.SIGTERM)
    else:
        os.kill(supervised.process.pid, getattr(signal, how))
    assert supervised.wait_exit() == 0
    assert_all_gone(supervised)
    assert_sandbox_stopped_last(supervised)
    assert "every process stopped" in supervised.log()

    (supervised.folder / "stopped").unlink()
    supervised.start().wait_up(NAMES)  # no "Address already in use"
    os.kill(supervised.process.pid, signal.SIGTERM)
    assert supervised.wait_exit() == 0
    assert_all_gone(supervised)
    assert_sandbox_stopped_last(supervised)


@pytest.mark.slow
def test_sigkill_of_the_supervisor_leaves_no_orphan(supervised):
    supervised.start().wait_up(NAMES)
    children = supervised.all_pids()
    os.kill(supervised.process.pid, signal.SIGKILL)
    supervised.wait_exit()
    wait_for(lambda: not [p for p in children if process_alive(p)], timeout=30, message="no orphan")
    supervised.start().wait_up(NAMES)
    os.kill(supervised.process.pid, signal.SIGINT)
    assert supervised.wait_exit() == 0
    assert_all_gone(supervised)


@pytest.mark.slow
def test_with_exit_with_parent_a_killed_make_stops_everything_in_order(supervised):
    """`make run` passes --exit-with-parent: make killed alone (-9) must not leave a
    supervisor and its children serving on with no terminal attached."""
    make = supervised.start("--exit-with-parent", under_shell=True).wait_up(NAMES).process
    make.kill()
    make.wait()
    wait_for(lambda: not supervised.pidfile.exists(), timeout=60, message="supervisor done")
    assert_all_gone(supervised)
    assert_sandbox_stopped_last(supervised)
    assert "SIGTERM received" in supervised.log()


@pytest.mark.slow
def test_the_next_start_stops_what_a_killed_supervisor_left_running(supervised):
    """A child that ignores SIGTERM outlives a SIGKILLed supervisor; the pidfile finds it."""
    stubborn = f"stubborn: exec {sys.executable} {CHILD} stubborn {supervised.folder} --stubborn\n"
    supervised.procfile.write_text(supervised.procfile.read_text() + stubborn)
    supervised.start().wait_up([*NAMES, "stubborn"])
    os.kill(supervised.process.pid, signal.SIGKILL)
    supervised.wait_exit()
    (left,) = supervised.pids("stubborn")
    time.sleep(1)
    assert process_alive(left)

    supervised.start().wait_up([*NAMES, "stubborn"])
    assert not process_alive(left)
    assert f"stopping stubborn (pid {left}), left running by a supervisor" in supervised.log()
    os.kill(supervised.process.pid, signal.SIGTERM)
    assert supervised.wait_exit() == 0
    assert "stubborn ignored SIGTERM" in supervised.log()
    assert_all_gone(supervised)


@pytest.mark.slow
def test_a_port_taken_by_another_program_is_named_and_nothing_starts(supervised):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", supervised.ports["web"]))
        squatter.listen()
        assert supervised.start().wait_exit() == 1
    assert f"port {supervised.ports['web']} (web) is in use by pid {os.getpid()}" in (
        supervised.log()
    )
    assert "did not start" in supervised.log()
    assert supervised.all_pids() == []


@pytest.mark.slow
def test_a_second_supervisor_refuses_while_the_first_runs(supervised):
    first = supervised.start().wait_up(NAMES).process
    assert supervised.start().wait_exit() == 1
    assert f"another supervisor (pid {first.pid}) runs these processes" in supervised.log()
    assert all(process_alive(p) for p in supervised.all_pids())
    os.kill(first.pid, signal.SIGTERM)
    assert first.wait(timeout=60) == 0
    assert_all_gone(supervised)


@pytest.mark.slow
def test_a_process_that_keeps_dying_is_restarted_ever_more_slowly(supervised):
    supervised.procfile.write_text(
        f"crash: exec {sys.executable} -c 'import sys; sys.exit(3)'\n"
        f"web: exec {sys.executable} {CHILD} web {supervised.folder} ${{WEB_PORT}}\n"
    )
    supervised.ports.pop("sandbox")
    supervised.start().wait_up(["web"])
    restarts = "crash exited with code 3 after"
    wait_for(lambda: supervised.log().count(restarts) >= 3, timeout=60, message="3 restarts")
    delays = [
        float(line.rsplit("restarting in ", 1)[1].split()[0])
        for line in supervised.log().splitlines()
        if restarts in line
    ]
    assert delays[:3] == [1, 2, 4]
    assert answers(supervised.ports["web"])
    os.kill(supervised.process.pid, signal.SIGTERM)
    assert supervised.wait_exit() == 0


# --- The real Procfile, as `make run` starts it -------------------------------------


def make_run_env(var_dir: Path, port: int, sandbox_port: int) -> dict:
    """SQLite and the filesystem broker in a throwaway VAR_DIR, on free ports."""
    env = dict(os.environ, VAR_DIR=str(var_dir), PORT=str(port), SANDBOX_PORT=str(sandbox_port))
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_BROKER_FOLDER", "MEDIA_ROOT"):
        env.pop(name, None)
    env.pop("XIMILAR_API_URL", None)  # the Makefile points it at this sandbox
    return env


def supervised_pids(pidfile: Path) -> dict[str, int]:
    return {c["name"]: c["pid"] for c in json.loads(pidfile.read_text())["children"]}


@pytest.mark.slow
def test_make_run_restarts_a_killed_worker_and_stops_the_sandbox_last(tmp_path):
    port, sandbox_port = free_port(), free_port()
    log_path, pidfile = tmp_path / "make-run.log", tmp_path / "supervisor.pids"
    # -o: never (re)install the virtualenv from a test.
    command = ["make", "--no-print-directory", "-o", ".venv/bin/activate", "run"]
    with open(log_path, "w") as log:
        make = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=settings.BASE_DIR,
            env=make_run_env(tmp_path, port, sandbox_port),
            start_new_session=True,
        )
    try:
        wait_for(lambda: answers(port, "/accounts/login/"), timeout=180, message="portal up")
        pids = supervised_pids(pidfile)
        worker = next(name for name in pids if name.startswith("worker"))  # one per queue, maybe

        def readies():  # "celery@host ready." lines of that worker
            text = log_path.read_text()
            return len(re.findall(rf"^\S+ {re.escape(worker)}\s+\|.* ready\.$", text, re.M))

        wait_for(lambda: readies() >= 1, timeout=120, message=f"{worker} ready")
        assert http_status(sandbox_port) is not None
        seen = {p for pgid in pids.values() for p in group_members(pgid)}  # gunicorn's workers

        os.kill(pids[worker], signal.SIGKILL)
        wait_for(
            lambda: supervised_pids(pidfile).get(worker, pids[worker]) != pids[worker],
            timeout=60,
            message=f"{worker} restarted",
        )
        assert f"{worker} exited with code -9 after" in log_path.read_text()
        assert answers(port, "/accounts/login/")
        wait_for(lambda: readies() >= 2, timeout=120, message=f"{worker} ready again")
        now = supervised_pids(pidfile)
        seen |= {p for pgid in now.values() for p in group_members(pgid)}

        os.killpg(make.pid, signal.SIGTERM)  # the whole `make run` group, as a terminal would
        make.wait(timeout=120)
        wait_for(lambda: not [p for p in seen if process_alive(p)], timeout=30, message="gone")
        said = [line.split(" | ", 1)[-1] for line in log_path.read_text().splitlines()]
        stopped = [text.split()[0] for text in said if re.fullmatch(r"\S+ stopped", text)]
        assert stopped[-1] == "sandbox" and sorted(stopped) == sorted(now), said
        assert not pidfile.exists()
        assert not answers(port, "/accounts/login/")
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
        for pgid in supervised_pids(pidfile).values() if pidfile.exists() else []:
            supervisor.group_signal(pgid, signal.SIGKILL)
