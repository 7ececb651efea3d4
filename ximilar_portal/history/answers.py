"""Search answers (visual search results, stored by the engine as `SearchAnswer`)
as the history shows and exports them. Every read is filtered by the team, not
only by the query record: an answer row of another team never shows, whatever
ids are asked for."""

from urllib.parse import urlencode

from django.urls import reverse

from ximilar_portal.submissions.calls import SEARCH
from ximilar_portal.submissions.models import SearchAnswer

SEARCHES_SHOWN = 20  # newest visual searches of one record on its page


def answers_for_records(*, team_id, record_ids) -> dict:
    """{query record id: [answer dict, ...]} ranked, for an export chunk (one query)."""
    rows = (
        SearchAnswer.objects.filter(team_id=team_id, query_record_id__in=list(record_ids))
        .order_by("query_record_id", "result_id", "rank")
        .values_list(
            "query_record_id", "result_id", "rank", "answer_id", "distance", "fields", "record_id"
        )
    )
    by_record = {}
    for query_id, search_id, rank, answer_id, distance, fields, record_id in rows:
        by_record.setdefault(query_id, []).append(
            {
                "search": search_id,
                "rank": rank,
                "_id": answer_id,
                "distance": distance,
                "fields": fields,
                "record": record_id,
            }
        )
    return by_record


def searches_for_record(*, record) -> list:
    """The record's visual searches, newest first, each with ranked answers
    ready for `history/answer_grid.html`."""
    team_id = record.team_id
    search_ids = list(
        SearchAnswer.objects.filter(team_id=team_id, query_record=record)
        .order_by("-result_id")
        .values_list("result_id", flat=True)
        .distinct()[:SEARCHES_SHOWN]
    )
    if not search_ids:
        return []
    rows = (
        SearchAnswer.objects.filter(team_id=team_id, query_record=record, result_id__in=search_ids)
        .select_related("result__job__submission__collection", "record")
        .order_by("-result_id", "rank")
    )
    searches = {}
    for row in rows:
        search = searches.get(row.result_id)
        if search is None:
            search = searches[row.result_id] = _search(row.result)
        search["answers"].append(_answer(row, team_id, search["collection_id"]))
    return list(searches.values())


def _search(result) -> dict:
    collection = result.job.submission.collection
    return {
        "key": result.pk,
        "created_at": result.created_at,
        "collection": collection.name if collection else "",
        "collection_id": collection.pk if collection else None,
        "answers": [],
    }


def _answer(row, team_id, collection_id) -> dict:
    # The engine links only the team's own records; checking again costs nothing.
    linked = row.record if row.record is not None and row.record.team_id == team_id else None
    fields = row.fields if isinstance(row.fields, dict) else {}
    url = fields.get("_url")
    return {
        "rank": row.rank,
        "answer_id": row.answer_id,
        "distance": row.distance,
        "fields": {k: v for k, v in fields.items() if k not in ("_id", "_url")},
        "record_id": linked.pk if linked else None,
        "has_thumbnail": bool(linked and linked.thumbnail),
        "has_image": bool(linked and linked.image),
        "image_url": url
        if isinstance(url, str) and url.startswith(("https://", "http://"))
        else "",
        # Again against the same collection, or "more like this" against one chosen anew.
        "search_again_url": more_like_this_url(linked.pk, collection_id) if linked else None,
        "more_like_url": more_like_this_url(linked.pk) if linked else None,
    }


def more_like_this_url(record_pk, collection_id=None) -> str:
    """The engine's submit page with this record and visual search chosen (and
    the collection of the search it came from, when known)."""
    params = {"record": record_pk, "service": SEARCH}
    if collection_id:
        params["collection"] = collection_id
    return reverse("submissions:new") + "?" + urlencode(params)
