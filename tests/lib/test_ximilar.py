"""The Ximilar client over real HTTP against a scripted local server: errors,
request building, splitting into requests of 10, headers, and the token
never leaking."""

import base64
import email.utils
import io
import logging
import time

import pytest
import requests
from PIL import Image

from tests.lib.conftest import CANARY
from tests.lib.fake_ximilar import (
    FullBacklogServer,
    Reply,
    SilentServer,
    closed_port_url,
    echo_records,
)
from ximilar_portal.lib.ximilar import (
    BODY_STATUS,
    MAX_RECORDS_PER_REQUEST,
    SERVICES,
    AuthError,
    Client,
    PermanentError,
    RateLimited,
    TransientError,
    XimilarError,
    image_record,
    raise_for_reply,
)

URL_RECORD = {"_id": "1", "_url": "https://example.com/a.jpg"}


def url_records(count):
    return [{"_id": str(i), "_url": f"https://example.com/{i}.jpg"} for i in range(count)]


# ---- HTTP status -> error class ----------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_it_raises_auth_error_on_401_and_403(fake, client, status):
    fake.reply(status, {"detail": "Invalid token."})
    with pytest.raises(AuthError) as caught:
        client.generic_tags([URL_RECORD])
    assert caught.value.http_status == status
    assert caught.value.message == f"HTTP {status}: Invalid token."


def test_it_reads_retry_after_in_seconds(fake, client):
    fake.reply(429, {"detail": "Slow down"}, {"Retry-After": "7"})
    with pytest.raises(RateLimited) as caught:
        client.generic_tags([URL_RECORD])
    assert caught.value.retry_after == 7.0
    assert caught.value.http_status == 429


def test_it_reads_retry_after_as_http_date(fake, client):
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    fake.reply(429, {"detail": "Slow down"}, {"Retry-After": when})
    with pytest.raises(RateLimited) as caught:
        client.generic_tags([URL_RECORD])
    assert 100 < caught.value.retry_after <= 121


