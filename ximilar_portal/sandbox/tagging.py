"""Generic, fashion and home-decor tagging.

Generic tags are measured from the pixels: colours, brightness, saturation,
orientation, detail and contrast, each with a probability that grows with the
measured strength. Fashion and home-decor add categories, which need a trained
model, so those are derived deterministically (standins.py); their colour,
pattern and background tags are measured.
"""

from .colors import dominant_colours
from .palette import CZECH_COLOUR_NAMES
from .protocol import BadRequest, Call, Reply, analyse_records, choice_option
from .services import object_of
from .standins import rank_labels, stable_id

CZECH_NAMES = {
    **CZECH_COLOUR_NAMES,
    "bright": "světlý", "dark": "tmavý", "colorful": "barevný", "monochrome": "monochromatický",
    "landscape": "na šířku", "portrait": "na výšku", "square": "čtvercový",
    "detailed": "detailní", "plain background": "jednolité pozadí",
    "high contrast": "vysoký kontrast", "low contrast": "nízký kontrast",
}  # fmt: skip
SIMPLE_MODE_MIN_PROB = 0.6  # "simple" mode drops the less certain tags

FASHION_CATEGORIES = {
    "Clothing": ["Clothing/Upper", "Clothing/Lower", "Clothing/Dresses", "Clothing/Jackets"],
    "Footwear": ["Footwear/Sneakers", "Footwear/Boots", "Footwear/Sandals"],
    "Bags": ["Bags/Handbags", "Bags/Backpacks"],
    "Accessories": ["Accessories/Hats", "Accessories/Scarves", "Accessories/Belts"],
    "Jewellery": ["Jewellery/Necklaces", "Jewellery/Rings"],
    "Watches": ["Watches/Watches"],
}
# Verbatim from Ximilar's docs (ximilar-samples/homedecor_top_categories.json).
HOMEDECOR_CATEGORIES = {
    "Furniture": [
        "Furniture/Furniture Set", "Furniture/Beds", "Furniture/Relax", "Furniture/Sitting",
        "Furniture/Storage", "Furniture/Tables",
    ],
    "Accessories": [
        "Accessories/Bathroom", "Accessories/Decorative", "Accessories/Dining & Cookware",
        "Accessories/Lighting", "Accessories/Mirrors", "Accessories/Storage",
        "Accessories/Textile",
    ],
}  # fmt: skip


def strength(value: float, start: float, full: float) -> float:
    """0.5 when the measure just reaches `start`, 0.99 at `full` and beyond."""
    fraction = (value - start) / (full - start)
    return round(min(0.99, max(0.5, 0.5 + 0.49 * fraction)), 4)


def tag(name: str, prob: float, lang: str = "en") -> dict:
    shown = CZECH_NAMES.get(name, name) if lang == "cs" else name
    return {"name": shown, "prob": prob, "id": stable_id("tag", name)}


# --- Generic tagging -----------------------------------------------------------


def colour_shares(picture, *, product: bool) -> dict[str, float]:
    """Share of the picture per simple colour name, largest first."""
    found = dominant_colours(picture, count=6, product=product)
    shares: dict[str, float] = {}
    for name, share in zip(found["color_names_simple"], found["percentages"], strict=True):
        shares[name] = shares.get(name, 0.0) + share
    return dict(sorted(shares.items(), key=lambda item: item[1], reverse=True))


def colour_tags(picture, *, product=False) -> list[tuple[str, float]]:
    shares = colour_shares(picture, product=product)
    return [(name, strength(share, 0.1, 0.6)) for name, share in shares.items() if share >= 0.1]


def measured_tags(picture) -> list[tuple[str, float]]:
    tags = colour_tags(picture)
    if picture.brightness >= 0.6:
        tags.append(("bright", strength(picture.brightness, 0.6, 0.9)))
    elif picture.brightness <= 0.35:
        tags.append(("dark", strength(0.35 - picture.brightness, 0.0, 0.3)))
    if picture.saturation >= 0.35:
        tags.append(("colorful", strength(picture.saturation, 0.35, 0.8)))
    elif picture.saturation <= 0.1:
        tags.append(("monochrome", strength(0.1 - picture.saturation, 0.0, 0.1)))
    tags.append(orientation_tag(picture.width, picture.height))
    if picture.edge_density >= 0.06:
        tags.append(("detailed", strength(picture.edge_density, 0.06, 0.2)))
    elif picture.edge_density <= 0.02 or picture.background is not None:
        tags.append(("plain background", strength(0.02 - picture.edge_density, 0.0, 0.02)))
    if picture.contrast >= 0.45:
        tags.append(("high contrast", strength(picture.contrast, 0.45, 0.9)))
    elif picture.contrast <= 0.1:
        tags.append(("low contrast", strength(0.1 - picture.contrast, 0.0, 0.1)))
    return sorted(tags, key=lambda pair: pair[1], reverse=True)


