"""Account, custom recognition, detection and dominant colours.

Computed for real: image size, dominant colours, the bounding box of what is
in front of a plain background. Derived deterministically (see standins.py):
recognition labels and detection names.
"""

import hashlib
import uuid

from .colors import dominant_colours
from .protocol import BadRequest, Call, Reply, analyse_records, int_option
from .standins import rank_labels, stable_id, task_label_names

CREDITS_LIMIT = 2147483647


def account_key(token: str) -> str:
    """A stable, non-reversible stand-in for the token in derived ids."""
    return hashlib.sha256(token.encode()).hexdigest()


def account_details(call: Call) -> Reply:
    key = account_key(call.token)
    return Reply(
        {
            "id": stable_id("account", key),
            "email": "sandbox@example.com",
            "first_name": "Sandbox",
            "last_name": "User",
            "phone": None,
            "organization": "Ximilar Portal sandbox",
            "verified": True,
            "credits_counter": call.state.credits_used(call.token),
            "credits_limit": CREDITS_LIMIT,
            "default_workspace": stable_id("workspace", key),
        }
    )


def authorize(call: Call) -> Reply:
    """Every service is open to every sandbox token."""
    service = call.body.get("service")
    if not isinstance(service, str) or not service:
        raise BadRequest("service is required")
    user_id = stable_id("account", account_key(call.token))
    return Reply({"user_id": user_id, "service": service, "call_type": call.body.get("call_type")})


# --- Custom recognition -------------------------------------------------------


def task_id_from(body: dict) -> str:
    task_id = body.get("task_id") or body.get("task")
    if not isinstance(task_id, str) or not task_id:
        raise BadRequest("task_id is required")
    return task_id


def recognition_task(call: Call) -> Reply:
    """What `GET recognition/v2/task/<id>/` returns; any id is a task here."""
    task_id = call.params["task_id"]
    labels = [label_json(task_id, name) for name in task_label_names(task_id)]
    return Reply(
        {
            "id": task_id,
            "name": f"Sandbox task {task_id[:8]}",
            "type": "multi_class",
            "description": "Labels derived deterministically by the sandbox; not a trained model.",
            "production_version": 1,
            "last_train_status": "TRAINED",
            "labels": labels,
        }
    )


def label_json(task_id: str, name: str) -> dict:
    return {"id": stable_id("label", task_id, name), "name": name}


def classify(call: Call) -> Reply:
    task_id = task_id_from(call.body)
    int_option(call.body, "version", 1, 1, 10_000)
    store_images = bool(call.body.get("store_images"))
    names = task_label_names(task_id)

    def analyse(picture, record):
        ranked = rank_labels(picture.features, names, f"task/{task_id}")
        labels = [labelled(task_id, name, prob) for name, prob in ranked]
        answer = {"labels": labels, "best_label": labels[0]}
        if store_images:
            answer["_stored_image_id"] = str(uuid.uuid4())
        return answer

    return analyse_records(call, analyse)


def labelled(task_id: str, name: str, prob: float) -> dict:
    return {"prob": round(prob, 5), "name": name, "id": stable_id("label", task_id, name)}


def detect(call: Call) -> Reply:
    """One object: the area in front of a plain background, else the whole image."""
    task_id = task_id_from(call.body)
    keep_prob = call.body.get("keep_prob") or 0.0
    if isinstance(keep_prob, bool) or not isinstance(keep_prob, int | float):
        raise BadRequest("keep_prob must be a number")
    names = task_label_names(task_id)

    def analyse(picture, record):
        name, _ = rank_labels(picture.features, names, f"task/{task_id}")[0]
        found = object_of(picture)
        found.update(name=name, id=stable_id("label", task_id, name))
        kept = [found] if found["prob"] >= keep_prob else []
        return {"_objects": kept}

    return analyse_records(call, analyse)


def object_of(picture) -> dict:
    """A bounding box and how sure the sandbox is of it: sure when a plain
    background surrounds it, unsure when the "object" is just the whole frame."""
    box = picture.object_box
    if box is None:
        return {"bound_box": [0, 0, picture.width, picture.height], "prob": 0.5}
    return {"bound_box": box, "prob": 0.9}


# --- Dominant colours ----------------------------------------------------------


def dominant_colors_product(call: Call) -> Reply:
    return colours_reply(call, default_count=3, product=True)


def dominant_colors_generic(call: Call) -> Reply:
    return colours_reply(call, default_count=6, product=False)


def colours_reply(call: Call, *, default_count: int, product: bool) -> Reply:
    count = int_option(call.body, "colors", default_count, 1, 20)

    def analyse(picture, record):
        return {"_dominant_colors": dominant_colours(picture, count=count, product=product)}

    return analyse_records(call, analyse)
