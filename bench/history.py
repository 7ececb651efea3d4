"""History benchmark (not a test): generate demo data, then time the history
page (first page and a deep page, three filters combined), the record page,
the same filter in Django's admin changelist, and a CSV export.

    .venv/bin/python bench/history.py                       # SQLite, 200k records
    .venv/bin/python bench/history.py --records 1000000     # the 1M run (takes long)
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_history_bench \\
        .venv/bin/python bench/history.py

It uses its own VAR_DIR (/tmp/history-bench unless set) and a fresh database.
The last line is `name: value`.
"""

import argparse
import base64
import html
import os
import re
import resource
import secrets
import statistics
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


def export_rate(team):
    from ximilar_portal.history.exports import csv_stream
    from ximilar_portal.history.selectors import ordered, summaries_filtered

    qs = ordered(summaries_filtered(team=team, filters={}), "newest")
    started, rows = time.perf_counter(), -1
    for piece in csv_stream(qs):
        rows += piece.count("\n")
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return rows, rows / seconds, peak_mb


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--teams", type=int, default=3)
    parser.add_argument("--answers", type=int, help="search answers (default: records / 10)")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--deep", type=int, default=40, help="pages to walk for the deep page")
    parser.add_argument("--reuse", action="store_true", help="keep the existing data")
    args = parser.parse_args()

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
    ratio = admin[0] / max(first[0], deep[0])
    print(f"admin / history (p50): {ratio:.1f}x")
    exported, rate, peak = export_rate(team)
    print(f"csv export: {exported} rows at {rate:,.0f} rows/s, peak RSS {peak:.0f} MB")
    print(f"history_p95_ms: {max(first[1], deep[1]):.1f}")


if __name__ == "__main__":
    main()
