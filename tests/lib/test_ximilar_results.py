"""Parsing of every reply shape we know of, including the UNCERTAIN ones, sent
as canned bodies over real HTTP. Nothing here may crash on a missing key."""

import pytest

from ximilar_portal.lib.ximilar import Color, Label, Tag

URL_RECORD = {"_id": "1", "_url": "https://example.com/a.jpg"}


def one_record(fake, client, record):
    """The parsed result of a reply carrying `record` alone."""
    fake.reply(200, {"status": {"code": 200, "text": "OK"}, "records": [record]})
    return client.generic_tags([URL_RECORD]).records[0]


# ---- recognition labels ------------------------------------------------------------------------


def test_it_reads_the_documented_recognition_reply(fake, client):
    # The example from the user's source document.
    record = {
        "_url": "__SOME_URL__",
        "_status": {"code": 200, "text": "OK", "request_id": "r1"},
        "_id": "i1",
        "_width": 415,
        "_height": 1024,
        "labels": [
            {"prob": 0.79654, "name": "Dog", "id": "l1"},
            {"prob": 0.08047, "name": "Cat", "id": "l2"},
        ],
        "best_label": {"prob": 0.79654, "name": "Dog", "id": "l1"},
    }
    fake.reply(
        200,
        {
            "records": [record],
            "status": {"code": 200, "text": "OK", "request_id": "r", "proc_id": "p"},
            "statistics": {"processing time": 0.9965865612030029},
        },
    )
    response = client.recognition_classify([URL_RECORD], task_id="t")
    result = response.records[0]
    assert result.ok and result.code == 200
    assert result.labels == [Label("Dog", 0.79654, "l1"), Label("Cat", 0.08047, "l2")]
    assert result.best_label == Label("Dog", 0.79654, "l1")
    assert response.processing_time == pytest.approx(0.9966, abs=1e-4)
    assert (response.status_code, response.status_text) == (200, "OK")
    assert response.raw["status"]["proc_id"] == "p"


def test_labels_without_ids_and_without_best_label(fake, client):
    result = one_record(
        fake, client, {"labels": [{"name": "a", "prob": 0.2}, {"name": "b", "prob": 0.7}]}
    )
    assert result.labels == [Label("a", 0.2, None), Label("b", 0.7, None)]
    assert result.best_label == Label("b", 0.7, None)


def test_odd_labels_are_skipped_not_fatal(fake, client):
    labels = [{"name": "a", "prob": "0.4"}, {"prob": 0.9}, "plain", 7, {"name": "n", "prob": None}]
    result = one_record(fake, client, {"labels": labels, "best_label": None})
    assert result.labels == [
        Label("a", 0.4, None),
        Label("plain", None, None),
        Label("n", None, None),
    ]
    assert result.best_label == Label("a", 0.4, None)


@pytest.mark.parametrize("labels", [None, {}, "x", []])
def test_no_labels_means_no_best_label(fake, client, labels):
    result = one_record(fake, client, {"labels": labels})
    assert result.labels == []
    assert result.best_label is None


# ---- tags --------------------------------------------------------------------------------------


def test_generic_tags_with_probabilities(fake, client):
    tags = [{"name": "dog", "prob": 0.9, "id": "t1"}, {"name": "grass", "prob": 0.5}]
    result = one_record(fake, client, {"_tags": tags})
    assert result.tags == [Tag("dog", 0.9, None), Tag("grass", 0.5, None)]


def test_generic_tags_in_simple_mode_are_names(fake, client):
    result = one_record(fake, client, {"_tags": ["dog", "grass"]})
    assert result.tags == [Tag("dog", None, None), Tag("grass", None, None)]


def test_fashion_tags_grouped_by_feature(fake, client):
    record = {
        "_tags": {
            "Category": [{"name": "Clothing/Dresses", "prob": 0.95, "id": "c"}],
            "Color": [{"name": "red", "prob": 0.8}, {"name": "white", "prob": 0.3}],
            "Style": "casual",
        },
        "_tags_simple": ["Clothing/Dresses", "red", "white", "casual"],
    }
    result = one_record(fake, client, record)
    assert result.tags == [
        Tag("Clothing/Dresses", 0.95, "Category"),
        Tag("red", 0.8, "Color"),
        Tag("white", 0.3, "Color"),
        Tag("casual", None, "Style"),
    ]


def test_only_tags_simple(fake, client):
    result = one_record(fake, client, {"_tags_simple": ["a", "b"]})
    assert result.tags == [Tag("a", None, None), Tag("b", None, None)]


def test_meta_tags(fake, client):
    result = one_record(fake, client, {"_tags_meta_simple": ["studio", "front"]})
    assert [t.name for t in result.tags] == ["studio", "front"]


