"""Operations benchmark (not a test): how long /healthz and the staff operations
page take, and how many queries each runs, over a database full of demo data.

    .venv/bin/python bench/ops.py --records 300000            # generate, then measure
    .venv/bin/python bench/ops.py --recent-hour               # the data already there
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_ops_bench \\
        VAR_DIR=/tmp/ops-bench-pg .venv/bin/python bench/ops.py --records 300000

It uses its own VAR_DIR (/tmp/ops-bench unless set). The demo data has jobs in
every state, so the page has waiting records, failures and results to count;
the newest tenth of them is moved into the last hour so that hour is not empty."""

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("VAR_DIR", "/tmp/ops-bench")

from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from bench import history  # noqa: F401 (its environment, then django.setup())
from ximilar_portal.accounts.models import User
from ximilar_portal.submissions.models import RecordJob, Result


def recent_hour(fraction=10):
    """Move the newest tenth of results and finished jobs into the last hour."""
    now = timezone.now()
    newest = RecordJob.objects.order_by("-id").values_list("id", flat=True)
    cut = newest[RecordJob.objects.count() // fraction]
    RecordJob.objects.filter(id__gt=cut, finished_at__isnull=False).update(
        finished_at=now - timedelta(minutes=30)
    )
    Result.objects.filter(job_id__gt=cut).update(created_at=now - timedelta(minutes=30))


def timed(client, path, runs):
    times, queries = [], 0
    for _ in range(runs):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get(path)
            times.append((time.perf_counter() - started) * 1000)
        assert response.status_code in (200, 503), (path, response.status_code)
        queries = len(captured)
    times.sort()
    p95 = times[max(0, int(len(times) * 0.95) - 1)]
    return statistics.median(times), p95, queries


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=0, help="generate this many first")
    parser.add_argument("--recent-hour", action="store_true", help="(implied by --records)")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    if args.records:
        call_command("generate_demo_data", records=args.records, answers=args.records // 10)
    if args.records or args.recent_hour:
        recent_hour()
    staff, _ = User.objects.get_or_create(
        email="ops-bench@example.com", defaults={"is_staff": True}
    )
    client = Client()
    client.force_login(staff)
    print(f"database: {connection.vendor}, jobs: {RecordJob.objects.count():,}")
    for path in ("/healthz", "/ops/"):
        p50, p95, queries = timed(client, path, args.runs)
        print(f"{path}: p50 {p50:.1f} ms, p95 {p95:.1f} ms, {queries} queries")
    print(f"healthz_p50_ms: {timed(client, '/healthz', args.runs)[0]:.1f}")


if __name__ == "__main__":
    main()
