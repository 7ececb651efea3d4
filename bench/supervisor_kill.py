"""Benchmark (not a test): what `make run` does when each of its processes is
killed with SIGKILL. Starts `make run` (in a throwaway VAR_DIR, on free ports:
SQLite + filesystem broker unless DATABASE_URL / CELERY_BROKER_URL are set),
waits until everything serves, then kills each supervised process in turn
(`--runs` times each) and measures from the kill:

- the supervisor's "NAME exited with code -9 ..., restarting in N s" line;
- when the process serves again: the portal answers GET /accounts/login/ (web),
  the sandbox answers (sandbox), a task sent once the old worker is reaped has
  run (workers; also when the new one said "ready."), the next "Sending due
  task" (beat);
- for web and sandbox, how many of the requests sent every 50 ms meanwhile failed;
- whether the other processes kept serving (the portal polled through every kill).

    .venv/bin/python bench/supervisor_kill.py [--runs 3] [--only worker]

Run it on a quiet machine or not: the figures include the processes' own start-up."""

import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ximilar_portal.supervisor import pidfile_read, process_alive  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_ok(port: int, path: str = "/", any_status=False) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as reply:
            return reply.status == 200
    except urllib.error.HTTPError:
        return any_status
    except OSError:
        return False


class Output:
    """The lines of `make run`, each with the monotonic time it arrived."""

    def __init__(self, stream):
        self.lines: list[tuple[float, str]] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream):
        for raw in stream:
            with self.lock:
                self.lines.append((time.monotonic(), raw.decode(errors="replace").rstrip("\n")))

    def first(self, pattern: str, since: float, timeout: float = 120) -> float | None:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for at, line in self.lines:
                    if at >= since and regex.search(line):
                        return at
            time.sleep(0.02)
        return None


class Poller:
    """GETs a URL every 50 ms and remembers the failures."""

    def __init__(self, port, path="/", any_status=False):
        self.port, self.path, self.any_status = port, path, any_status
        self.results: list[tuple[float, bool]] = []
        self.running = True
        threading.Thread(target=self._poll, daemon=True).start()

    def _poll(self):
        while self.running:
            at = time.monotonic()
            self.results.append((at, http_ok(self.port, self.path, self.any_status)))
            time.sleep(max(0.0, 0.05 - (time.monotonic() - at)))

    def failures(self, since: float, until: float) -> tuple[int, int]:
        window = [ok for at, ok in self.results if since <= at <= until]
        return sum(not ok for ok in window), len(window)

    def back(self, since: float, timeout: float = 120) -> float | None:
        """The first success after the first failure since `since` (or since, if none failed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            results = [(at, ok) for at, ok in self.results if at >= since]
            failed = [at for at, ok in results if not ok]
            if results and not failed and time.monotonic() - since > 5:
                return None  # never went down
            if failed:
                later = [at for at, ok in results if ok and at > failed[0]]
                if later:
                    return later[0]
            time.sleep(0.05)
        return None


def send_sweep(env) -> str:
    """A `submissions.sweep` task through the same broker; returns its id."""
    os.environ.update(env)
    from ximilar_portal.celery import app

    task_id = str(uuid.uuid4())
    app.send_task("submissions.sweep", task_id=task_id)
    return task_id


def measure(name, pid, output, web, sandbox, env):
    since = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    result = {}
    logged = output.first(rf"system\s+\| {re.escape(name)} exited with code -9", since)
    result["restart line"] = logged - since if logged else None
    # Sent once the old worker is reaped: a message Redis hands to a dying BRPOP is lost.
    task_id = send_sweep(env) if "worker" in name else None
    if name == "web":
        back = web.back(since)
        result["serves again"] = back - since if back else None
        result["failed requests"] = web.failures(since, back or time.monotonic())
    elif name == "sandbox":
        poller = sandbox
        back = poller.back(since)
        result["serves again"] = back - since if back else None
        result["failed requests"] = poller.failures(since, back or time.monotonic())
    elif "worker" in name:
        ran = output.first(rf"Task submissions\.sweep\[{task_id}\] succeeded", since)
        ready = output.first(rf"{re.escape(name)}\s+\|.* ready\.", since)
        result["ready"] = ready - since if ready else None
        result["serves again"] = ran - since if ran else None
    elif name == "beat":
        started = output.first(rf"system\s+\| {name} started", since)
        tick = output.first(r"beat\s+\|.*Sending due task", started or since)
        result["serves again"] = tick - since if tick else None
    result["portal failures meanwhile"] = (
        web.failures(since, time.monotonic())[0] if name != "web" else None
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", action="append", help="kill only this process (repeatable)")
    args = parser.parse_args()
    var_dir = Path(tempfile.mkdtemp(prefix="supervisor-bench-"))
    port, sandbox_port = free_port(), free_port()
    env = dict(os.environ, VAR_DIR=str(var_dir), PORT=str(port), SANDBOX_PORT=str(sandbox_port))
    env.pop("XIMILAR_API_URL", None)  # the Makefile points it at the sandbox
    command = ["make", "--no-print-directory", "-o", ".venv/bin/activate", "run"]
    make = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    output = Output(make.stdout)
    try:
        start = time.monotonic()
        output.first(r"worker\s+\|.* ready\.", start, timeout=300)
        output.first(r"beat\s+\|.*beat: Starting", start, timeout=300)
        while not http_ok(port, "/accounts/login/"):
            time.sleep(0.1)
        print(f"make run serving after {time.monotonic() - start:.1f} s (migrate included)")
        web = Poller(port, "/accounts/login/")
        sandbox = Poller(sandbox_port, any_status=True)
        pidfile = var_dir / "supervisor.pids"
        figures: dict[str, list[dict]] = {}
        for _ in range(args.runs):
            for name in [c["name"] for c in pidfile_read(pidfile)["children"]]:
                if args.only and name not in args.only:
                    continue
                time.sleep(3)  # let the previous restart settle
                pids = {c["name"]: c["pid"] for c in pidfile_read(pidfile)["children"]}
                row = measure(name, pids[name], output, web, sandbox, env)
                print(name, row, flush=True)
                figures.setdefault(name, []).append(row)
        web.running = sandbox.running = False
        print("\nmedian (min–max) seconds from the kill -9:")
        for name, rows in figures.items():
            cells = []
            for key in rows[0]:
                values = [r[key] for r in rows]
                if all(isinstance(v, float) for v in values):
                    cells.append(
                        f"{key} {statistics.median(values):.2f} "
                        f"({min(values):.2f}–{max(values):.2f})"
                    )
                else:
                    cells.append(f"{key} {values}")
            print(f"  {name}: " + "; ".join(cells))
        since = time.monotonic()
        os.killpg(make.pid, signal.SIGTERM)
        make.wait(timeout=120)
        print(f"\nstopped (SIGTERM to the make group) in {time.monotonic() - since:.1f} s")
        with output.lock:
            said = [line for at, line in output.lines if at >= since and "system" in line]
        print("\n".join(said))
        left = [c["pid"] for c in pidfile_read(pidfile).get("children", [])]
        left_running = [p for p in left if process_alive(p)]
        print("left running:", left_running)
        with output.lock:
            (var_dir / "make-run.log").write_text("\n".join(line for _, line in output.lines))
        print(f"the whole output: {var_dir / 'make-run.log'}")
        print(f"supervisor_left_running: {len(left_running)}")
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