@pytest.mark.parametrize("value", [None, "soon", "inf", "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_it_tolerates_missing_odd_and_past_retry_after(fake, client, value):
    fake.reply(429, {}, {"Retry-After": value} if value else {})
    with pytest.raises(RateLimited) as caught:
        client.generic_tags([URL_RECORD])
    expected = 0.0 if value and value.startswith("Wed") else None
    assert caught.value.retry_after == expected


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_it_raises_transient_error_on_5xx_and_408(fake, client, status):
    fake.reply(status, "<html><body>Bad Gateway</body></html>", {"Content-Type": "text/html"})
    with pytest.raises(TransientError) as caught:
        client.generic_tags([URL_RECORD])
    assert caught.value.http_status == status
    assert "<html>" not in caught.value.message  # an HTML page is not a useful message


def test_it_keeps_retry_after_of_a_503(fake, client):
    fake.reply(503, {"detail": "maintenance"}, {"Retry-After": "30"})
    with pytest.raises(TransientError) as caught:
        client.generic_tags([URL_RECORD])
    assert caught.value.retry_after == 30.0


@pytest.mark.parametrize("status", [400, 402, 404, 413, 422])
def test_it_raises_permanent_error_on_other_4xx(fake, client, status):
    fake.reply(status, {"detail": "Task not found."})
    with pytest.raises(PermanentError) as caught:
        client.recognition_classify([URL_RECORD], task_id="t")
    assert caught.value.message == f"HTTP {status}: Task not found."


def test_it_shortens_long_details(fake, client):
    fake.reply(400, {"status": {"code": 400, "text": "x" * 5000}})
    with pytest.raises(PermanentError) as caught:
        client.generic_tags([URL_RECORD])
    assert len(caught.value.message) < 230


def test_it_does_not_follow_redirects(fake, client):
    fake.reply(302, "", {"Location": fake.url + "elsewhere"})
    with pytest.raises(PermanentError) as caught:
        client.generic_tags([URL_RECORD])
    assert caught.value.http_status == 302
    assert [r.path for r in fake.requests] == ["/photo/tags/v2/tags"]


# ---- network failures --------------------------------------------------------------------------


def test_a_refused_connection_is_transient():
    client = Client(token=CANARY, base_url=closed_port_url())
    with client, pytest.raises(TransientError, match="connection failed") as caught:
        client.generic_tags([URL_RECORD])
    assert caught.value.http_status is None
    assert caught.value.__context__ is None  # requests' exception does not ride along


def test_a_connect_timeout_is_transient():
    server = FullBacklogServer()
    try:
        client = Client(token=CANARY, base_url=server.url, connect_timeout=0.2)
        with client, pytest.raises(TransientError, match="connect timeout"):
            client.generic_tags([URL_RECORD])
    finally:
        server.stop()


def test_a_read_timeout_is_transient():
    server = SilentServer()
    try:
        with Client(token=CANARY, base_url=server.url, read_timeout=0.2) as client:
            started = time.monotonic()
            with pytest.raises(TransientError, match="read timeout"):
                client.generic_tags([URL_RECORD])
            assert time.monotonic() - started < 3
    finally:
        server.stop()


# ---- malformed replies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body", ['{"records": [', "<html>OK</html>", "[1, 2, 3]", '"text"', "null", ""]
)
def test_a_malformed_or_non_object_reply_is_transient(fake, client, body):
    fake.reply(200, body)
    with pytest.raises(TransientError, match="malformed reply"):
        client.generic_tags([URL_RECORD])


def test_a_reply_without_records_is_transient(fake, client):
    fake.reply(200, {"status": {"code": 200, "text": "OK"}})
    with pytest.raises(TransientError, match="no records"):
        client.generic_tags([URL_RECORD])


# ---- Ximilar's own status in a 200 reply -------------------------------------------------------


def test_the_body_status_table_documents_the_collection_codes():
    assert {200, 205, 206, 210, 211, 220, 404, 411, 412} <= set(BODY_STATUS)


@pytest.mark.parametrize(
    "code, error", [(412, PermanentError), (400, PermanentError), (500, TransientError)]
)
def test_a_refusing_body_status_raises_even_with_http_200(fake, client, code, error):
    fake.reply(200, {"status": {"code": code, "text": "hard capacity exceeded"}, "records": []})
    with pytest.raises(error) as caught:
        client.generic_tags([URL_RECORD])
    assert caught.value.http_status == 200
    assert caught.value.code == code
    assert "Ximilar status" in caught.value.message


def test_a_body_status_401_is_an_auth_error(fake, client):
    fake.reply(200, {"status": {"code": 401, "text": "Unauthorized"}})
    with pytest.raises(AuthError):
        client.generic_tags([URL_RECORD])


def test_records_with_their_own_status_are_reported_not_raised(fake, client):
    records = [
        {"_id": "0", "_status": {"code": 200, "text": "OK"}},
        {"_id": "1", "_status": {"code": 400, "text": "Image could not be downloaded"}},
    ]
    fake.reply(200, {"status": {"code": 400, "text": "some records failed"}, "records": records})
    response = client.generic_tags(url_records(2))
    assert response.status_code == 400
    assert [r.ok for r in response.records] == [True, False]


# ---- per-record results in a 200 ---------------------------------------------------------------


def test_it_reports_each_record_status(fake, client):
    records = [
        {"_id": "0", "_status": {"code": 200, "text": "OK"}},
        {"_id": "1", "_status": {"code": 400, "text": "Cannot decode image"}},
        {"_id": "2"},  # no _status: fine, since the reply was
        {"_id": "3", "_status": {"code": "500", "text": "Internal"}},
    ]
    fake.reply(200, {"status": {"code": 200, "text": "OK"}, "records": records})
    response = client.generic_tags(url_records(4))
    assert [(r.index, r.ok, r.code) for r in response.records] == [
        (0, True, 200),
        (1, False, 400),
        (2, True, None),
        (3, False, 500),
    ]
    assert response.records[1].text == "Cannot decode image"
    assert response.records[1].raw == records[1]


def test_a_record_missing_from_the_reply_fails(fake, client):
    fake.reply(200, {"status": {"code": 200, "text": "OK"}, "records": [{"_id": "0"}]})
    response = client.generic_tags(url_records(3))
    assert [(r.index, r.ok) for r in response.records] == [(0, True), (1, False), (2, False)]
    assert "no result" in response.records[2].text


def test_it_logs_failed_records(fake, client, caplog):
    caplog.set_level(logging.INFO, logger="ximilar_portal.ximilar")
    fake.reply(200, {"records": [{"_status": {"code": 400, "text": "Bad image"}}]})
    client.generic_tags([URL_RECORD])
    assert "ximilar.record_failed" in caplog.text
    assert "Bad image" in caplog.text


# ---- splitting into requests of at most 10 -----------------------------------------------------


def test_it_splits_23_records_into_10_10_3_in_order(fake, client):
    response = client.generic_tags(url_records(23))
    assert [len(r.body["records"]) for r in fake.requests] == [10, 10, 3]
    assert MAX_RECORDS_PER_REQUEST == 10
    assert [r.index for r in response.records] == list(range(23))
    assert [r.raw["_id"] for r in response.records] == [str(i) for i in range(23)]
    assert response.processing_time == pytest.approx(1.5)
    assert response.statistics == {"processing time": pytest.approx(1.5)}
    assert response.status_code == 200
    assert len(response.raw["records"]) == 23


def test_a_failed_chunk_keeps_what_was_done(fake, client):
    fake.default = lambda request: fake_echo_then_fail(fake, request)
    with pytest.raises(TransientError) as caught:
        client.generic_tags(url_records(23))
    assert len(caught.value.partial.records) == 10
    assert len(fake.requests) == 2  # the third chunk is not sent


def fake_echo_then_fail(fake, request):
    return echo_records(request) if len(fake.requests) == 1 else Reply(502, "down")


def test_no_records_sends_nothing(fake, client):
    response = client.generic_tags([])
    assert response.records == []
    assert fake.requests == []


def test_a_record_without_an_image_is_refused_before_sending(fake, client):
    with pytest.raises(ValueError, match="record 1"):
        client.generic_tags([URL_RECORD, {"price": 3}])
    assert fake.requests == []


# ---- request building --------------------------------------------------------------------------


def test_it_sends_token_json_and_its_own_user_agent(fake, client):
    client.generic_tags([URL_RECORD])
    headers = fake.requests[0].headers
    assert headers["Authorization"] == f"Token {CANARY}"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "ximilar-portal/0.1"
    assert CANARY[:5] not in headers["User-Agent"]
    assert CANARY not in fake.requests[0].path


def test_it_sends_long_tokens_as_jwt(fake, make_client):
    token = "e" * 70
    make_client(token=token).generic_tags([URL_RECORD])
    assert fake.requests[0].headers["Authorization"] == f"JWT {token}"


def test_it_strips_a_pasted_newline_and_refuses_inner_spaces(fake, make_client):
    make_client(token=CANARY + "\n").generic_tags([URL_RECORD])
    assert fake.requests[0].headers["Authorization"] == f"Token {CANARY}"
    with pytest.raises(ValueError) as caught:
        Client(token="canary two", base_url=fake.url)
    assert "canary" not in str(caught.value)


def test_clients_sharing_a_session_send_their_own_token(fake):
    with requests.Session() as session:
        Client(token="first", base_url=fake.url, session=session).generic_tags([URL_RECORD])
        Client(token="second", base_url=fake.url, session=session).generic_tags([URL_RECORD])
    assert [r.headers["Authorization"] for r in fake.requests] == ["Token first", "Token second"]
    assert "Authorization" not in session.headers


def test_generic_tags_sends_language_and_mode(fake, client):
    client.generic_tags([URL_RECORD], lang="cs", mode="simple")
    seen = fake.requests[0]
    assert (seen.method, seen.path) == ("POST", "/photo/tags/v2/tags")
    assert seen.body == {"records": [URL_RECORD], "lang": "cs", "tagging_mode": "simple"}


def test_recognition_sends_task_version_and_workspace(fake, make_client):
    client = make_client(workspace="ws-uuid")
    client.recognition_classify([URL_RECORD], task_id="task-1", version=3, store_images=True)
    seen = fake.requests[0]
    assert seen.path == "/recognition/v2/classify/"
    assert seen.body == {
        "records": [URL_RECORD],
        "task_id": "task-1",
        "version": 3,
        "store_images": True,
        "workspace": "ws-uuid",
    }


def test_recognition_without_workspace_leaves_it_out(fake, client):
    client.recognition_classify([URL_RECORD], task_id="task-1")
    assert "workspace" not in fake.requests[0].body
    assert "store_images" not in fake.requests[0].body


def test_detect_sends_keep_prob_and_workspace(fake, make_client):
    make_client(workspace="ws").detect([URL_RECORD], task_id="t", keep_prob=0.3)
    seen = fake.requests[0]
    assert seen.path == "/detection/v2/detect/"
    assert seen.body["keep_prob"] == 0.3
    assert seen.body["workspace"] == "ws"


def test_tagging_colors_and_search_never_send_the_workspace(fake, make_client):
    client = make_client(workspace="ws")
    client.generic_tags([URL_RECORD])
    client.fashion_tags([URL_RECORD])
    client.homedecor_tags([URL_RECORD])
    client.dominant_colors([URL_RECORD])
    fake.reply(200, {"answer_records": []})
    client.collection("c1").knn({"_id": "1"})
    assert all("workspace" not in r.body for r in fake.requests)


def test_fashion_tags_uses_the_endpoint_and_options(fake, client):
    client.fashion_tags([URL_RECORD], endpoint="meta", aggregate_labels=True, profile="p1")
    seen = fake.requests[0]
    assert seen.path == "/tagging/fashion/v2/meta"
    assert seen.body == {"records": [URL_RECORD], "aggregate_labels": True, "profile": "p1"}
    client.fashion_tags([URL_RECORD])
    assert fake.requests[1].path == "/tagging/fashion/v2/detect_tags"
    assert fake.requests[1].body == {"records": [URL_RECORD]}


def test_homedecor_tags_uses_the_endpoint(fake, client):
    client.homedecor_tags([URL_RECORD], endpoint="detect_tags")
    assert fake.requests[0].path == "/tagging/homedecor/v2/detect_tags"


def test_unknown_endpoints_and_kinds_are_refused(fake, client):
    with pytest.raises(ValueError):
        client.fashion_tags([URL_RECORD], endpoint="../admin")
    with pytest.raises(ValueError):
        client.homedecor_tags([URL_RECORD], endpoint="meta")
    with pytest.raises(ValueError):
        client.dominant_colors([URL_RECORD], kind="pantone")
    assert fake.requests == []


@pytest.mark.parametrize("kind", ["product", "generic"])
def test_dominant_colors_uses_the_kind_and_options(fake, client, kind):
    client.dominant_colors([URL_RECORD], kind=kind, colors=4)
    seen = fake.requests[0]
    assert seen.path == f"/dom_colors/{kind}/v2/dominantcolor"
    assert seen.body == {"records": [URL_RECORD], "colors": 4, "color_names": True}


def test_account_details_is_a_get(fake, client):
    fake.reply(200, {"id": "u1", "email": "a@example.com", "credits_counter": 5})
    details = client.account_details()
    assert details["credits_counter"] == 5
    assert (fake.requests[0].method, fake.requests[0].path) == ("GET", "/account/v2/details/")


@pytest.mark.parametrize(
    "status, body, expected",
    [(200, {"user_id": "u1"}, True), (200, {"detail": "no"}, False), (403, {}, False)],
)
def test_check_service(fake, client, status, body, expected):
    fake.reply(status, body)
    assert client.check_service("generic_tagging") is expected
    seen = fake.requests[0]
    assert seen.path == "/authorization/v2/authorize"
    assert seen.body == {"service": "generic_tagging", "call_type": "authenticate"}


def test_check_service_with_a_bad_token_raises(fake, client):
    fake.reply(401, {"detail": "Invalid token."})
    with pytest.raises(AuthError):
        client.check_service("generic_tagging")


def test_it_joins_a_base_url_with_or_without_slash(fake, make_client):
    make_client(base_url=fake.url.rstrip("/")).generic_tags([URL_RECORD])
    assert fake.requests[0].path == "/photo/tags/v2/tags"


# ---- sandbox marker ----------------------------------------------------------------------------


def test_it_notices_the_sandbox_marker_in_body_or_header(fake, client):
    assert client.generic_tags([URL_RECORD]).sandbox is False
    fake.reply(200, {"records": [{}], "_sandbox": True})
    assert client.generic_tags([URL_RECORD]).sandbox is True
    fake.reply(200, {"records": [{}]}, {"X-Ximilar-Sandbox": "1"})
    assert client.generic_tags([URL_RECORD]).sandbox is True


# ---- image records -----------------------------------------------------------------------------


def jpeg(width, height):
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "JPEG")
    return out.getvalue()


