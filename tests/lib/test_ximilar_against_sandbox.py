"""Every client method against the project's sandbox over real HTTP on loopback,
including its injected faults. The sandbox speaks the protocol the way we read
Ximilar's docs; these tests check the client and the sandbox agree."""

import io
import logging
import time

import pytest
from PIL import Image

from tests.lib.conftest import CANARY
from tests.lib.fake_ximilar import FakeXimilar, Reply
from ximilar_portal.lib.ximilar import (
    SERVICES,
    AuthError,
    Client,
    PermanentError,
    RateLimited,
    TransientError,
    XimilarError,
    image_record,
)
from ximilar_portal.sandbox.server import SandboxServer


@pytest.fixture(scope="module")
def module_sandbox():
    server = SandboxServer(port=0, tokens=(CANARY, "t")).start()
    yield server
    server.stop()


@pytest.fixture
def sandbox(module_sandbox):
    """Overrides tests/conftest.py's `sandbox`: no Django settings needed here."""
    module_sandbox.reset()  # no faults, no collections, an empty log
    return module_sandbox


@pytest.fixture
def api(sandbox):
    with Client(token=CANARY, base_url=sandbox.url, read_timeout=10) as client:
        yield client


def jpeg(color, size=(64, 48), background=None):
    image = Image.new("RGB", size, background or color)
    if background:  # a product shot: a block of colour on a plain background
        image.paste(color, (16, 12, 48, 36))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95)
    return out.getvalue()


RED, BLUE, GREEN = (200, 30, 30), (30, 40, 200), (30, 180, 60)


def records(count, service="generic_tags"):
    size = SERVICES[service].image_size
    colors = [RED, BLUE, GREEN]
    return [
        image_record({"_id": str(i)}, image_bytes=jpeg(colors[i % 3]), image_size=size)
        for i in range(count)
    ]


# ---- account -----------------------------------------------------------------------------------


def test_account_details(api):
    details = api.account_details()
    assert details["email"]
    assert "default_workspace" in details


def test_check_service(api):
    assert api.check_service("generic_tagging") is True


def test_a_short_token_works(sandbox):
    # Too short to be blanked out of replies: nothing in the reply is touched.
    with Client(token="t", base_url=sandbox.url) as client:
        result = client.generic_tags(records(1)).records[0]
    assert result.ok
    assert result.raw["_status"]["text"] == "OK"


def test_a_wrong_token_is_an_auth_error(sandbox):
    client = Client(token="canary-wrong", base_url=sandbox.url)
    with client, pytest.raises(AuthError) as caught:
        client.account_details()
    assert caught.value.http_status == 401


# ---- image services ----------------------------------------------------------------------------


def test_generic_tags_complex_and_simple(api, sandbox):
    response = api.generic_tags(records(2))
    assert response.sandbox is True
    assert all(r.ok and r.code == 200 for r in response.records)
    assert all(t.prob is not None for t in response.records[0].tags)
    assert response.records[0].tags
    simple = api.generic_tags(records(1), mode="simple")
    assert simple.records[0].tags and all(t.prob is None for t in simple.records[0].tags)


def test_23_records_go_as_10_10_3_and_come_back_in_order(api, sandbox):
    response = api.generic_tags(records(23))
    logged = [r.record_count for r in sandbox.requests()]
    assert logged == [10, 10, 3]
    assert [r.raw["_id"] for r in response.records] == [str(i) for i in range(23)]
    assert [r.index for r in response.records] == list(range(23))


def test_a_url_record_on_loopback(api):
    images = FakeXimilar()
    images.default = lambda request: Reply(200, jpeg(RED), {"Content-Type": "image/jpeg"})
    images.start()
    try:
        record = image_record({"_id": "u"}, url=images.url + "red.jpg")
        response = api.dominant_colors([record], kind="generic")
    finally:
        images.stop()
    assert response.records[0].ok
    assert response.records[0].colors[0].simple_name == "red"


def test_recognition_classify(api):
    response = api.recognition_classify(
        records(3, "recognition"), task_id="task-1", store_images=True
    )
    for result in response.records:
        assert result.ok
        assert result.best_label == max(result.labels, key=lambda label: label.prob)
        assert result.best_label.id
        assert result.raw["_stored_image_id"]


