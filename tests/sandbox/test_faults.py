"""Every fault flag, the request log and the HTTP control endpoints."""

import time

import pytest
import requests

from .conftest import OTHER_TOKEN, RED, TOKEN, Api, b64, solid

TAGS = "photo/tags/v2/tags"


def tag(api, ids=("r1",)):
    return api.post(TAGS, {"records": [{"_id": i, "_base64": b64(solid(RED))} for i in ids]})


def test_latency_delays_every_answer(server, api):
    server.faults.latency_ms = 300
    started = time.monotonic()
    assert tag(api).status_code == 200
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize("code", [400, 401, 403, 500, 502, 503, 504])
def test_a_forced_status_answers_every_request(server, api, code):
    server.faults.status_code = code
    response = tag(api)
    assert response.status_code == code
    assert response.json()["detail"]
    assert response.headers["X-Ximilar-Sandbox"] == "1"


def test_a_forced_429_carries_retry_after(server, api):
    server.faults.status_code = 429
    server.faults.retry_after = "2"
    response = tag(api)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    server.faults.retry_after = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert tag(api).headers["Retry-After"] == "Wed, 21 Oct 2015 07:28:00 GMT"


def test_the_error_rate_answers_500(server, api):
    server.faults.error_rate = 1.0
    assert [tag(api).status_code for _ in range(3)] == [500, 500, 500]
    server.faults.error_rate = 0.0
    assert tag(api).status_code == 200


def test_a_hang_outlasts_a_read_timeout(server):
    server.faults.hang_seconds = 2
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(
            server.url + TAGS, json={}, headers={"Authorization": f"Token {TOKEN}"}, timeout=0.3
        )
    assert time.monotonic() - started < 1.5


def test_malformed_json_is_a_200_that_does_not_parse(server, api):
    server.faults.malformed_json = True
    response = tag(api)
    assert response.status_code == 200
    with pytest.raises(requests.exceptions.JSONDecodeError):
        response.json()


def test_chosen_records_fail_alone(server, api):
    server.faults.fail_record_ids = {"r2"}
    records = tag(api, ids=("r1", "r2", "r3")).json()["records"]
    assert [r["_status"]["code"] for r in records] == [200, 400, 200]
    assert records[1]["_status"]["text"] == "sandbox: injected record failure"
    assert "_tags" not in records[1] and "_tags" in records[0]


def test_the_record_failure_rate_fails_records(server, api):
    server.faults.record_failure_rate = 1.0
    response = tag(api, ids=("r1", "r2"))
    assert response.status_code == 200
    assert [r["_status"]["code"] for r in response.json()["records"]] == [400, 400]


def test_the_rate_limit_answers_429_per_token(server, api):
    server.faults.rate_limit_rps = 2
    codes = [api.get("account/v2/details/").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    throttled = api.get("account/v2/details/")
    assert throttled.status_code == 429
    assert int(throttled.headers["Retry-After"]) >= 1
    assert Api(server, token=OTHER_TOKEN).get("account/v2/details/").status_code == 200
    time.sleep(0.6)
    assert api.get("account/v2/details/").status_code == 200, "the bucket refills"


def test_reset_clears_log_faults_and_collections(server, api):
    api.session.headers["collection-id"] = "c"
    api.post("similarity/photos/v2/insert", {"records": [{"_id": "a", "_base64": b64(solid(RED))}]})
    server.faults.status_code = 503
    server.reset()
    assert server.requests() == []
    assert server.faults.status_code is None
    found = api.post("similarity/photos/v2/get", {"records": [{"_id": "a"}]}).json()
    assert found["status"]["code"] == 404


def test_the_log_records_each_call_without_the_token(server, api):
    tag(api, ids=("a", "b", "c"))
    Api(server, token="not-a-token").get("account/v2/details/")
    first, second = server.requests()
    assert (first.method, first.path, first.record_count, first.status) == (
        "POST",
        "/" + TAGS,
        3,
        200,
    )
    assert first.token_hint == "…" + TOKEN[-4:]
    assert first.record_ids == ["a", "b", "c"]
    assert second.status == 401
    assert second.record_ids == []
    assert abs(first.time - time.time()) < 10
    assert TOKEN not in repr(server.requests())


def test_control_endpoints_work_over_http_without_a_token(server, api):
    control = server.url + "_sandbox/"
    tag(api)
    log = requests.get(control + "log", timeout=5).json()
    assert [entry["path"] for entry in log] == ["/" + TAGS]
    assert TOKEN not in str(log)

    faults = requests.post(
        control + "faults", json={"status_code": 502, "fail_record_ids": ["x"]}, timeout=5
    )
    assert faults.json()["status_code"] == 502
    assert server.faults.fail_record_ids == {"x"}
    assert tag(api).status_code == 502
    requests.post(control + "faults", json={"status_code": None}, timeout=5)
    assert tag(api).status_code == 200
    assert server.faults.fail_record_ids == {"x"}, "fields are merged"

    assert requests.post(control + "reset", timeout=5).status_code == 200
    assert requests.get(control + "log", timeout=5).json() == []
    assert requests.get(control + "faults", timeout=5).json()["fail_record_ids"] == []


@pytest.mark.parametrize(
    "body", [{"no_such_fault": 1}, {"latency_ms": "slow"}, {"malformed_json": "yes"}]
)
def test_bad_fault_settings_are_refused(server, body):
    response = requests.post(server.url + "_sandbox/faults", json=body, timeout=5)
    assert response.status_code == 400
    assert server.faults.latency_ms == 0 and server.faults.malformed_json is False


def test_a_forced_status_can_end_at_a_set_time(server, api):
    server.faults.status_code, server.faults.retry_after = 429, "1"
    server.faults.status_code_until = time.time() + 0.5
    assert tag(api).status_code == 429
    time.sleep(0.6)
    assert tag(api).status_code == 200
    first, second = server.requests()
    assert (first.retry_after, second.retry_after) == ("1", None)
    assert first.time <= first.answered < second.time


def test_the_log_names_each_record_sent(server, api):
    tag(api, ids=("a", "b", "c"))
    assert server.requests()[0].record_ids == ["a", "b", "c"]
