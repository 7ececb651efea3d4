"""What every endpoint shares: auth, the records list, per-record status, the
sandbox mark, unknown paths."""

import base64
import io
import uuid

import pytest
import requests
from PIL import Image

from ximilar_portal.sandbox import imaging

from .conftest import RED, TOKEN, Api, b64, data_uri, solid

TAGS = "photo/tags/v2/tags"


def test_it_rejects_a_bad_token(server):
    response = Api(server, token="wrong-token").post(
        TAGS, {"records": [{"_base64": b64(solid(RED))}]}
    )
    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid token."


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
def test_it_rejects_a_missing_token_on_every_method(server, method):
    response = requests.request(method, server.url + "account/v2/details/", timeout=5)
    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid token."


def test_it_accepts_a_jwt_prefix(server):
    response = requests.get(
        server.url + "account/v2/details/", headers={"Authorization": f"JWT {TOKEN}"}, timeout=5
    )
    assert response.status_code == 200


def test_it_refuses_more_than_ten_records(api):
    records = [{"_base64": b64(solid(RED))} for _ in range(11)]
    response = api.post(TAGS, {"records": records})
    assert response.status_code == 400
    assert response.json()["status"]["code"] == 400
    assert "at most 10" in response.json()["status"]["text"]


def test_it_answers_records_in_order_and_echoes_custom_fields(api):
    records = [
        {"_id": "b", "_base64": b64(solid(RED)), "price": 32.5, "tags": ["one", "two"]},
        {"_id": "a", "_base64": b64(solid(RED)), "nested": {"k": [1, 2]}},
    ]
    answered = api.records(TAGS, records)
    assert [r["_id"] for r in answered] == ["b", "a"]
    assert answered[0]["price"] == 32.5 and answered[0]["tags"] == ["one", "two"]
    assert answered[1]["nested"] == {"k": [1, 2]}
    assert all("_base64" not in r for r in answered), "image bytes are not echoed"


def test_it_fills_a_missing_id_with_a_uuid(api):
    answered = api.records(TAGS, [{"_base64": b64(solid(RED))}])
    assert uuid.UUID(answered[0]["_id"]).version == 4


def test_one_unreadable_image_fails_alone(api):
    records = [
        {"_id": "good", "_base64": b64(solid(RED, (30, 20)))},
        {"_id": "bad", "_base64": "aGVsbG8gd29ybGQ="},  # "hello world"
        {"_id": "empty"},
    ]
    response = api.post(TAGS, {"records": records})
    assert response.status_code == 200
    body = response.json()
    assert body["status"]["code"] == 200
    good, bad, empty = body["records"]
    assert good["_status"] == {
        "code": 200,
        "text": "OK",
        "request_id": good["_status"]["request_id"],
    }
    assert (good["_width"], good["_height"]) == (30, 20)
    assert bad["_status"]["code"] == 400 and "could not decode image" in bad["_status"]["text"]
    assert "_tags" not in bad
    assert empty["_status"]["code"] == 400 and "_url" in empty["_status"]["text"]


def test_it_reads_data_uris_and_bare_base64(api):
    answered = api.records(TAGS, [{"_base64": data_uri(solid(RED))}, {"_base64": b64(solid(RED))}])
    assert [r["_status"]["code"] for r in answered] == [200, 200]
    assert answered[0]["_tags"] == answered[1]["_tags"]


def test_it_refuses_formats_ximilar_does_not_take(api):
    answered = api.records(TAGS, [{"_base64": b64(solid(RED), "JPEG2000")}])
    assert answered[0]["_status"]["code"] == 400
    assert "unsupported image format" in answered[0]["_status"]["text"]


def test_it_downloads_url_records(api, image_host):
    records = [
        {"_url": f"{image_host}/red.png"},
        {"_url": f"{image_host}/missing.png"},
        {"_url": f"{image_host}/broken.png"},
        {"_url": "ftp://example.com/x.png"},
    ]
    fetched, missing, broken, ftp = api.records("dom_colors/generic/v2/dominantcolor", records)
    assert fetched["_status"]["code"] == 200
    assert fetched["_dominant_colors"]["color_names"] == ["red"]
    assert fetched["_url"] == f"{image_host}/red.png"
    assert missing["_status"]["code"] == 400
    assert "could not download image" in missing["_status"]["text"]
    assert "could not decode image" in broken["_status"]["text"]
    assert "could not download image" in ftp["_status"]["text"]


