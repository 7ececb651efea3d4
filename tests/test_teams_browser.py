"""In a real browser: an owner invites a second person, who signs up from the
e-mailed link and lands in the team; the owner demotes, then removes them.
Screenshots of the team, invitation, token and audit pages go to
artifacts/screenshots/."""

import re
import shutil
import tempfile
from pathlib import Path

import pytest
from django.core import mail

from .conftest import PASSWORD, SANDBOX_TOKEN

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
FLAGS += ["--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}"),
]


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    profiles = []
    with sync_playwright() as playwright:

        def new_page(width=1280, height=900):
            profiles.append(tempfile.mkdtemp(prefix="teams-chromium-"))
            context = playwright.chromium.launch_persistent_context(
                profiles[-1], executable_path=CHROMIUM, args=FLAGS, headless=True,
                viewport={"width": width, "height": height},
            )  # fmt: skip
            page = context.new_page()
            page.set_default_timeout(20_000)
            return page

        yield new_page
    for profile in profiles:
        shutil.rmtree(profile, ignore_errors=True)


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"teams-{name}.png"), full_page=True)


def test_a_second_person_is_invited_demoted_and_removed(live_server, browser, settings):
    settings.SITE_URL = live_server.url
    base = live_server.url
    owner = browser()
    owner.goto(base + "/accounts/signup/")
    owner.fill("#id_email", "ada@example.com")
    owner.fill("#id_password1", PASSWORD)
    owner.fill("#id_password2", PASSWORD)
    owner.click("button[type=submit]")
    owner.fill("input[name=token]", SANDBOX_TOKEN)
    owner.click("text=Save token")
    assert SANDBOX_TOKEN not in owner.content()
    shot(owner, "token")

    owner.goto(base + "/accounts/team/")
    owner.fill("#id_email", "bob@example.com")
    owner.select_option("#id_role", "member")
    owner.click("text=Send invitation")
    assert "Invitation sent to bob@example.com" in owner.content()
    shot(owner, "members")
    link = re.search(r"http\S+/accounts/invite/\S+/", mail.outbox[-1].body).group(0)

    bob = browser(width=390, height=844)  # a phone
    bob.goto(link)
    shot(bob, "invitation-phone")
    bob.fill("#id_password1", PASSWORD)
    bob.fill("#id_password2", PASSWORD)
    bob.click("text=Sign up and join")
    assert "ada's team" in bob.content()
    assert bob.is_visible("text=Add record")

    owner.goto(base + "/accounts/team/")
    row = owner.locator("tr", has_text="bob@example.com")
    row.locator("select").select_option("viewer")
    row.locator("text=Change").click()
    assert "bob@example.com is now viewer" in owner.content()
    bob.reload()
    assert not bob.is_visible("text=Add record")

    owner.goto(base + "/accounts/team/")
    owner.locator("tr", has_text="bob@example.com").locator("text=Remove").click()
    assert "was removed" in owner.content()
    bob.goto(base + "/")
    assert "/accounts/teams/new/" in bob.url  # in no team any more

    owner.goto(base + "/audit/")
    page = owner.content()
    for action in ("member.invited", "member.joined", "member.role_changed", "member.removed"):
        assert action in page
    assert SANDBOX_TOKEN not in page
    shot(owner, "audit")