def test_image_record_with_a_url_keeps_the_fields():
    fields = {"_id": "7", "price": 3.5, "tags": ["a"]}
    record = image_record(fields, url="https://example.com/x.jpg")
    assert record == {**fields, "_url": "https://example.com/x.jpg"}


def test_image_record_sends_bare_base64_of_the_bytes():
    data = jpeg(300, 200)
    record = image_record({"_id": "1"}, image_bytes=data)
    assert base64.b64decode(record["_base64"]) == data
    assert not record["_base64"].startswith("data:")


def test_image_record_downscales_to_the_service_size():
    record = image_record({}, image_bytes=jpeg(1600, 1200), image_size=600)
    with Image.open(io.BytesIO(base64.b64decode(record["_base64"]))) as image:
        assert image.size == (800, 600)
    assert SERVICES["generic_tags"].image_size == 600


def test_image_record_never_sends_local_paths_or_client_flags():
    fields = {"_id": "1", "_file": "/srv/media/x.jpg", "noresize": True}
    assert image_record(fields, url="https://example.com/x.jpg") == {
        "_id": "1",
        "_url": "https://example.com/x.jpg",
    }


def test_image_record_needs_an_image_or_an_id():
    assert image_record({"_id": "9"}) == {"_id": "9"}
    with pytest.raises(ValueError):
        image_record({"price": 1})
    with pytest.raises(ValueError):
        image_record({}, image_bytes=b"")
    with pytest.raises(ValueError):
        image_record({}, image_bytes=jpeg(10, 10), url="https://example.com/x.jpg")