def test_recognition_with_a_workspace(sandbox):
    with Client(token=CANARY, base_url=sandbox.url, workspace="ws-1") as client:
        response = client.recognition_classify(records(1), task_id="task-1", version=1)
    assert response.records[0].ok


def test_recognition_without_task_is_permanent(api):
    with pytest.raises(PermanentError) as caught:
        api.recognition_classify(records(1), task_id="")
    assert "task_id" in caught.value.message


def test_detect(api):
    record = image_record({"_id": "p"}, image_bytes=jpeg(RED, background=(255, 255, 255)))
    response = api.detect([record], task_id="task-1", keep_prob=0.1)
    objects = response.records[0].raw["_objects"]
    assert objects and objects[0]["bound_box"]


@pytest.mark.parametrize("endpoint", ["tags", "detect_tags", "detect_tags_all", "detect", "meta"])
def test_fashion_tags(api, endpoint):
    response = api.fashion_tags(
        records(1, "fashion_tags"), endpoint=endpoint, aggregate_labels=True
    )
    result = response.records[0]
    assert result.ok
    if endpoint == "detect":
        assert result.raw["_objects"]
    else:
        assert result.tags
    if endpoint in ("tags", "detect_tags", "detect_tags_all"):
        assert {t.group for t in result.tags} >= {"Category", "Color"}


@pytest.mark.parametrize("endpoint", ["tags", "detect_tags"])
def test_homedecor_tags(api, endpoint):
    result = api.homedecor_tags(records(1, "homedecor_tags"), endpoint=endpoint).records[0]
    assert result.ok
    assert "Category" in {t.group for t in result.tags}


@pytest.mark.parametrize("kind", ["product", "generic"])
def test_dominant_colors(api, kind):
    record = image_record({"_id": "c"}, image_bytes=jpeg(BLUE, background=(255, 255, 255)))
    result = api.dominant_colors([record], kind=kind, colors=3).records[0]
    assert result.ok
    colors = result.colors
    assert 1 <= len(colors) <= 3
    assert sum(c.percentage for c in colors) == pytest.approx(1.0, abs=0.01)
    assert all(c.rgb and c.hex and c.name and c.simple_name for c in colors)
    if kind == "product":  # the white background is left out
        assert colors[0].simple_name == "blue"


def test_an_unreadable_image_fails_only_its_record(api):
    bad = {"_id": "bad", "_base64": "bm90IGFuIGltYWdl"}
    response = api.generic_tags([*records(1), bad])
    assert [r.ok for r in response.records] == [True, False]
    assert response.records[1].code == 400
    assert response.records[1].text


# ---- collections -------------------------------------------------------------------------------


def test_collection_round_trip(api):
    collection = api.collection("col-1", collection_type="products")
    colors = ["red", "blue", "green"]
    inserted = collection.insert(
        [{**r, "color": c} for r, c in zip(records(3, "similarity"), colors, strict=True)]
    )
    assert inserted.status_code == 210
    assert inserted.skipped == []

    again = collection.insert(records(1, "similarity"))
    assert again.status_code == 411
    assert again.skipped[0]["_id"] == "0"

    found = collection.get(["0", "1"], fields_to_return=("_id", "color"))
    assert found.status_code == 205
    assert [a.record for a in found.answers] == [
        {"_id": "0", "color": "red"},
        {"_id": "1", "color": "blue"},
    ]
    assert collection.get(["nope"]).answers == []

    collection.update([{"_id": "1", "color": "navy"}])
    assert collection.get(["1"]).answers[0].record["color"] == "navy"

    nearest = collection.knn(records(1, "similarity")[0], k=3)
    assert [a.record["_id"] for a in nearest.answers][0] == "0"
    assert nearest.answers[0].distance <= nearest.answers[1].distance
    assert nearest.answer_count == 3

    by_id = collection.knn({"_id": "2"}, k=1, filter={"color": "green"}, tags=True)
    assert [a.record["_id"] for a in by_id.answers] == ["2"]

    ranked = collection.rank_records({"_id": "0"}, records(3, "similarity"), k=2)
    assert len(ranked.answers) == 2
    assert ranked.answers[0].record["_id"] == "0"  # the same image: distance 0
    assert ranked.answers[0].distance == 0

    deleted = collection.delete(["2"])
    assert deleted.status_code == 220
    assert sorted(r["_id"] for r in collection.all_records(page_size=1)) == ["0", "1"]


