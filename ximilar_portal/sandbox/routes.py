"""Which handler answers which path and HTTP method.

Paths are compared without leading or trailing slashes, so `tags` and `tags/`
are the same endpoint, as they are for clients of Ximilar.
"""

import re
from dataclasses import dataclass, field

from . import services, similarity, tagging


@dataclass(frozen=True)
class Route:
    handlers: dict  # HTTP method -> handler(call) -> Reply
    public: bool = False  # answered without a token
    params: dict = field(default_factory=dict)


def post(handler):
    return Route({"POST": handler})


FIXED = {
    "account/v2/details": Route({"GET": services.account_details}),
    "authorization/v2/authorize": post(services.authorize),
    "recognition/v2/classify": post(services.classify),
    "detection/v2/detect": post(services.detect),
    "photo/tags/v2/tags": post(tagging.generic_tags),
    "tagging/generic/v2/tags": post(tagging.generic_tags),  # legacy path
    "dom_colors/product/v2/dominantcolor": post(services.dominant_colors_product),
    "dom_colors/generic/v2/dominantcolor": post(services.dominant_colors_generic),
    # The official client fetches category lists without a token, so these are public.
    "tagging/fashion/v2/top_categories": Route(
        {"GET": tagging.fashion_top_categories}, public=True
    ),
    "tagging/fashion/v2/categories": Route({"GET": tagging.fashion_categories}, public=True),
    "tagging/homedecor/v2/top_categories": Route(
        {"GET": tagging.homedecor_top_categories}, public=True
    ),
    **{f"tagging/fashion/v2/{name}": post(handler) for name, handler in tagging.FASHION.items()},
    **{
        f"tagging/homedecor/v2/{name}": post(handler) for name, handler in tagging.HOMEDECOR.items()
    },
}

TASK_PATH = re.compile(r"recognition/v2/task/(?P<task_id>[^/]+)")


def resolve(path: str) -> Route | None:
    path = path.strip("/")
    if path in FIXED:
        return FIXED[path]
    task = TASK_PATH.fullmatch(path)
    if task:
        return Route({"GET": services.recognition_task}, params=task.groupdict())
    base, _, method = path.rpartition("/")
    if base in similarity.BASES and method in similarity.METHODS:
        return Route({"POST": similarity.handle}, params={"method": method})
    return None