# ---- raise_for_reply on its own ----------------------------------------------------------------


def test_raise_for_reply_returns_the_parsed_object(fake):
    fake.reply(200, {"a": 1})
    with requests.Session() as session:
        assert raise_for_reply(session.get(fake.url)) == {"a": 1}


def test_an_answer_code_does_not_hide_a_server_error(fake):
    fake.reply(500, {"status": {"code": 404, "text": "no records found"}})
    with requests.Session() as session, pytest.raises(TransientError):
        raise_for_reply(session.get(fake.url), accept=(404,))


def test_an_echoed_token_is_blanked_out_of_the_reply(fake, client):
    record = {"_id": CANARY, "_status": {"code": 400, "text": f"bad {CANARY}"}}
    fake.reply(200, {"records": [record], "status": {"code": 200, "text": "OK"}})
    result = client.generic_tags([URL_RECORD]).records[0]
    assert result.raw == {"_id": "[redacted]", "_status": {"code": 400, "text": "bad [redacted]"}}


def test_a_short_token_is_not_blanked_out(fake, make_client):
    fake.reply(200, {"records": [{"_status": {"code": 200, "text": "the text"}}]})
    result = make_client(token="t").generic_tags([URL_RECORD]).records[0]
    assert result.text == "the text"


def test_raise_for_reply_accepts_answer_codes_on_an_error_status(fake):
    fake.reply(404, {"status": {"code": 404, "text": "no records found"}})
    fake.reply(404, {"status": {"code": 404, "text": "no records found"}})
    with requests.Session() as session:
        assert raise_for_reply(session.get(fake.url), accept=(404,))["status"]["code"] == 404
        with pytest.raises(PermanentError):
            raise_for_reply(session.get(fake.url))


