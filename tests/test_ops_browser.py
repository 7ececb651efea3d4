"""The operations page in a real browser, filled with real rows (records waiting,
failures of the last hour, a paused team, a team in a 429 backoff, messages set
aside), on a phone and on a laptop: every figure readable, nothing scrolls
sideways. Screenshots go to artifacts/screenshots/ops-*.png."""

import time
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone

from ximilar_portal.submissions import services
from ximilar_portal.submissions.models import RecordJob, TeamQueue

from . import test_ops, test_teams_browser
from .test_ops import add_records, all_heartbeats_fresh

pytestmark = test_teams_browser.pytestmark
SHOTS = test_teams_browser.SHOTS
# The fixtures of those modules, shared here.
browser = test_teams_browser.browser
queues = test_ops.queues


def busy_portal(owner, team, outsider, sandbox, tmp_path):
    """What an operator sees on a bad day."""
    records = add_records(owner, team, ["sku-0001", "sku-0002", "sku-0003"])
    sandbox.faults.fail_record_ids = {"sku-0002"}
    done = services.submission_create(
        team=team, user=owner, records=records, service="generic_tags", options={}
    )
    services.submission_process(submission_id=done.pk)
    sandbox.faults.clear()
    other = outsider.memberships.get().team
    waiting = services.submission_create(
        team=other,
        user=outsider,
        records=add_records(outsider, other, ["b-1", "b-2"]),
        service="colors_generic",
        options={},
    )
    RecordJob.objects.filter(submission=waiting).update(
        created_at=timezone.now() - timedelta(minutes=42)
    )
    TeamQueue.objects.update_or_create(
        team=team, defaults={"paused": True, "paused_at": timezone.now(), "paused_by": owner}
    )
    TeamQueue.objects.update_or_create(
        team=other, defaults={"next_slot_us": int(time.time() * 1e6) + 30_000_000}
    )
    aside = tmp_path / "quarantine"
    aside.mkdir()
    (aside / "1764690000.123_4f1c2a9e-77d1-4b5e-9c0e-2b1f3f0e9a11.celery.msg").write_text("")
    return aside


@pytest.mark.parametrize("width", [390, 1366])
def test_the_operations_page_reads_on_a_phone_and_a_laptop(
    live_server, browser, settings, owner, team, outsider, sandbox, queues, tmp_path, monkeypatch,
    width,
):  # fmt: skip
    monkeypatch.setattr(services, "submission_enqueue", lambda pk, **kw: None)
    settings.BROKER_QUARANTINE_DIR = busy_portal(owner, team, outsider, sandbox, tmp_path)
    all_heartbeats_fresh()
    owner.is_staff = True
    owner.save(update_fields=["is_staff"])
    client = Client()
    client.force_login(owner)
    page = browser(width=width, height=900)
    page.context.add_cookies(
        [
            {
                "name": django_settings.SESSION_COOKIE_NAME,
                "value": client.cookies[django_settings.SESSION_COOKIE_NAME].value,
                "url": live_server.url,
            }
        ]
    )
    page.goto(live_server.url + "/ops/")
    assert page.is_visible("h1:has-text('Operations')")
    for heading in ("Queues", "Oldest waiting record", "Rate limits in force"):
        assert page.is_visible(f"h2:has-text('{heading}')")
    assert page.is_visible("text=paused")
    assert page.locator("td[data-label='Next slot'] .badge").count() == 1  # the 429 backoff
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"ops-{width}.png"), full_page=True)
