"""The Exports page in a real browser with an export running, one waiting its
turn (the team is at its limit) and one failed, on a phone and on a laptop:
every state readable, nothing scrolls sideways. Screenshots go to
artifacts/screenshots/exports-*.png."""

import pytest
from django.conf import settings as django_settings
from django.test import Client

from ximilar_portal.history import services
from ximilar_portal.history.models import Export, ExportState

from . import test_teams_browser

pytestmark = test_teams_browser.pytestmark
SHOTS = test_teams_browser.SHOTS
browser = test_teams_browser.browser  # the fixture, shared


def exports_of_a_busy_team(owner, team, monkeypatch):
    monkeypatch.setattr(services, "_export_enqueue", lambda export_id: None)  # no worker here
    made = [
        services.export_create(team=team, user=owner, fmt=fmt, query=query, record_ids=[])[0]
        for fmt, query in (("csv", ""), ("jsonl", "status=done"), ("json", "q=sku-0001"))
    ]
    Export.objects.filter(pk=made[0].pk).update(
        state=ExportState.FAILED, error_message="The worker stopped while writing this export."
    )
    services.exports_start(team_id=team.pk)  # its slot goes to the next one waiting
    return made


@pytest.mark.parametrize("width", [390, 1366])
def test_the_exports_page_shows_waiting_exports_on_a_phone_and_a_laptop(
    live_server, browser, settings, owner, team, monkeypatch, width
):
    settings.EXPORT_MAX_RUNNING_PER_TEAM = 1
    made = exports_of_a_busy_team(owner, team, monkeypatch)
    states = dict(Export.objects.values_list("pk", "state"))
    assert states[made[1].pk] == ExportState.RUNNING
    assert states[made[2].pk] == ExportState.WAITING  # the team is at its limit of one

    client = Client()
    client.force_login(owner)
    page = browser(width=width, height=900)
    cookie = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    page.context.add_cookies(
        [{"name": django_settings.SESSION_COOKIE_NAME, "value": cookie, "url": live_server.url}]
    )
    page.goto(live_server.url + "/history/exports/")
    assert page.is_visible(f"#export-{made[2].pk} >> text=Waiting")
    assert page.is_visible(f"#export-{made[2].pk} >> text=starts when one of the team's")
    assert page.is_visible(f"#export-{made[0].pk} >> text=The worker stopped")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"exports-{width}.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= width
