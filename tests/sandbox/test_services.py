"""Each service's answer: colours and measured tags computed from the pixels,
labels derived deterministically."""

import pytest
import requests

from .conftest import (
    BLUE,
    RED,
    WHITE,
    b64,
    checkerboard,
    half_and_half,
    product_shot,
    scene,
    solid,
    stripes,
)

GENERIC_COLORS = "dom_colors/generic/v2/dominantcolor"
PRODUCT_COLORS = "dom_colors/product/v2/dominantcolor"
TAGS = "photo/tags/v2/tags"
CLASSIFY = "recognition/v2/classify/"


def colours_of(api, path, image, **options):
    record = api.records(path, [{"_base64": b64(image)}], **options)[0]
    return record["_dominant_colors"]


# --- Dominant colours ----------------------------------------------------------


def test_half_red_half_blue_is_half_red_and_half_blue(api):
    found = colours_of(api, GENERIC_COLORS, half_and_half(RED, BLUE))
    assert sorted(found["rgb_colors"]) == [[0, 0, 255], [255, 0, 0]]
    assert sorted(found["rgb_hex_colors"]) == ["#0000ff", "#ff0000"]
    assert sorted(found["color_names"]) == ["blue", "red"]
    assert sorted(found["color_names_simple"]) == ["blue", "red"]
    assert found["percentages"] == pytest.approx([0.5, 0.5], abs=0.01)
    assert "pantone_names" not in found


def test_stripes_give_each_colour_its_share(api):
    colours = [(255, 255, 0), (0, 128, 0), (128, 0, 128)]
    found = colours_of(api, GENERIC_COLORS, stripes(colours))
    assert sorted(found["color_names_simple"]) == ["green", "purple", "yellow"]
    assert sum(found["percentages"]) == pytest.approx(1.0, abs=0.001)
    assert found["percentages"] == pytest.approx([1 / 3] * 3, abs=0.02)


def test_a_solid_image_has_one_colour(api):
    found = colours_of(api, GENERIC_COLORS, solid((255, 165, 0)))
    assert found["rgb_colors"] == [[255, 165, 0]]
    assert found["color_names"] == ["orange"]
    assert found["percentages"] == [1.0]


def test_a_jpeg_still_gives_its_colours(api):
    image = half_and_half((200, 30, 30), (30, 30, 200), size=(200, 100))
    record = api.records(GENERIC_COLORS, [{"_base64": b64(image, "JPEG", quality=90)}])[0]
    found = record["_dominant_colors"]
    assert set(found["color_names_simple"][:2]) == {"red", "blue"}
    assert sum(found["percentages"][:2]) > 0.9


def test_the_colors_option_caps_the_count(api):
    six = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 0, 0), (255, 255, 255)]
    assert len(colours_of(api, GENERIC_COLORS, stripes(six))["rgb_colors"]) == 6
    assert len(colours_of(api, GENERIC_COLORS, stripes(six), colors=2)["rgb_colors"]) == 2
    assert api.post(GENERIC_COLORS, {"records": [], "colors": "many"}).status_code == 400


def test_product_colours_skip_a_plain_background(api):
    shot = product_shot(colour=(20, 120, 30))
    product = colours_of(api, PRODUCT_COLORS, shot)
    assert product["color_names_simple"] == ["green"]
    generic = colours_of(api, GENERIC_COLORS, shot)
    assert generic["color_names_simple"][0] == "white", "the generic service sees the background"
    assert "green" in generic["color_names_simple"]


def test_product_colours_default_to_three(api):
    six = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 0, 0), (255, 255, 255)]
    assert len(colours_of(api, PRODUCT_COLORS, stripes(six))["rgb_colors"]) == 3


# --- Generic tagging -----------------------------------------------------------


def tag_names(record):
    return [tag["name"] for tag in record["_tags"]]


def test_tags_come_from_the_pixels(api):
    wide_red, tall_white = solid(RED, (300, 100)), solid(WHITE, (100, 300))
    red, white = api.records(TAGS, [{"_base64": b64(wide_red)}, {"_base64": b64(tall_white)}])
    assert {"red", "colorful", "landscape", "plain background"} <= set(tag_names(red))
    assert {"white", "bright", "monochrome", "portrait"} <= set(tag_names(white))
    assert "landscape" not in tag_names(white)
    for tag in red["_tags"]:
        assert 0.5 <= tag["prob"] <= 1 and tag["id"]
    probs = [tag["prob"] for tag in red["_tags"]]
    assert probs == sorted(probs, reverse=True)
    assert red["_tags_simple"] == tag_names(red)


def test_a_busy_picture_is_tagged_detailed(api):
    record = api.records(TAGS, [{"_base64": b64(checkerboard())}])[0]
    names = tag_names(record)
    assert {"detailed", "high contrast", "monochrome", "square"} <= set(names)
    assert "plain background" not in names


def test_tags_speak_czech(api):
    record = api.records(TAGS, [{"_base64": b64(solid(RED, (300, 100)))}], lang="cs")[0]
    assert {"červená", "na šířku"} <= set(tag_names(record))
    english = api.records(TAGS, [{"_base64": b64(solid(RED, (300, 100)))}])[0]
    assert [t["id"] for t in record["_tags"]] == [t["id"] for t in english["_tags"]]


def test_simple_mode_gives_names_only(api):
    record = api.records(TAGS, [{"_base64": b64(solid(RED, (300, 100)))}], tagging_mode="simple")[0]
    assert record["_tags"] and all(isinstance(name, str) for name in record["_tags"])
    assert record["_tags_simple"] == record["_tags"]