def test_collection_insert_splits_and_all_records_pages(api, sandbox):
    collection = api.collection("col-2", collection_type="photos")
    response = collection.insert(records(23, "similarity"))
    assert response.status_code == 210
    assert len(response.answers) == 23
    ids = [r["_id"] for r in collection.all_records(page_size=10)]
    assert sorted(ids, key=int) == [str(i) for i in range(23)]
    paths = [r.path for r in sandbox.requests()]
    assert paths.count("/similarity/photos/v2/allRecords") == 3


def test_collections_are_separate_by_collection_id(api):
    api.collection("a").insert(records(1, "similarity"))
    assert api.collection("b").get(["0"]).answers == []


def test_hard_capacity_exceeded(sandbox):
    small = SandboxServer(port=0, tokens=(CANARY,), capacity=1).start()
    try:
        with Client(token=CANARY, base_url=small.url) as client:
            collection = client.collection("c")
            collection.insert(records(1, "similarity"))
            more = [image_record({"_id": "x"}, image_bytes=jpeg(GREEN))]
            with pytest.raises(PermanentError) as caught:
                collection.insert(more)
    finally:
        small.stop()
    assert caught.value.code == 412


def test_an_insert_of_unreadable_images_reports_them(api):
    response = api.collection("c").insert([{"_id": "bad", "_base64": "bm90IGFuIGltYWdl"}])
    assert response.status_code == 400
    assert response.skipped[0]["_id"] == "bad"


# ---- injected faults ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, error",
    [
        (401, AuthError),
        (403, AuthError),
        (400, PermanentError),
        (404, PermanentError),
        (500, TransientError),
        (502, TransientError),
        (503, TransientError),
        (504, TransientError),
    ],
)
def test_forced_http_statuses(api, sandbox, status, error):
    sandbox.faults.status_code = status
    with pytest.raises(error) as caught:
        api.generic_tags(records(1))
    assert caught.value.http_status == status


def test_forced_429_with_retry_after(api, sandbox):
    sandbox.faults.status_code = 429
    sandbox.faults.retry_after = "12"
    with pytest.raises(RateLimited) as caught:
        api.generic_tags(records(1))
    assert caught.value.retry_after == 12.0


def test_rate_limit(api, sandbox):
    sandbox.faults.rate_limit_rps = 1
    api.account_details()
    with pytest.raises(RateLimited) as caught:
        api.account_details()
    assert caught.value.retry_after >= 1


def test_hang_is_a_read_timeout(sandbox):
    sandbox.faults.hang_seconds = 3
    client = Client(token=CANARY, base_url=sandbox.url, read_timeout=0.3)
    with client, pytest.raises(TransientError, match="read timeout"):
        client.generic_tags(records(1))


def test_latency_is_only_slower(api, sandbox):
    sandbox.faults.latency_ms = 200
    started = time.monotonic()
    assert api.generic_tags(records(1)).records[0].ok
    assert time.monotonic() - started >= 0.2


def test_malformed_json_is_transient(api, sandbox):
    sandbox.faults.malformed_json = True
    with pytest.raises(TransientError, match="malformed"):
        api.generic_tags(records(1))


def test_chosen_records_fail(api, sandbox):
    sandbox.faults.fail_record_ids = {"1"}
    response = api.generic_tags(records(3))
    assert [r.ok for r in response.records] == [True, False, True]
    assert response.records[1].tags == []


def test_every_record_fails(api, sandbox):
    sandbox.faults.record_failure_rate = 1.0
    response = api.dominant_colors(records(2))
    assert [r.ok for r in response.records] == [False, False]
    assert all(r.colors == [] for r in response.records)


# ---- the canary --------------------------------------------------------------------------------


def test_the_token_never_leaks_against_the_sandbox(api, sandbox, caplog):
    caplog.set_level(logging.DEBUG)
    errors = []
    for status in (401, 429, 500):
        sandbox.faults.status_code = status
        with pytest.raises(XimilarError) as caught:
            api.generic_tags(records(1))
        errors.append(caught.value)
    sandbox.faults.clear()
    sandbox.faults.malformed_json = True
    with pytest.raises(XimilarError) as caught:
        api.generic_tags(records(1))
    errors.append(caught.value)
    texts = [str(e) for e in errors] + [repr(e) for e in errors] + [repr(api), caplog.text]
    texts += [str(entry) for entry in sandbox.requests()]
    for text in texts:
        assert CANARY not in text
