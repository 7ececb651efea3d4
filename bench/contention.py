"""Benchmark (not a test): how long a one-record submission of one team takes,
from submit to done, on an idle portal and again while twelve background
exports of 100,000 rows of another team run.

    .venv/bin/python bench/contention.py [--rows 100000] [--exports 12] [--runs 10]
        [--loaded-runs 200] [--limit 12] [--layout procfile|single]

The workers are the Procfile's own lines (engine, heavy under `nice`, periodic,
and beat), run with `sh -c` as the process manager runs them, on a throwaway
VAR_DIR (SQLite + filesystem broker unless DATABASE_URL / CELERY_BROKER_URL are
set; CELERY_QUEUE is made unique so a shared broker is fine). `--layout single`
runs what the Procfile had before the queues were split: one worker of eight
threads reading every queue, for comparison.

The twelve exports are all different (three formats times four sort orders of
the whole history), so none is reused. They come from one team, and the
per-team limit is raised to `--limit` (twelve by default) so that it does not
hold eleven of them back: what keeps the engine fast here is the queues, not
the limit. The heavy worker runs as many as its concurrency allows; the others
wait in the heavy queue. Ten submissions on the idle portal, then one every two
seconds for as long as exports are being written; one counts as "under load"
only if exports were still being written when it finished.

The last line is `contention_ratio: <loaded median / idle median>`."""

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.compat_official_client import start_sandbox  # noqa: E402
from bench.engine import cpu_seconds, images, portal_data  # noqa: E402

FORMATS = ("csv", "json", "jsonl")
SORTS = ("newest", "oldest", "prob_desc", "price_asc")
SINGLE = (
    "exec .venv/bin/celery -A ximilar_portal worker --pool threads --concurrency 8 "
    "--loglevel INFO -n single@%h"
)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="records of the exporting team")
    parser.add_argument("--exports", type=int, default=12)
    parser.add_argument("--runs", type=int, default=10, help="idle submissions; median counts")
    parser.add_argument(
        "--loaded-runs",
        type=int,
        default=200,
        help="most submissions while the exports run (one every 2 s until they end)",
    )
    parser.add_argument("--limit", type=int, default=12, help="EXPORT_MAX_RUNNING_PER_TEAM")
    parser.add_argument("--layout", choices=("procfile", "single"), default="procfile")
    return parser.parse_args()


