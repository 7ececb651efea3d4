"""Search answers (visual search results) as the history shows them. The model
belongs to the submission engine; until it exists these return nothing."""

from django.apps import apps


def answer_model():
    try:
        return apps.get_model("submissions", "SearchAnswer")
    except LookupError:
        return None


def answers_for_records(*, record_ids) -> dict:
    """{query record id: [answer dict, ...]} ranked, for an export chunk."""
    return {}


def searches_for_record(*, record) -> list:
    """The record's visual searches, newest first, each with ranked answers."""
    return []


def more_like_this_url(record_pk) -> str | None:
    """The engine's submit page with this record and visual search chosen."""
    return None


def demo_answers_create(*, rng, teams, count) -> int:
    """Search answers for the demo data (nothing until the engine's model exists)."""
    return 0
