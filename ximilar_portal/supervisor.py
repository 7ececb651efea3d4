"""`make run`'s process manager: python -m ximilar_portal.supervisor Procfile
[--port NAME=PORT ...] [--first sandbox] [--stop-timeout 10] [--pidfile PATH]

Starts every Procfile line (`name: command`, run by `sh -c` so `${VAR}` and
`${VAR:-default}` expand as in a shell), the `--first` ones (the sandbox) before
the rest, each in its own process group, and prefixes every output line with the
time and the process name. A process that dies is restarted after a backoff that
doubles while it keeps dying at once; the others keep running. SIGINT, SIGTERM or
SIGHUP stops the processes one by one in reverse order, the `--first` ones last:
SIGTERM to the process group, SIGKILL after `--stop-timeout`.

Nothing outlives the supervisor: each child gets SIGTERM when it dies (Linux
PR_SET_PDEATHSIG), and a pidfile (default VAR_DIR/supervisor.pids) lets the next
start stop whatever a killed supervisor left behind before it checks the ports.

Standard library only: it starts before anything else does."""

import argparse
import contextlib
import ctypes
import functools
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

RESTART_FIRST_DELAY = 1.0
RESTART_MAX_DELAY = 30.0
# A process that ran this long before dying counts as healthy: its backoff starts over.
RESTART_STABLE_SECONDS = 10.0
FIRST_READY_TIMEOUT = 30.0
TICK_SECONDS = 0.25
LINE_MAX_BYTES = 64 * 1024
PR_SET_PDEATHSIG = 1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _prctl = _libc.prctl
except (OSError, AttributeError):  # not Linux: the pidfile alone cleans up
    _prctl = None


class SupervisorError(Exception):
    """A reason not to start, said plainly to the person who ran `make run`."""


@dataclass(frozen=True)
class Entry:
    name: str
    command: str


# --- The Procfile ---------------------------------------------------------------

_PROCFILE_LINE = re.compile(r"^([A-Za-z0-9_.-]+):\s*(\S.*)$")


def procfile_parse(text: str) -> list[Entry]:
    entries: list[Entry] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _PROCFILE_LINE.match(line)
        if match is None:
            raise SupervisorError(f"Procfile line {number} is not `name: command`: {raw!r}")
        if any(entry.name == match[1] for entry in entries):
            raise SupervisorError(f"Procfile line {number}: {match[1]!r} is named twice")
        entries.append(Entry(match[1], match[2]))
    if not entries:
        raise SupervisorError("the Procfile has no processes")
    return entries


def start_order(entries: list[Entry], first: list[str]) -> list[Entry]:
    """The `first` entries, then the rest in Procfile order; stopping goes backwards."""
    return [e for e in entries if e.name in first] + [e for e in entries if e.name not in first]


def restart_delay(previous: float | None, ran_for: float) -> float:
    if previous is None or ran_for >= RESTART_STABLE_SECONDS:
        return RESTART_FIRST_DELAY
    return min(previous * 2, RESTART_MAX_DELAY)


# --- Processes, as Linux's /proc shows them ---------------------------------------


def _proc_stat(pid: int) -> list[str] | None:
    """Fields 3 on of /proc/PID/stat (state, ppid, pgrp, ...), None if there is no such pid."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return text.rsplit(")", 1)[1].split()


def process_start(pid: int) -> int | None:
    """The pid's start time (clock ticks since boot): tells a process from a reused pid."""
    stat = _proc_stat(pid)
    return None if stat is None or stat[0] in "ZX" else int(stat[19])


