"""Benchmark (not a test): 2,000 records sent to generic tagging through the
portal's engine (real worker processes) against the sandbox run as its own
process with 150 ms latency per request, next to the official `ximilar-client`
used the documented way (GenericTaggingClient, 10 records per call, in a loop)
on the same images and sandbox, and next to the limit the configured
concurrency and rate limit allow.

    .venv/bin/python bench/engine.py [--records 2000] [--latency-ms 150]
        [--workers 2] [--threads 8] [--concurrency 16] [--rate 60] [--runs 3]

The default rate limit, 60 requests/s, is one this machine can serve: on two
cores the workers, SQLite and the sandbox (which computes every answer from the
pixels) top out at about 70 requests/s, so a higher configured limit measures
the machine rather than the engine. `--rate 100` shows that ceiling.

Runs on a throwaway VAR_DIR (SQLite + filesystem broker) unless DATABASE_URL /
CELERY_BROKER_URL are set. The official client runs from the throwaway venv
that bench/compat_official_client.py builds (var/compat-venv)."""

import argparse
import io
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.compat_official_client import compat_python, start_sandbox  # noqa: E402

OFFICIAL_SCRIPT = """
import json, os, sys, time
import ximilar.client.client as client_module
from ximilar.client import GenericTaggingClient
paths = json.load(open(sys.argv[1]))
client_module.ENDPOINT = os.environ["SANDBOX_URL"]  # the construction-time authorize call
client = GenericTaggingClient(os.environ["SANDBOX_TOKEN"], endpoint=os.environ["SANDBOX_URL"])
started = time.monotonic()
for start in range(0, len(paths), 10):
    records = [{"_id": f"o{start + i}", "_file": p} for i, p in enumerate(paths[start:start + 10])]
    result = client.tags(records)
    assert result["status"]["code"] == 200, result["status"]
print(json.dumps({"seconds": time.monotonic() - started}))
"""


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--latency-ms", type=int, default=150)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=3, help="portal runs; the median counts")
    parser.add_argument("--skip-official", action="store_true", help="portal only (quicker)")
    return parser.parse_args()