def orientation_tag(width: int, height: int) -> tuple[str, float]:
    ratio = width / height
    if ratio >= 1.1:
        return "landscape", strength(ratio, 1.1, 1.6)
    if ratio <= 1 / 1.1:
        return "portrait", strength(1 / ratio, 1.1, 1.6)
    return "square", strength(1.1 - abs(ratio - 1), 1.0, 1.1)


def generic_tags(call: Call) -> Reply:
    lang = choice_option(call.body, "lang", "en", ("en", "cs"))
    mode = choice_option(call.body, "tagging_mode", "complex", ("complex", "simple"))

    def analyse(picture, record):
        tags = [tag(name, prob, lang) for name, prob in measured_tags(picture)]
        if mode == "simple":
            names = [t["name"] for t in tags if t["prob"] >= SIMPLE_MODE_MIN_PROB]
            return {"_tags": names, "_tags_simple": names}
        return {"_tags": tags, "_tags_simple": [t["name"] for t in tags]}

    return analyse_records(call, analyse)


# --- Fashion and home decor ----------------------------------------------------


def category_tags(picture, record, categories: dict, namespace: str) -> dict:
    """Top Category and Category: the record's own `Category` when given,
    else derived deterministically from the image."""
    given = record.get("Category")
    if isinstance(given, str) and given:
        category, prob = given, 1.0
    else:
        names = [name for group in categories.values() for name in group]
        category, prob = rank_labels(picture.features, names, namespace)[0]
        prob = round(prob, 4)
    top = category.split("/")[0]
    return {"Top Category": [tag(top, prob)], "Category": [tag(category, prob)]}


def product_tags(picture, record, categories: dict, namespace: str) -> dict:
    groups = category_tags(picture, record, categories, namespace)
    groups["Color"] = [tag(name, prob) for name, prob in colour_tags(picture, product=True)]
    patterned = picture.edge_density >= 0.04
    groups["Pattern"] = [tag("patterned" if patterned else "plain", 0.8)]
    return groups


def simple_list(groups: dict) -> list[str]:
    return [tags[0]["name"] for tags in groups.values() if tags]


def tagged(groups: dict) -> dict:
    return {"_tags": groups, "_tags_simple": simple_list(groups)}


def meta_groups(picture) -> dict:
    """Background and scene, from whether the border is one plain colour."""
    background = picture.background
    if background is None:
        return {"Background": [tag("complex background", 0.7)], "Scene": [tag("real life", 0.6)]}
    plain = "white background" if min(background) > 225 else "plain background"
    return {"Background": [tag(plain, 0.9)], "Scene": [tag("studio", 0.7)]}


def tags_handler(categories: dict, namespace: str, *, objects: bool, tags=True, meta=False):
    """A handler for one tagging endpoint: tags, detect, detect_tags or meta."""

    def analyse(picture, record):
        answer = {}
        groups = product_tags(picture, record, categories, namespace)
        if tags:
            answer.update(tagged(groups))
        if objects:
            found = object_of(picture)
            name = groups["Top Category"][0]["name"]
            found.update(name=name, id=stable_id("tag", name))
            if tags:
                found.update(tagged(groups))
            answer["_objects"] = [found]
        if meta:
            found_meta = meta_groups(picture)
            answer.update(_tags_meta=found_meta, _tags_meta_simple=simple_list(found_meta))
        return answer

    def handler(call: Call) -> Reply:
        profile = call.body.get("profile")
        if profile is not None and not isinstance(profile, str):
            raise BadRequest("profile must be a string")
        return analyse_records(call, analyse)  # aggregate_labels: one object, nothing to merge

    return handler


def fashion_top_categories(call: Call) -> Reply:
    return Reply({"labels": list(FASHION_CATEGORIES)})


def fashion_categories(call: Call) -> Reply:
    return Reply({"labels": [name for group in FASHION_CATEGORIES.values() for name in group]})


def homedecor_top_categories(call: Call) -> Reply:
    return Reply({key: list(values) for key, values in HOMEDECOR_CATEGORIES.items()})


FASHION = {
    "tags": tags_handler(FASHION_CATEGORIES, "fashion", objects=False),
    "detect_tags": tags_handler(FASHION_CATEGORIES, "fashion", objects=True),
    "detect_tags_all": tags_handler(FASHION_CATEGORIES, "fashion", objects=True),
    "detect": tags_handler(FASHION_CATEGORIES, "fashion", objects=True, tags=False),
    "meta": tags_handler(FASHION_CATEGORIES, "fashion", objects=False, tags=False, meta=True),
}
HOMEDECOR = {
    "tags": tags_handler(HOMEDECOR_CATEGORIES, "homedecor", objects=False),
    "detect_tags": tags_handler(HOMEDECOR_CATEGORIES, "homedecor", objects=True),
}
