"""The history in a real browser (Debian's Chromium driven by Playwright) against
the live server, a real Celery worker and the sandbox: sign up, upload, send to
tagging, watch the progress bar finish, filter by label and probability, open a
record, export the view and compare the file with the page; insert into a
collection, search it, and open an answer. Screenshots of the key pages go to
artifacts/screenshots/."""

import csv
import io
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from ximilar_portal.history.models import RecordSummary, SummaryLabel
from ximilar_portal.records.models import Record
from ximilar_portal.submissions.models import Result, SearchAnswer

from .conftest import PASSWORD, SANDBOX_TOKEN, jpeg_bytes, wait_for

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}"),
]


@pytest.fixture
def page(live_server):
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="history-chromium-")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=FLAGS,
            headless=True,
            accept_downloads=True,
            viewport={"width": 1280, "height": 900},
        )
        page = context.new_page()
        page.set_default_timeout(20_000)
        yield page
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_up(page, base):
    page.goto(base + "/accounts/signup/")
    page.fill("#id_email", "grace@example.com")
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    page.click("button[type=submit]")
    page.fill("input[name=token]", SANDBOX_TOKEN)
    page.click("text=Save token")


def upload(page, base, n, color):
    page.goto(base + "/records/new/")
    page.set_input_files(
        "#id_image", {"name": f"p{n}.jpg", "mimeType": "image/jpeg", "buffer": jpeg_bytes(color)}
    )
    page.fill("#id_product_id", f"sku-{n}")
    page.fill("#id_tags", "summer" if n % 2 else "winter")
    page.click("main button[type=submit]")
    page.wait_for_url(re.compile(r"/records/\d+/$"))


def send_to_tagging(page):
    page.select_option("#id_service", "generic_tags")
    page.click(".submit-form button[type=submit]")
    page.click("#status a")  # the submission's own page, with its progress bar
    wait_for_progress(page)


def wait_for_progress(page):
    page.wait_for_function(
        "() => { const p = document.querySelector('progress');"
        " return p && p.max > 0 && p.value === p.max; }",
        timeout=60_000,
    )


def send_to_collection(page, base, service, query):
    page.goto(f"{base}/submissions/new/?{query}")
    page.select_option("#id_service", service)
    page.select_option("#id_collection", label="Catalogue")
    page.click(".submit-form button[type=submit]")
    wait_for_progress(page)


def test_it_finds_filters_opens_and_exports_in_a_browser(page, live_server, sandbox, celery_worker):
    base = live_server.url
    sign_up(page, base)
    colors = [(200, 30, 30), (30, 160, 60), (40, 60, 200), (230, 200, 40)]
    for n, color in enumerate(colors):
        upload(page, base, n, color)
        send_to_tagging(page)
    shot(page, "submission-progress")
    wait_for(lambda: Result.objects.count() == len(colors), message="all results stored")

    page.goto(base + "/history/")
    wait_for(
        lambda: RecordSummary.objects.filter(status="done").count() == len(colors),
        message="summaries",
    )
    page.goto(base + "/history/")
    shot(page, "history-grid")
    assert page.locator(".h-card").count() == len(colors)

    # Filter by the most common label with a probability floor.
    label = SummaryLabel.objects.order_by("-prob").first()
    floor = round(label.prob - 0.001, 3)
    page.fill("#id_label", label.name)
    page.fill("#id_min_prob", str(floor))
    page.click("text=Apply")
    page.wait_for_url(re.compile(r"label="))
    matching = SummaryLabel.objects.filter(name=label.name, prob__gte=floor)
    expected = set(matching.values_list("summary__ximilar_id", flat=True))
    cards = page.locator(".h-card").evaluate_all("cards => cards.map(c => c.dataset.record)")
    assert {int(pk) for pk in cards} == set(matching.values_list("summary_id", flat=True))
    assert expected
    page.click("text=Table")
    shot(page, "history-table")

    with page.expect_download() as download_info:
        page.click(".h-export button[value=csv]")
    path = download_info.value.path()
    rows = list(csv.DictReader(io.StringIO(Path(path).read_text())))
    assert {row["_id"] for row in rows} == expected

    page.locator(".h-table a.mono").first.click()
    page.wait_for_url(re.compile(r"/history/records/\d+/$"))
    assert page.locator(".h-result .bars").count() >= 1
    shot(page, "history-record")

    page.goto(base + "/history/insights/")
    shot(page, "history-insights")
    assert page.locator(".h-chart .bar").count() >= 1

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(base + "/history/")
    shot(page, "history-phone")
    # The header wraps on a phone: every link of the navigation is on screen.
    for link in page.locator(".topbar nav a").all():
        box = link.bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, link.inner_text()


def test_it_searches_a_collection_and_opens_an_answer_in_a_browser(
    page, live_server, sandbox, celery_worker
):
    base = live_server.url
    sign_up(page, base)
    for n, color in enumerate([(200, 30, 30), (210, 40, 35), (30, 60, 210)]):
        upload(page, base, n, color)
    page.goto(base + "/collections/new/")
    page.fill("#id_name", "Catalogue")
    page.fill("#id_collection_id", "catalogue-1")
    page.click("main form button.primary")
    send_to_collection(page, base, "similarity_insert", "all=1")
    query = Record.objects.get(product_id="sku-0")
    send_to_collection(page, base, "similarity_search", f"record={query.pk}")
    shot(page, "search-progress")

    answers = SearchAnswer.objects.filter(query_record=query).order_by("rank")
    wait_for(lambda: answers.count() == 3, message="three answers stored")
    page.goto(f"{base}/history/records/{query.pk}/")
    assert page.locator(".h-answer").count() == 3
    shot(page, "history-search-answers")
    # The nearest answer that is another of the team's records opens its page.
    nearest = answers.exclude(record=query).first()
    assert nearest.record.product_id == "sku-1"  # the other red one
    assert nearest.distance < answers.get(record__product_id="sku-2").distance
    page.click(f".h-answer a.mono[href='/history/records/{nearest.record_id}/']")
    page.wait_for_url(re.compile(rf"/history/records/{nearest.record_id}/$"))
    assert nearest.record.ximilar_id in page.locator("main").inner_text()