# ---- the canary: the token never leaks ---------------------------------------------------------

LEAKY_REPLIES = [
    (401, {"detail": f"Invalid token {CANARY}"}, {}),
    (429, {"detail": "slow"}, {"Retry-After": "1"}),
    (500, "oops", {}),
    (400, {"status": {"code": 400, "text": f"bad header Token {CANARY}"}}, {}),
    (200, "not json", {}),
    (200, {"status": {"code": 412, "text": "hard capacity exceeded"}}, {}),
]


def test_the_token_never_leaks(fake, make_client, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_client()
    errors = []
    for status, body, headers in LEAKY_REPLIES:
        fake.reply(status, body, headers)
        with pytest.raises(XimilarError) as caught:
            client.generic_tags([URL_RECORD])
        errors.append(caught.value)
    fake.reply(200, {"records": [{"_status": {"code": 400, "text": f"echo {CANARY}"}}]})
    response = client.generic_tags([URL_RECORD])
    errors.append(network_error(TransientError))
    texts = [str(e) for e in errors] + [repr(e) for e in errors] + [e.message for e in errors]
    texts += [repr(client), repr(client.collection("c1")), caplog.text, str(response)]
    assert caplog.text  # something was logged at all
    for text in texts:
        assert CANARY not in text
        assert CANARY[len("canary-") :] not in text


def network_error(kind):
    client = Client(token=CANARY, base_url=closed_port_url())
    with client, pytest.raises(kind) as caught:
        client.generic_tags([URL_RECORD])
    return caught.value