def set_faults(url, faults):
    request = urllib.request.Request(
        url + "_sandbox/faults",
        data=json.dumps(faults).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    urllib.request.urlopen(request, timeout=10).read()


def sandbox_requests(url):
    with urllib.request.urlopen(url + "_sandbox/log", timeout=10) as reply:
        return json.load(reply)


def images(count, folder: Path) -> list[Path]:
    from PIL import Image

    paths = []
    for number in range(count):
        image = Image.new("RGB", (96, 72), (number * 7 % 256, number * 13 % 256, 90))
        out = io.BytesIO()
        image.save(out, "JPEG")
        path = folder / f"{number}.jpg"
        path.write_bytes(out.getvalue())
        paths.append(path)
    return paths


def django_setup(var_dir: Path, args, url):
    os.environ.update(
        VAR_DIR=str(var_dir),
        DJANGO_SETTINGS_MODULE="ximilar_portal.settings",
        XIMILAR_API_URL=url,
        XIMILAR_CONCURRENCY=str(args.concurrency),
        XIMILAR_RATE_LIMIT=str(args.rate),
        LOG_LEVEL="WARNING",
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def portal_data(paths, token):
    from django.core.files.base import ContentFile

    from ximilar_portal.accounts.services import credential_set, user_signup
    from ximilar_portal.records.models import Record

    user = user_signup(email=f"bench-{secrets.token_hex(4)}@example.com", password="x" * 20)
    team = user.memberships.get().team
    credential_set(team=team, token=token, user=user)
    records = []
    for number, path in enumerate(paths):
        record = Record(team=team, created_by=user, ximilar_id=f"p{number}")
        record.image.save(path.name, ContentFile(path.read_bytes()), save=False)
        record.image_extension, record.image_format = ".jpg", "JPEG"
        records.append(record)
    return user, team, Record.objects.bulk_create(records, batch_size=500)


def start_workers(args, var_dir: Path) -> list[subprocess.Popen]:
    workers = []
    for number in range(args.workers):
        log = var_dir / f"worker-{number}.log"
        command = [sys.executable, "-m", "celery", "-A", "ximilar_portal", "worker"]
        command += ["--pool", "threads", "--concurrency", str(args.threads)]
        # INFO: "ready" is logged at INFO (the wait below looks for it); the
        # engine itself logs nothing at INFO while all goes well.
        command += ["--loglevel", "INFO", "--without-gossip", "--without-mingle"]
        command += ["--without-heartbeat", "-n", f"bench{number}@%h"]
        output = log.open("w")
        workers.append(
            subprocess.Popen(command, cwd=ROOT, env=dict(os.environ), stdout=output, stderr=output)
        )
    time.sleep(0.5)
    for number in range(args.workers):
        deadline = time.monotonic() + 60
        log = var_dir / f"worker-{number}.log"
        while " ready." not in log.read_text():
            if time.monotonic() > deadline:
                raise SystemExit(f"worker {number} did not start: see {log}")
            time.sleep(0.1)
    return workers


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_portal(user, team, records) -> tuple[float, float]:
    """Submit to the moment the last result is stored, and the submit moment."""
    from django.db.models import Max

    from ximilar_portal.submissions.models import FINAL_STATES
    from ximilar_portal.submissions.services import submission_create

    started = time.time()
    submission = submission_create(
        team=team, user=user, records=records, service="generic_tags", options={}
    )
    while submission.jobs.exclude(state__in=FINAL_STATES).exists():
        time.sleep(0.05)
    last = submission.jobs.aggregate(last=Max("finished_at"))["last"].timestamp()
    done = submission.jobs.filter(state="done").count()
    if done != len(records):
        print(f"warning: only {done} of {len(records)} done")
    return last - started, started


def timeline(url, started, portal) -> tuple[int, str]:
    """Requests this run made, and where its wall time went: before the first
    request, sending, after the last."""
    log = sandbox_requests(url)
    times = sorted(e["time"] for e in log if e["time"] >= started and e["path"] != "account")
    if not times:
        return 0, "no requests seen"
    first, last = times[0] - started, times[-1] - started
    return len(times), (
        f"first request at {first:.2f} s, last at {last:.2f} s "
        f"({(len(times) - 1) / max(last - first, 1e-9):.0f} requests/s between), "
        f"last result stored {portal - last:.2f} s after the last request"
    )


def run_portal_timed(user, team, records, processes, url) -> tuple[float, int]:
    """One portal run with its timeline and the CPU each process used."""
    before = {k: sum(map(cpu_seconds, pids)) for k, pids in processes.items()}
    portal, started = run_portal(user, team, records)
    cpu = {k: sum(map(cpu_seconds, pids)) - before[k] for k, pids in processes.items()}
    calls, where = timeline(url, started, portal)
    print(
        f"portal run: {portal:.2f} s; {where}; CPU: workers {cpu['workers']:.2f} s, "
        f"sandbox {cpu['sandbox']:.2f} s ({os.cpu_count()} cores)"
    )
    return portal, calls


def run_official(paths, url, token) -> float:
    python = compat_python()
    with tempfile.TemporaryDirectory() as workdir:
        script, listing = Path(workdir) / "official.py", Path(workdir) / "paths.json"
        script.write_text(OFFICIAL_SCRIPT)
        listing.write_text(json.dumps([str(p) for p in paths]))
        env = {**os.environ, "SANDBOX_URL": url, "SANDBOX_TOKEN": token}
        result = subprocess.run(
            [str(python), str(script), str(listing)],
            cwd=workdir,  # neutral: the client's wheel ships a top-level `tests` package
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
    if result.returncode != 0:
        raise SystemExit("official client failed: " + result.stderr[-2000:])
    return json.loads(result.stdout.strip().splitlines()[-1])["seconds"]


def main() -> int:
    args = parse_args()
    token = "bench-" + secrets.token_hex(12)
    sandbox, url = start_sandbox(token)
    workers = []
    try:
        set_faults(url, {"latency_ms": args.latency_ms})
        with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
            var_dir = Path(tmp)
            (var_dir / "img").mkdir()
            paths = images(args.records, var_dir / "img")
            django_setup(var_dir, args, url)
            # Each run sends its own records (new rows, the same images).
            user, team, records = portal_data(paths * args.runs, token)
            workers = start_workers(args, var_dir)
            processes = {"workers": [w.pid for w in workers], "sandbox": [sandbox.pid]}
            runs = [
                run_portal_timed(user, team, records[start : start + len(paths)], processes, url)
                for start in range(0, len(records), len(paths))
            ]
            portal, portal_calls = sorted(runs)[len(runs) // 2]
            official = None if args.skip_official else run_official(paths, url, token)
            report(args, portal, official, portal_calls)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
        sandbox.terminate()
        sandbox.communicate(timeout=10)
    return 0


def report(args, portal, official, portal_calls):
    requests = -(-args.records // 10)
    by_concurrency = args.concurrency / (args.latency_ms / 1000)
    limit_rps = min(args.rate, by_concurrency) if args.rate > 0 else by_concurrency
    limit = requests / limit_rps
    print(f"records: {args.records}, requests: {requests}, latency: {args.latency_ms} ms")
    print(f"workers: {args.workers} x {args.threads} threads, concurrency {args.concurrency}")
    print(f"rate limit: {args.rate}/s, limit: {limit_rps:.1f} requests/s = {limit:.2f} s")
    print(f"portal (submit to last result, median run): {portal:.2f} s, {portal_calls} requests")
    print(f"share of the limit reached: {100 * limit / portal:.0f}% (target >= 80)")
    if official is None:
        print(f"engine_share_of_limit: {limit / portal:.2f}")
        return
    print(f"official ximilar-client loop:   {official:.2f} s")
    print(f"speed-up over the official client: {official / portal:.1f}x (target >= 8)")
    print(f"engine_speedup_vs_official: {official / portal:.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