def test_tags_of_detected_objects_when_the_record_has_none(fake, client):
    objects = [
        {"name": "Clothing", "bound_box": [1, 2, 3, 4], "_tags": {"Color": [{"name": "blue"}]}},
        {"name": "Shoes", "_tags": [{"name": "sneakers", "prob": 0.6}]},
    ]
    result = one_record(fake, client, {"_objects": objects})
    assert result.tags == [Tag("blue", None, "Color"), Tag("sneakers", 0.6, None)]


@pytest.mark.parametrize("tags", [None, 3, "", [], {}, [None, {"prob": 1}], {"Color": None}])
def test_odd_tags_give_no_tags(fake, client, tags):
    assert one_record(fake, client, {"_tags": tags}).tags == []


# ---- dominant colours --------------------------------------------------------------------------


def test_colors_from_rgb_only_get_a_hex(fake, client):
    result = one_record(fake, client, {"_dominant_colors": {"rgb_colors": [[238, 235, 223]]}})
    assert result.colors == [Color((238, 235, 223), "#eeebdf", None, None, None)]


def test_colors_with_every_list(fake, client):
    colors = {
        "rgb_colors": [[255, 0, 0], [0, 0, 255]],
        "rgb_hex_colors": ["#FF0000", "0000ff"],
        "color_names": ["red", "blue"],
        "color_names_simple": ["red", "blue"],
        "percentages": [0.75, 0.25],
    }
    result = one_record(fake, client, {"_dominant_colors": colors})
    assert result.colors == [
        Color((255, 0, 0), "#ff0000", "red", "red", 0.75),
        Color((0, 0, 255), "#0000ff", "blue", "blue", 0.25),
    ]


def test_colors_with_alternative_keys_and_percent_values(fake, client):
    colors = {
        "hex_colors": ["#00ff00"],
        "simple": ["green"],
        "color_names": [["Lime", "#00ff00"]],
        "percentages": [62.5],
    }
    result = one_record(fake, client, {"_dominant_colors": colors})
    assert result.colors == [Color((0, 255, 0), "#00ff00", "Lime", "green", 0.625)]


def test_small_percentages_out_of_100_are_normalised(fake, client):
    colors = {"rgb_colors": [[1, 1, 1], [2, 2, 2], [3, 3, 3]], "percentages": [60, 30, 10]}
    result = one_record(fake, client, {"_dominant_colors": colors})
    assert [c.percentage for c in result.colors] == pytest.approx([0.6, 0.3, 0.1])


def test_colors_as_a_list_of_dicts(fake, client):
    colors = [{"rgb": [10, 20, 30], "name": "navy", "percentage": 0.5}, "junk"]
    result = one_record(fake, client, {"_dominant_colors": colors})
    assert result.colors == [Color((10, 20, 30), "#0a141e", "navy", None, 0.5)]


def test_unequal_and_broken_color_lists_do_not_crash(fake, client):
    colors = {
        "rgb_colors": [[1, 2], "x", [300, -5, 7.6]],
        "rgb_hex_colors": ["nothex"],
        "percentages": ["a"],
        "pantone_names": ["ignored but kept in raw"],
    }
    result = one_record(fake, client, {"_dominant_colors": colors})
    assert result.colors == [
        Color(None, None, None, None, None),
        Color(None, None, None, None, None),
        Color((255, 0, 8), "#ff0008", None, None, None),
    ]
    assert result.raw["_dominant_colors"]["pantone_names"] == ["ignored but kept in raw"]


@pytest.mark.parametrize("colors", [None, "red", 5, {}, []])
def test_no_colors(fake, client, colors):
    assert one_record(fake, client, {"_dominant_colors": colors}).colors == []


# ---- status and envelope shapes ----------------------------------------------------------------


@pytest.mark.parametrize("status", [None, "OK", {"text": "OK"}, {"code": "abc"}])
def test_odd_record_status_counts_as_ok(fake, client, status):
    result = one_record(fake, client, {"_status": status})
    assert result.ok is True
    assert result.code is None


def test_a_non_dict_record_is_a_failure(fake, client):
    result = one_record(fake, client, "garbage")
    assert result.ok is False
    assert result.raw == {}


def test_odd_envelope_keys(fake, client):
    fake.reply(200, {"records": [{}], "status": "fine", "statistics": [1], "extra": {"k": 1}})
    response = client.generic_tags([URL_RECORD])
    assert (response.status_code, response.status_text) == (None, "")
    assert response.statistics == {}
    assert response.processing_time is None
    assert response.raw["extra"] == {"k": 1}


def test_unknown_record_keys_stay_in_raw(fake, client):
    result = one_record(fake, client, {"_objects": [{"bound_box": [0, 0, 1, 1]}], "_new": 1})
    assert result.raw["_new"] == 1
    assert result.tags == []
