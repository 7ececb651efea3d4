"""History benchmark (not a test): generate demo data (records with results
and search answers, a tenth as many answers as records), then time the history
page (first page and a deep page, three filters combined), the record page,
the same filter in Django's admin changelist, what each visit spends syncing
summaries, and a background CSV export of the first team's whole history
(`export_run`, in its own process: rows per second and its peak RSS).

    .venv/bin/python bench/history.py                       # SQLite, 200k records
    .venv/bin/python bench/history.py --records 1000000     # the 1M run (~10 min to generate)
    .venv/bin/python bench/history.py --reuse               # measure again, same data
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_history_bench \\
        VAR_DIR=/tmp/history-bench-pg .venv/bin/python bench/history.py --records 1000000

It uses its own VAR_DIR (/tmp/history-bench unless set) and, unless --reuse, a
fresh database (SQLite: the file is deleted; PostgreSQL: the public schema is
dropped and created again). To export a million rows through the team-scoped
path, first add records to the first team:
`manage.py generate_demo_data --team 1 --records 665000`, then `--reuse --export-only`.
The last line is `name: value`."""

import argparse
import base64
import html
import os
import re
import resource
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("VAR_DIR", "/tmp/history-bench")
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(40))
os.environ.setdefault(
    "XIMILAR_TOKEN_KEYS", "b1:" + base64.b64encode(secrets.token_bytes(32)).decode()
)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ximilar_portal.settings")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

FILTER = {"status": "done", "has_error": "no", "q": "sku-01"}
ADMIN_FILTER = {"status__exact": "done", "has_error__exact": "0", "q": "sku-01"}


def fresh_database():
    if connection.vendor == "sqlite":
        connection.close()
        Path(connection.settings_dict["NAME"]).unlink(missing_ok=True)
    else:
        with connection.cursor() as cursor:
            cursor.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    call_command("migrate", verbosity=0)


def timed(client, url, params, n):
    times = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.get(url, params)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    times.sort()
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)]


def deep_cursor(client, pages):
    """Walk the next-page links as a user would; return the last cursor."""
    after = ""
    for _ in range(pages):
        page = client.get("/history/", {**FILTER, **({"after": after} if after else {})})
        found = re.search(r'rel="next" href="[^"]*after=([^"&]+)', page.content.decode())
        if not found:
            break
        after = unquote(html.unescape(found.group(1)))
    return after


def export_rate(team, user):
    """A background CSV export of the team's whole history through the real
    path (`services.export_run`, as the Celery task runs it), in a fresh
    process so its peak RSS is the export's own, not this one's."""
    from ximilar_portal.history.models import Export, ExportState

    # Running already: the per-team limit and the queue are not what is measured here.
    export = Export.objects.create(
        team=team, created_by=user, format="csv", query="", state=ExportState.RUNNING
    )
    connection.close()
    child = subprocess.run(
        [sys.executable, __file__, "--export-child", str(export.pk)],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds, peak_mb = map(float, child.stdout.split())
    export.refresh_from_db()
    assert export.state == "done", export.error_message
    return export.rows, export.rows / seconds, peak_mb


def export_report(team, user):
    exported, rate, peak = export_rate(team, user)
    print(f"csv export (export_run): {exported} rows at {rate:,.0f} rows/s, peak RSS {peak:.0f} MB")
    return rate


def export_child(export_id):
    from ximilar_portal.history.services import export_run

    started = time.perf_counter()
    export_run(export_id=export_id)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{time.perf_counter() - started:.3f} {peak_mb:.1f}")


def sync_cost(team, n):
    """What each history visit spends bringing summaries up to date, and what
    the periodic task spends on one team (every pending summary re-checked)."""
    from ximilar_portal.history.services import summary_sync

    times = []
    for _ in range(n):
        started = time.perf_counter()
        summary_sync(team=team)
        times.append((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    summary_sync(team=team, pending=True)
    return statistics.median(times), max(times), (time.perf_counter() - started) * 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--teams", type=int, default=3)
    parser.add_argument("--answers", type=int, help="search answers (default: records / 10)")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--deep", type=int, default=40, help="pages to walk for the deep page")
    parser.add_argument("--reuse", action="store_true", help="keep the existing data")
    parser.add_argument("--export-only", action="store_true", help="only the CSV export")
    parser.add_argument("--export-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export_child:
        return export_child(args.export_child)

    from ximilar_portal.accounts.models import Membership
    from ximilar_portal.history.models import RecordSummary

    call_command("migrate", verbosity=0)
    if not args.reuse:
        fresh_database()
        started = time.perf_counter()
        answers = args.records // 10 if args.answers is None else args.answers
        call_command(
            "generate_demo_data",
            records=args.records,
            answers=answers,
            teams=args.teams,
            verbosity=0,
        )
        seconds = time.perf_counter() - started
        print(f"generate: {args.records} records, {answers} answers in {seconds:.1f} s")
    membership = Membership.objects.select_related("team", "user").order_by("pk").first()
    user, team = membership.user, membership.team
    user.is_staff = user.is_superuser = True
    user.save()
    client = Client()
    client.force_login(user)
    rows = RecordSummary.objects.filter(team=team).count()
    print(f"database: {connection.vendor}; team rows: {rows}; filter: {FILTER}")
    if args.export_only:
        rate = export_report(team, user)
        print(f"export_rows_per_s: {rate:.0f}")
        return None

    first = timed(client, "/history/", FILTER, args.requests)
    cursor = deep_cursor(client, args.deep)
    deep = timed(client, "/history/", {**FILTER, "after": cursor}, args.requests)
    record = RecordSummary.objects.filter(team=team, status="done").first()
    detail = timed(client, f"/history/records/{record.pk}/", {}, args.requests)
    admin = timed(client, "/admin/history/recordsummary/", ADMIN_FILTER, max(5, args.requests // 3))
    for name, (p50, p95) in [
        ("history first page", first),
        (f"history page {args.deep + 1}", deep),
        ("record history page", detail),
        ("admin changelist", admin),
    ]:
        print(f"{name}: p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    slowest = max(first[0], deep[0]), max(first[1], deep[1])
    ratios = admin[0] / slowest[0], admin[1] / slowest[1]
    print(
        f"admin / history (slowest of first and deep page): "
        f"p50 {ratios[0]:.1f}x, p95 {ratios[1]:.1f}x"
    )
    sync = sync_cost(team, args.requests)
    print(f"summary_sync per visit: p50 {sync[0]:.1f} ms, max {sync[1]:.1f} ms")
    print(f"history.sync pending pass, one team: {sync[2]:.0f} ms")
    export_report(team, user)
    print(f"history_p95_ms: {slowest[1]:.1f}")


if __name__ == "__main__":
    main()
