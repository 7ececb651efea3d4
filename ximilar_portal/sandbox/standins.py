"""Stand-ins for trained models: labels that are not true, but are stable.

A real classifier needs a trained network; the sandbox has none. Instead each
label gets a fixed random projection (seeded from the task or service and the
label's name, never from Python's salted hash) and the image's feature vector
is scored against every label with a softmax. So the same image always gets
the same answer, a near-copy gets nearly the same one, and different images
get different ones. The names and probabilities mean nothing beyond that.
"""

import hashlib
import math
import random
import uuid
from functools import lru_cache

SANDBOX_NAMESPACE = uuid.UUID("6f1d7c3a-4b7e-4d1f-9a3c-2e5b8d0f1a42")
SHARPNESS = 1.5  # scales the scores: higher means a more confident best label

# Words for made-up task labels; plain nouns so a dashboard reads naturally.
LABEL_WORDS = (
    "apple", "bicycle", "bridge", "car", "cat", "chair", "cloud", "dog", "flower",
    "forest", "guitar", "house", "lamp", "mountain", "ocean", "road", "shoe", "table",
)  # fmt: skip


def stable_seed(*parts: str) -> int:
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big")


def stable_id(*parts: str) -> str:
    return str(uuid.uuid5(SANDBOX_NAMESPACE, "/".join(parts)))


@lru_cache(maxsize=2048)
def projection(namespace: str, name: str, dims: int) -> tuple[float, ...]:
    generator = random.Random(stable_seed(namespace, name))
    return tuple(generator.gauss(0.0, 1.0) for _ in range(dims))


def score(weights, features) -> float:
    return SHARPNESS * sum(w * f for w, f in zip(weights, features, strict=True))


def rank_labels(features: list[float], names, namespace: str) -> list[tuple[str, float]]:
    """[(name, probability)] for every name, most probable first; sums to 1."""
    scores = [score(projection(namespace, name, len(features)), features) for name in names]
    top = max(scores)
    weights = [math.exp(score - top) for score in scores]
    total = sum(weights)
    ranked = [(name, weight / total) for name, weight in zip(names, weights, strict=True)]
    return sorted(ranked, key=lambda pair: pair[1], reverse=True)


def task_label_names(task_id: str) -> list[str]:
    """A task's labels: two to six words, always the same for one task id."""
    generator = random.Random(stable_seed("task", task_id))
    return generator.sample(LABEL_WORDS, generator.randint(2, 6))