def test_every_answer_is_marked_as_sandbox_output(api):
    for response in (api.post(TAGS, {"records": [{"_base64": b64(solid(RED))}]}), api.get("nope")):
        assert response.headers["X-Ximilar-Sandbox"] == "1"
        assert "not by Ximilar" in response.json()["_sandbox"]["note"]


def test_it_answers_statistics_and_a_request_id(api):
    body = api.post(TAGS, {"records": [{"_base64": b64(solid(RED))}]}).json()
    assert body["statistics"]["processing time"] >= 0
    assert uuid.UUID(body["status"]["request_id"])


def test_an_unknown_path_is_not_found(api):
    response = api.post("photo/tags/v9/tags", {"records": []})
    assert response.status_code == 404
    assert response.json()["detail"] == "Not found."


def test_a_wrong_method_is_not_allowed(api):
    assert api.get(TAGS).status_code == 405


def test_it_takes_paths_with_or_without_a_trailing_slash(api):
    records = {"records": [{"_base64": b64(solid(RED))}]}
    assert api.post(TAGS + "/", records).status_code == 200
    assert api.post(TAGS, records).status_code == 200


def test_it_refuses_a_body_that_is_not_json(api):
    response = api.session.post(api.server.url + TAGS, data=b"{not json", timeout=5)
    assert response.status_code == 400
    assert "JSON parse error" in response.json()["detail"]


def test_account_details_count_credits_per_record(api):
    before = api.get("account/v2/details/").json()
    assert {"id", "email", "credits_counter", "credits_limit", "default_workspace"} <= set(before)
    api.records(TAGS, [{"_base64": b64(solid(RED))}, {"_base64": b64(solid(RED))}])
    after = api.get("account/v2/details/").json()
    assert after["credits_counter"] == before["credits_counter"] + 2
    assert after["id"] == before["id"]


def test_accounts_are_kept_apart_by_token(server):
    first, second = Api(server), Api(server, token="sandbox-test-token-5678")
    first.records(TAGS, [{"_base64": b64(solid(RED))}])
    assert first.get("account/v2/details/").json()["credits_counter"] == 1
    assert second.get("account/v2/details/").json()["credits_counter"] == 0
    assert (
        first.get("account/v2/details/").json()["id"]
        != second.get("account/v2/details/").json()["id"]
    )


def test_authorize_answers_a_user_id(api):
    response = api.post(
        "authorization/v2/authorize", {"service": "generic-tagging", "call_type": "authenticate"}
    )
    assert response.status_code == 200
    assert response.json()["user_id"] == api.get("account/v2/details/").json()["id"]


def test_authorize_needs_a_service(api):
    assert api.post("authorization/v2/authorize", {"call_type": "authenticate"}).status_code == 400


def test_it_refuses_decompression_bombs(api, monkeypatch):
    monkeypatch.setattr(imaging, "MAX_PIXELS", 100)
    answered = api.records(TAGS, [{"_base64": b64(solid(RED, (20, 20)))}])
    assert answered[0]["_status"]["code"] == 400
    assert "more than 100 pixels" in answered[0]["_status"]["text"]


def test_it_reads_the_first_frame_of_a_gif(api):
    frames = [solid(RED), solid((0, 0, 255))]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:])
    record = {"_base64": base64.b64encode(out.getvalue()).decode()}
    answered = api.records("dom_colors/generic/v2/dominantcolor", [record])
    assert answered[0]["_dominant_colors"]["color_names"] == ["red"]


def test_transparent_pixels_count_as_white(api):
    image = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    image.paste((255, 0, 0, 255), (0, 0, 20, 40))
    answered = api.records("dom_colors/generic/v2/dominantcolor", [{"_base64": b64(image)}])
    assert sorted(answered[0]["_dominant_colors"]["color_names"]) == ["red", "white"]