def django_setup(var_dir: Path, args, url):
    os.environ.update(
        VAR_DIR=str(var_dir),
        DJANGO_SETTINGS_MODULE="ximilar_portal.settings",
        XIMILAR_API_URL=url,
        CELERY_QUEUE=f"bench-{secrets.token_hex(3)}",
        EXPORT_MAX_RUNNING_PER_TEAM=str(args.limit),
        LOG_LEVEL="WARNING",
        SECRET_KEY=secrets.token_urlsafe(40),
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def start_processes(args, var_dir: Path, only=None) -> dict[str, subprocess.Popen]:
    """The Procfile's worker lines and beat (or the single worker of old)."""
    lines = procfile()
    if args.layout == "single":
        wanted = {"single": SINGLE, "beat": lines["beat"]}
    else:
        wanted = {name: cmd for name, cmd in lines.items() if " worker " in cmd or name == "beat"}
    wanted = {name: cmd for name, cmd in wanted.items() if only in (None, name)}
    env = {**os.environ, "LOG_LEVEL": "INFO"}
    processes, logs = {}, {}
    for name, command in wanted.items():
        logs[name] = var_dir / f"{name}.log"
        logs[name].touch()
        before = logs[name].stat().st_size  # a restarted worker's log goes on
        output = logs[name].open("a")
        processes[name] = subprocess.Popen(
            ["sh", "-c", command], cwd=ROOT, env=env, stdout=output, stderr=output
        )
        logs[name] = (logs[name], before)
    for name, (log, before) in logs.items():
        deadline = time.monotonic() + 90
        while name != "beat" and " ready." not in log.read_text()[before:]:
            if time.monotonic() > deadline or processes[name].poll() is not None:
                raise SystemExit(f"{name} did not start: see {log}")
            time.sleep(0.1)
    print(f"processes: {', '.join(f'{n} ({p.pid})' for n, p in processes.items())}")
    return processes


def exporting_team(rows):
    from django.core.management import call_command

    from ximilar_portal.accounts.models import Membership

    started = time.monotonic()
    call_command("generate_demo_data", records=rows, teams=1, verbosity=0)
    membership = Membership.objects.select_related("team", "user").order_by("-pk").first()
    print(f"generated {rows} records for the exporting team in {time.monotonic() - started:.0f} s")
    return membership.team, membership.user


def exports_start(team, user, count):
    from ximilar_portal.history.services import export_create

    kinds = [(fmt, sort) for sort in SORTS for fmt in FORMATS][:count]
    made = [
        export_create(team=team, user=user, fmt=fmt, query=f"sort={sort}", record_ids=[])
        for fmt, sort in kinds
    ]
    assert not any(reused for _, reused in made), "every export is a different one"
    return [export.pk for export, _ in made]


def exports_open(ids) -> int:
    from ximilar_portal.history.models import Export

    return Export.objects.filter(pk__in=ids, state__in=("waiting", "running")).count()


def exports_writing(ids) -> int:
    from ximilar_portal.history.models import Export

    return Export.objects.filter(pk__in=ids, state="running").exclude(run_token="").count()


class Supervisor:
    """Restarts a worker that died (the embedded filesystem broker can still
    kill one), as the process manager does, and says so."""

    def __init__(self, args, var_dir):
        self.args, self.var_dir, self.restarts = args, var_dir, 0
        self.spent, self.last = {}, {}
        self.processes = start_processes(args, var_dir)

    def cpu(self) -> dict[str, float]:
        """CPU seconds of each process so far, those it replaced included (as
        last seen alive)."""
        return {n: self.spent.get(n, 0.0) + self.last[n] for n in self._read()}

    def _read(self) -> dict[str, float]:
        for name, process in self.processes.items():
            if process.poll() is None:
                self.last[name] = cpu_seconds(process.pid)
        return self.last

    def check(self) -> bool:
        """True when a process had died (and was started again)."""
        self._read()
        dead = [name for name, p in self.processes.items() if p.poll() is not None]
        for name in dead:
            print(f"  ! {name} exited with {self.processes[name].returncode}: restarted")
            self.spent[name] = self.spent.get(name, 0.0) + self.last.pop(name, 0.0)
            self.processes.update(start_processes(self.args, self.var_dir, only=name))
            self.restarts += 1
        return bool(dead)


def one_submission(user, team, record, supervisor) -> tuple[float, bool]:
    """Submit to done, and whether a worker had to be restarted meanwhile."""
    from django.db.models import Max

    from ximilar_portal.submissions.models import FINAL_STATES
    from ximilar_portal.submissions.services import submission_create

    started, restarted = time.time(), False
    submission = submission_create(
        team=team, user=user, records=[record], service="generic_tags", options={}
    )
    while submission.jobs.exclude(state__in=FINAL_STATES).exists():
        time.sleep(0.05)
        restarted = supervisor.check() or restarted
    last = submission.jobs.aggregate(last=Max("finished_at"))["last"].timestamp()
    return last - started, restarted


def submissions(label, user, team, records, runs, supervisor, while_=None) -> list[float]:
    """One-record submissions one after the other: `runs` of them, or with
    `while_`, every two seconds as long as it holds (at most `runs`). Those
    that finished after `while_` stopped holding, or during which a worker was
    restarted, do not count."""
    times = []
    for number in range(runs):
        seconds, restarted = one_submission(user, team, records[number % len(records)], supervisor)
        if while_ is not None and not while_():
            print(f"  {label}: {seconds:.2f} s (the exports had finished: not counted)")
            break
        if restarted:
            print(f"  {label}: {seconds:.2f} s (a worker was restarted meanwhile: not counted)")
            continue
        times.append(seconds)
        print(f"  {label}: {seconds:.2f} s")
        time.sleep(2.0 if while_ is not None else 0.5)
    return times


def main() -> int:
    args = parse_args()
    token = "bench-" + secrets.token_hex(12)
    sandbox, url = start_sandbox(token)
    supervisor = None
    try:
        with tempfile.TemporaryDirectory(prefix="bench-contention-") as tmp:
            var_dir = Path(tmp)
            (var_dir / "img").mkdir()
            django_setup(var_dir, args, url)
            from django.db import connection

            paths = images(10, var_dir / "img")
            user, team, records = portal_data(paths, token)
            export_team, export_user = exporting_team(args.rows)
            supervisor = Supervisor(args, var_dir)
            print(f"layout: {args.layout}; database: {connection.vendor}; {os.cpu_count()} cores")

            idle = submissions("idle", user, team, records, args.runs, supervisor)
            cpu_before = supervisor.cpu()
            started = time.monotonic()
            ids = exports_start(export_team, export_user, args.exports)
            while not exports_writing(ids):
                time.sleep(0.1)
            loaded = submissions(
                "under load",
                user,
                team,
                records,
                args.loaded_runs,
                supervisor,
                while_=lambda: exports_writing(ids) > 0,
            )
            print(f"exports still open after the loaded runs: {exports_open(ids)} of {len(ids)}")
            while exports_open(ids):
                supervisor.check()
                time.sleep(1)
            took = time.monotonic() - started
            cpu = {name: seconds - cpu_before[name] for name, seconds in supervisor.cpu().items()}
            report(args, idle, loaded, ids, took, cpu)
            print(f"worker restarts: {supervisor.restarts}")
    finally:
        for process in supervisor.processes.values() if supervisor else ():
            process.terminate()
        for process in supervisor.processes.values() if supervisor else ():
            process.wait(timeout=60)
        sandbox.terminate()
        sandbox.communicate(timeout=10)
    return 0


def report(args, idle, loaded, ids, took, cpu):
    from ximilar_portal.history.models import Export

    exports = Export.objects.filter(pk__in=ids)
    rows = sum(e.rows for e in exports)
    sizes = sum(e.file.size for e in exports if e.file)
    failed = exports.exclude(state="done").count()
    print(
        f"{len(ids)} exports of {args.rows} rows: {rows} rows, {sizes / 1e6:.0f} MB written "
        f"in {took:.0f} s, {failed} not done; CPU: "
        + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in cpu.items())
    )
    for error, count in Counter(
        exports.exclude(state="done").values_list("error_message", flat=True)
    ).items():
        print(f"  {count} export(s) failed: {error}")
    if not loaded:
        raise SystemExit("no submission finished while the exports ran: use more --rows")
    idle_median, loaded_median = statistics.median(idle), statistics.median(loaded)
    print(f"one-record submission, idle: median {idle_median:.2f} s ({len(idle)} runs)")
    p90 = sorted(loaded)[int(0.9 * (len(loaded) - 1))]
    print(
        f"one-record submission, {len(ids)} exports running: median {loaded_median:.2f} s, "
        f"p90 {p90:.2f} s, worst {max(loaded):.2f} s ({len(loaded)} runs)"
    )
    print(f"contention_ratio: {loaded_median / idle_median:.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