def test_the_legacy_generic_path_still_answers(api):
    record = api.records("tagging/generic/v2/tags", [{"_base64": b64(solid(RED))}])[0]
    assert "red" in tag_names(record)


@pytest.mark.parametrize("option", [{"lang": "de"}, {"tagging_mode": "fancy"}])
def test_it_refuses_unknown_tagging_options(api, option):
    response = api.post(TAGS, {"records": [{"_base64": b64(solid(RED))}], **option})
    assert response.status_code == 400


# --- Custom recognition --------------------------------------------------------


def test_classify_is_deterministic_and_sorted(api):
    record = {"_base64": b64(scene(1))}
    first = api.records(CLASSIFY, [record], task_id="task-1")[0]
    again = api.records(CLASSIFY, [record], task_id="task-1")[0]
    assert first["labels"] == again["labels"]
    probs = [label["prob"] for label in first["labels"]]
    assert probs == sorted(probs, reverse=True)
    assert sum(probs) == pytest.approx(1.0, abs=0.001)
    assert first["best_label"] == first["labels"][0]
    assert set(first["best_label"]) == {"prob", "name", "id"}


def test_different_images_get_different_probabilities(api):
    records = [{"_base64": b64(scene(seed))} for seed in (1, 2, 3)]
    answered = api.records(CLASSIFY, records, task_id="task-1")
    assert len({tuple(label["prob"] for label in r["labels"]) for r in answered}) == 3


def test_the_task_decides_the_label_set(api):
    record = {"_base64": b64(scene(1))}
    names = {
        task: {label["name"] for label in api.records(CLASSIFY, [record], task=task)[0]["labels"]}
        for task in ("task-a", "task-b", "task-c")
    }
    assert len({frozenset(n) for n in names.values()}) > 1


def test_classify_needs_a_task(api):
    response = api.post(CLASSIFY, {"records": [{"_base64": b64(solid(RED))}]})
    assert response.status_code == 400
    assert "task" in response.json()["status"]["text"]


def test_classify_can_store_images(api):
    records = [{"_base64": b64(solid(RED))}]
    record = api.records(CLASSIFY, records, task_id="t", store_images=True)[0]
    assert record["_stored_image_id"]


def test_a_task_can_be_read_like_the_official_client_does(api):
    task = api.get("recognition/v2/task/task-1").json()
    assert task["id"] == "task-1"
    assert {"name", "type", "production_version"} <= set(task)
    record = api.records(CLASSIFY, [{"_base64": b64(scene(1))}], task_id="task-1")[0]
    assert {label["name"] for label in task["labels"]} == {
        label["name"] for label in record["labels"]
    }


def test_detection_boxes_what_is_in_front_of_the_background(api):
    shot = product_shot(box=(50, 60, 150, 170))
    record = api.records("detection/v2/detect/", [{"_base64": b64(shot)}], task_id="t")[0]
    (found,) = record["_objects"]
    assert found["bound_box"] == [50, 60, 150, 170]
    assert found["name"] and 0 < found["prob"] <= 1


# --- Fashion and home decor ----------------------------------------------------


def test_fashion_tags_are_grouped_by_feature(api):
    shot = product_shot(colour=(0, 0, 200))
    record = api.records("tagging/fashion/v2/tags", [{"_base64": b64(shot)}])[0]
    groups = record["_tags"]
    assert {"Top Category", "Category", "Color"} <= set(groups)
    assert groups["Color"][0]["name"] == "blue"
    assert groups["Category"][0]["name"].startswith(groups["Top Category"][0]["name"] + "/")
    assert record["_tags_simple"][0] == groups["Top Category"][0]["name"]
    assert "_objects" not in record


def test_fashion_uses_a_given_category(api):
    record = {"_base64": b64(product_shot()), "Category": "Footwear/Boots"}
    answered = api.records("tagging/fashion/v2/tags", [record], aggregate_labels=True)[0]
    assert answered["_tags"]["Category"][0] == {
        "name": "Footwear/Boots",
        "prob": 1.0,
        "id": answered["_tags"]["Category"][0]["id"],
    }
    assert answered["Category"] == "Footwear/Boots"


@pytest.mark.parametrize("endpoint", ["detect_tags", "detect_tags_all", "detect"])
def test_fashion_detection_returns_objects(api, endpoint):
    shot = product_shot(box=(20, 30, 120, 180))
    record = api.records(f"tagging/fashion/v2/{endpoint}", [{"_base64": b64(shot)}])[0]
    (found,) = record["_objects"]
    assert found["bound_box"] == [20, 30, 120, 180]
    assert found["name"] and found["prob"] > 0
    assert ("_tags" in found) == (endpoint != "detect")


def test_fashion_meta_describes_the_background(api):
    studio, busy = api.records(
        "tagging/fashion/v2/meta", [{"_base64": b64(product_shot())}, {"_base64": b64(scene(4))}]
    )
    assert "white background" in studio["_tags_meta_simple"]
    assert "complex background" in busy["_tags_meta_simple"]


def test_homedecor_tags_use_homedecor_categories(api):
    record = api.records("tagging/homedecor/v2/detect_tags", [{"_base64": b64(product_shot())}])[0]
    top = record["_tags"]["Top Category"][0]["name"]
    assert top in ("Furniture", "Accessories")
    assert record["_objects"][0]["bound_box"] == [50, 60, 150, 170]


def test_category_lists_need_no_token(server):
    homedecor = requests.get(server.url + "tagging/homedecor/v2/top_categories", timeout=5)
    assert homedecor.status_code == 200
    assert "Furniture/Tables" in homedecor.json()["Furniture"]
    fashion = requests.get(server.url + "tagging/fashion/v2/top_categories", timeout=5)
    assert "Footwear" in fashion.json()["labels"]
