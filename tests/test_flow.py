"""The whole path through real HTTP: the live server, a real Celery worker
process and the sandbox on loopback. Sign up, save a token, upload, submit,
and read the tags on the record page."""

import logging
import re

import pytest
import requests

from ximilar_portal.submissions.models import Result

from .conftest import PASSWORD, SANDBOX_TOKEN, jpeg_bytes, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


class Browser:
    """A requests session that fills in Django's CSRF token like a browser form."""

    def __init__(self, base_url):
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.bodies = []

    def get(self, path):
        response = self.session.get(self.base_url + path, timeout=10)
        self.bodies.append(response.text)
        return response

    def post(self, path, data, files=None):
        self.get(path if files is None else path)  # sets the csrftoken cookie
        data = {**data, "csrfmiddlewaretoken": self.session.cookies["csrftoken"]}
        response = self.session.post(
            self.base_url + path,
            data=data,
            files=files,
            headers={"Referer": self.base_url + path},
            timeout=10,
        )
        self.bodies.append(response.text)
        return response


def test_a_new_user_gets_tags_for_an_uploaded_image(live_server, sandbox, celery_worker, caplog):
    caplog.set_level(logging.DEBUG)
    browser = Browser(live_server.url)

    signup = browser.post(
        "/accounts/signup/",
        {"email": "ada@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert signup.url.endswith("/accounts/team/token/")

    saved = browser.post("/accounts/team/token/", {"token": SANDBOX_TOKEN})
    assert "…" + SANDBOX_TOKEN[-4:] in saved.text

    created = browser.post(
        "/records/new/",
        {"product_id": "sku-42", "tags": "summer, red", "custom_fields": "stock: 12"},
        files={"image": ("photo.jpg", jpeg_bytes(), "image/jpeg")},
    )
    record_path = re.search(r"/records/\d+/$", created.url).group(0)
    assert "sku-42" in created.text

    browser.post(record_path + "submit/", {"service": "generic_tags", "lang": "en"})
    page = wait_for(
        lambda: (
            (body := browser.get(record_path).text)
            and 'data-service="generic_tags"' in body
            and body
        ),
        timeout=60,
        message="the tagging result on the record page",
    )

    result = Result.objects.get()
    assert result.tags, "the sandbox answered with tags"
    for tag in result.tags:
        assert tag["name"] in page
        assert f"{tag['prob']:.3f}" in page
    assert "badge sandbox" in page
    calls = [r for r in sandbox.requests() if "photo/tags/v2/tags" in r.path]
    assert [call.record_count for call in calls] == [1]

    # The canary token went through the whole flow and never came back out.
    assert all(SANDBOX_TOKEN not in body for body in browser.bodies)
    assert SANDBOX_TOKEN not in caplog.text
    assert SANDBOX_TOKEN not in celery_worker.log()