def process_alive(pid: int) -> bool:
    return process_start(pid) is not None


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of the process group."""
    if not Path("/proc/self/stat").exists():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[0] not in "ZX" and int(stat[2]) == pgid:
                members.append(int(entry.name))
    return members


def group_signal(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def port_holder(port: int) -> str:
    """Who listens on the TCP port, as far as /proc tells (only our user's processes)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text().splitlines()[1:]:
                fields = row.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in os.scandir(f"/proc/{entry.name}/fd"):
                if os.readlink(fd.path) in inodes:
                    cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes()
                    command = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
                    return f"pid {entry.name} ({command[:120]})"
    return "a process this user cannot see"


def port_free(port: int) -> bool:
    """Whether a server can bind 127.0.0.1:port (with SO_REUSEADDR, as gunicorn does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def port_listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


# --- The pidfile -----------------------------------------------------------------


def pidfile_read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def pidfile_write(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(state))
    partial.replace(path)  # a supervisor killed mid-write leaves the previous whole file


def _same_process(record: dict) -> bool:
    """Whether the recorded pid still is the recorded process (and not a reused pid)."""
    return process_start(record["pid"]) == record["start"]


def _ours(record: dict) -> bool:
    """Whether the recorded group still has processes that the recorded child left."""
    if process_alive(record["pid"]):
        return _same_process(record)
    # The leader is gone; Linux gives no new process a pid still used as a process group id.
    return bool(group_members(record["pid"]))


# --- Children --------------------------------------------------------------------


def _child_setup(supervisor_pid: int) -> None:
    """In the child before exec: die with the supervisor, even if it is SIGKILLed."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor_pid:
        os._exit(1)  # the supervisor died while this child was being forked


@dataclass
class Child:
    entry: Entry
    popen: subprocess.Popen | None = None
    started: float = 0.0
    pgid: int | None = None  # the group to wait for: set while it may have members
    ticks: int | None = None  # the leader's start time, to tell it from a reused pid
    term_sent: float | None = None
    kill_sent: bool = False
    restart_at: float | None = None
    delay: float | None = None
    stopped_logged: bool = True

    @property
    def name(self) -> str:
        return self.entry.name

    def gone(self) -> bool:
        return self.popen is None and self.pgid is None


@dataclass
class Stream:
    name: str
    pending: bytearray = field(default_factory=bytearray)


class Supervisor:
    def __init__(self, entries, *, first, ports, pidfile, stop_timeout, out=None):
        self.children = [Child(e) for e in start_order(entries, first)]
        self.first = [c for c in self.children if c.name in first]
        self.ports = ports  # [(name or None, port)]
        self.pidfile = pidfile
        self.stop_timeout = stop_timeout
        self.out = out if out is not None else sys.stdout.buffer
        self.width = max(len("system"), *(len(c.name) for c in self.children))
        self.selector = selectors.DefaultSelector()
        self.signals: list[int] = []
        self.stopping = False
        self.rest_started = False
        self.first_deadline = 0.0
        self.color = getattr(self.out, "isatty", lambda: False)()

    # --- output ---

    def emit(self, name: str, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        label = name.ljust(self.width)
        if self.color:
            names = [c.name for c in self.children]
            code = 31 + names.index(name) % 6 if name in names else 37
            label = f"\x1b[{code}m{label}\x1b[0m"
        try:
            self.out.write(f"{stamp} {label} | {text}\n".encode(errors="replace"))
            self.out.flush()
        except OSError:
            pass  # the terminal went away (SIGHUP): stopping goes on without output

    def log(self, text: str) -> None:
        self.emit("system", text)

    def _read(self, fd: int, stream: Stream) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.selector.unregister(fd)
            os.close(fd)
            if stream.pending:
                self.emit(stream.name, stream.pending.decode(errors="replace"))
            return
        stream.pending += data
        *lines, rest = stream.pending.split(b"\n")
        for line in lines:
            self.emit(stream.name, line.rstrip(b"\r").decode(errors="replace"))
        stream.pending = bytearray(rest)
        if len(stream.pending) > LINE_MAX_BYTES:
            self.emit(stream.name, stream.pending.decode(errors="replace"))
            stream.pending.clear()

    # --- the pidfile ---

    def _record(self) -> None:
        children = [
            {"name": c.name, "pid": c.pgid, "start": c.ticks}
            for c in self.children
            if c.pgid is not None
        ]
        state = {
            "supervisor": {"pid": os.getpid(), "start": process_start(os.getpid())},
            "children": children,
        }
        pidfile_write(self.pidfile, state)

    def leftovers_stop(self) -> None:
        state = pidfile_read(self.pidfile)
        previous = state.get("supervisor")
        if previous and previous["pid"] != os.getpid() and _same_process(previous):
            raise SupervisorError(
                f"another supervisor (pid {previous['pid']}) runs these processes "
                f"(pidfile {self.pidfile}): stop it first"
            )
        records = [r for r in reversed(state.get("children", [])) if r.get("start") and _ours(r)]
        for record in records:
            self.log(
                f"stopping {record['name']} (pid {record['pid']}), left running by a "
                "supervisor that did not stop it"
            )
            self._group_end(record["pid"])
        if state:
            self.pidfile.unlink(missing_ok=True)

    def _group_end(self, pgid: int) -> None:
        """SIGTERM, then SIGKILL after the timeout; blocking (only before anything runs)."""
        group_signal(pgid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if group_members(pgid):
            group_signal(pgid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while group_members(pgid) and time.monotonic() < deadline:
                time.sleep(0.1)

    def ports_check(self) -> None:
        for name, port in self.ports:
            if not port_free(port):
                label = f"port {port}" + (f" ({name})" if name else "")
                raise SupervisorError(
                    f"{label} is in use by {port_holder(port)}, which this supervisor did not "
                    "start: stop it or choose another port"
                )

    # --- children ---

    def _start(self, child: Child) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        try:
            popen = subprocess.Popen(  # noqa: S603 - the Procfile is the project's own
                ["/bin/sh", "-c", child.entry.command],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                process_group=0,
                preexec_fn=functools.partial(_child_setup, os.getpid()),
            )
        except OSError as error:
            self.log(f"{child.name} could not start: {error}")
            self._schedule_restart(child, ran_for=0.0)
            return
        os.set_blocking(popen.stdout.fileno(), False)
        fd = os.dup(popen.stdout.fileno())
        popen.stdout.close()  # the selector owns the dup until end of file
        self.selector.register(fd, selectors.EVENT_READ, Stream(child.name))
        child.popen, child.pgid, child.ticks = popen, popen.pid, process_start(popen.pid)
        child.started, child.term_sent, child.kill_sent = time.monotonic(), None, False
        child.restart_at, child.stopped_logged = None, False
        self.log(f"{child.name} started (pid {popen.pid})")
        self._record()

    def _schedule_restart(self, child: Child, ran_for: float) -> None:
        child.delay = restart_delay(child.delay, ran_for)
        child.restart_at = time.monotonic() + child.delay

    def _reap(self, child: Child) -> None:
        """Notices a child whose process ended: logs it and plans what comes next."""
        code = child.popen.poll()
        if code is None:
            return
        ran_for = time.monotonic() - child.started
        child.popen = None
        left = group_members(child.pgid)
        if self.stopping:
            if child.term_sent is None:
                self.log(f"{child.name} exited with code {code}")
        else:
            self._schedule_restart(child, ran_for)
            self.log(
                f"{child.name} exited with code {code} after {ran_for:.1f} s, "
                f"restarting in {child.delay:g} s"
            )
            if left:
                self.log(f"{child.name}: stopping what it left running (pids {left})")
        self._record()

    def _settle(self, child: Child, now: float) -> None:
        """Waits for the child's group to empty (SIGKILL after the timeout), then restarts."""
        if child.pgid is not None and child.popen is None:
            if group_members(child.pgid):
                self._terminate(child, now)
            else:
                child.pgid = None
        if self.stopping:
            if child.gone() and not child.stopped_logged and child.term_sent is not None:
                self.log(f"{child.name} stopped")
                child.stopped_logged = True
        elif child.gone() and child.restart_at is not None and now >= child.restart_at:
            self._start(child)

    def _terminate(self, child: Child, now: float, announce=False) -> None:
        """SIGTERM to the child's group, SIGKILL once the timeout has passed."""
        if child.term_sent is None:
            if announce:
                self.log(f"stopping {child.name}")
            group_signal(child.pgid, signal.SIGTERM)
            child.term_sent = now
        elif now - child.term_sent > self.stop_timeout and not child.kill_sent:
            self.log(f"{child.name} ignored SIGTERM for {self.stop_timeout:g} s: SIGKILL")
            group_signal(child.pgid, signal.SIGKILL)
            child.kill_sent = True

    def _stop_next(self, now: float) -> bool:
        """Stops the children one at a time, last started first; True once all are gone."""
        for child in reversed(self.children):
            if not child.gone():
                if child.popen is not None:
                    self._terminate(child, now, announce=True)
                return False
        return True

    # --- the loop ---

    def _on_signal(self, signum, frame) -> None:
        self.signals.append(signum)

    def _signals_install(self) -> tuple[int, int]:
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        self.selector.register(wake_read, selectors.EVENT_READ, None)
        for signum in STOP_SIGNALS:
            if signum == signal.SIGHUP and signal.getsignal(signum) is signal.SIG_IGN:
                continue  # under nohup: keep running after a hangup
            signal.signal(signum, self._on_signal)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the select
        signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        return wake_read, wake_write

    def _handle_signals(self) -> None:
        while self.signals:
            signum = self.signals.pop(0)
            name = signal.Signals(signum).name
            if self.stopping:
                self.log(f"{name}: already stopping")
                continue
            self.stopping = True
            last = ", ".join(c.name for c in self.first) or self.children[0].name
            self.log(f"{name} received: stopping {len(self.children)} processes, {last} last")

    def _start_rest(self, now: float) -> None:
        """The rest start once the first ones listen on their ports (or after a timeout)."""
        first_ports = [p for n, p in self.ports if n in {c.name for c in self.first}]
        if all(port_listening(p) for p in first_ports) or now >= self.first_deadline:
            self.rest_started = True
            for child in self.children:
                if child not in self.first:
                    self._start(child)

    def run(self) -> int:
        wake_read, wake_write = self._signals_install()  # a signal from here on is kept
        try:
            self.leftovers_stop()
            self.ports_check()
        except SupervisorError as error:
            self.log(f"cannot start: {error}")
            return 1
        self._record()
        if Path(".env").exists():  # honcho read it; settings come from the environment only
            self.log(".env is not read: export it first (set -a; . ./.env; set +a)")
        for child in self.first:
            self._start(child)
        self.first_deadline = time.monotonic() + FIRST_READY_TIMEOUT
        try:
            while True:
                for key, _ in self.selector.select(TICK_SECONDS):
                    if key.data is None:
                        with contextlib.suppress(BlockingIOError):
                            while os.read(wake_read, 512):
                                pass
                    else:
                        self._read(key.fd, key.data)
                self._handle_signals()
                now = time.monotonic()
                if not self.stopping and not self.rest_started:
                    self._start_rest(now)
                for child in self.children:
                    if child.popen is not None:
                        self._reap(child)
                    self._settle(child, now)
                if self.stopping and self._stop_next(now):
                    break
        finally:
            self._drain()
            signal.set_wakeup_fd(-1)
            os.close(wake_read)
            os.close(wake_write)
        self.pidfile.unlink(missing_ok=True)
        self.log("every process stopped")
        return 0

    def _drain(self) -> None:
        """Prints what the stopped children wrote last."""
        deadline = time.monotonic() + 1
        while len(self.selector.get_map()) > 1 and time.monotonic() < deadline:
            for key, _ in self.selector.select(0.1):
                if key.data is not None:
                    self._read(key.fd, key.data)


# --- Command line ----------------------------------------------------------------


def _port_arg(value: str) -> tuple[str | None, int]:
    name, _, port = value.rpartition("=")
    try:
        return (name or None), int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not NAME=PORT or PORT: {value!r}") from None


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ximilar_portal.supervisor",
        description="Runs a Procfile: restarts what dies, stops everything in order.",
    )
    parser.add_argument("procfile", type=Path)
    parser.add_argument(
        "--port",
        type=_port_arg,
        action="append",
        default=[],
        help="NAME=PORT: must be free before start; a --first process's port must "
        "accept connections before the rest start (repeatable)",
    )
    parser.add_argument(
        "--first",
        action="append",
        default=None,
        help="started first, stopped last (repeatable; default: sandbox)",
    )
    parser.add_argument("--stop-timeout", type=float, default=10.0, help="seconds before SIGKILL")
    parser.add_argument(
        "--pidfile", type=Path, default=None, help="default VAR_DIR/supervisor.pids"
    )
    parser.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="stop everything when the parent (make) dies",
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    parent = os.getppid()
    args = parse_args(argv)
    pidfile = args.pidfile or Path(os.environ.get("VAR_DIR") or "var") / "supervisor.pids"
    try:
        entries = procfile_parse(args.procfile.read_text())
    except (OSError, SupervisorError) as error:
        print(f"supervisor: {error}", file=sys.stderr)
        return 2
    if args.exit_with_parent and _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            return 1  # the parent died before the line above
    supervisor = Supervisor(
        entries,
        first=args.first if args.first is not None else ["sandbox"],
        ports=args.port,
        pidfile=pidfile.resolve(),
        stop_timeout=args.stop_timeout,
    )
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
