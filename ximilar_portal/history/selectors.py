"""Reads of the history. `summaries_filtered` is the one place where filter
values become a query: the page, the export and the insights all go through it,
so what is exported is exactly what is shown.

Pages use keyset pagination on (sort key, record id): a deep page costs what
the first one does, and nothing counts a million rows on every request."""

import datetime
from decimal import Decimal, InvalidOperation

from django.db.models import Exists, OuterRef, Q
from django.shortcuts import get_object_or_404
from django.utils import timezone

from .models import Export, RecordSummary, SavedView, Status, SummaryLabel

PAGE_SIZE = 48
COUNT_CAP = 10_000
# sort name -> (summary column, descending?)
SORTS = {
    "newest": ("created_at", True),
    "oldest": ("created_at", False),
    "prob_desc": ("best_prob", True),
    "prob_asc": ("best_prob", False),
    "price_desc": ("price_sort", True),
    "price_asc": ("price_sort", False),
}


def summaries_filtered(*, team, filters: dict, record_ids=None):
    """The team's summaries matching validated filters (`HistoryFilterForm.
    active_filters()`), optionally only some records, unordered."""
    qs = RecordSummary.objects.filter(team=team)
    if record_ids is not None:
        qs = qs.filter(record_id__in=list(record_ids))
    for name, value in filters.items():
        qs = FILTERS[name](qs, value, filters)
    return qs


def _contains(column, value):
    return Q(**{f"{column}__contains": f"|{value}|"})


def _tags_all(qs, tags, _):
    for tag in tags:
        qs = qs.filter(_contains("tags_text", tag))
    return qs


def _tags_any(qs, tags, _):
    condition = Q()
    for tag in tags:
        condition |= _contains("tags_text", tag)
    return qs.filter(condition)


def _tags_none(qs, tags, _):
    for tag in tags:
        qs = qs.exclude(_contains("tags_text", tag))
    return qs


def _label(qs, name, filters):
    labels = SummaryLabel.objects.filter(summary=OuterRef("pk"), name=name.lower())
    if filters.get("min_prob") is not None:
        labels = labels.filter(prob__gte=filters["min_prob"])
    return qs.filter(Exists(labels))


def _min_prob(qs, value, filters):
    # With a label, the probability belongs to that label (see `_label`).
    return qs if filters.get("label") else qs.filter(best_prob__gte=value)


def _status(qs, value, _):
    return qs.filter(status=Status.NONE if value == "none" else value)


def _day_start(day: datetime.date):
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time.min))


FILTERS = {
    "q": lambda qs, v, _: qs.filter(search_text__contains=v.lower()),
    "service": lambda qs, v, _: qs.filter(_contains("services", v)),
    "status": _status,
    "best_label": lambda qs, v, _: qs.filter(best_label__iexact=v),
    "label": _label,
    "min_prob": _min_prob,
    "tags_any": _tags_any,
    "tags_all": _tags_all,
    "tags_none": _tags_none,
    "category": lambda qs, v, _: qs.filter(category__iexact=v),
    "product_id": lambda qs, v, _: qs.filter(product_id=v),
    "price_min": lambda qs, v, _: qs.filter(price__gte=v),
    "price_max": lambda qs, v, _: qs.filter(price__lte=v),
    "field": lambda qs, v, _: qs.filter(_contains("fields_text", v)),
    "date_from": lambda qs, v, _: qs.filter(created_at__gte=_day_start(v)),
    "date_to": lambda qs, v, _: qs.filter(
        created_at__lt=_day_start(v + datetime.timedelta(days=1))
    ),
    "submitted_by": lambda qs, v, _: qs.filter(_contains("people", v)),
    "has_error": lambda qs, v, _: qs.filter(has_error=(v == "yes")),
}


# --- Ordering and keyset pages ---------------------------------------------------------


def ordered(qs, sort: str):
    column, descending = SORTS[sort]
    prefix = "-" if descending else ""
    return qs.order_by(f"{prefix}{column}", f"{prefix}record_id")


def page_of(qs, *, sort: str, after: str = "", before: str = "", size: int = PAGE_SIZE):
    """One page after (or before) a cursor. Returns the rows and the cursors of
    the next and previous pages (None at either end)."""
    column, descending = SORTS[sort]
    cursor = _cursor_parse(before or after, column)
    backwards = bool(before) and cursor is not None
    if cursor is not None:
        qs = qs.filter(_beyond(column, cursor, descending=descending != backwards))
    rows = list(ordered(qs, _reverse(sort) if backwards else sort)[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    if backwards:
        rows.reverse()
    has_next = True if backwards else more
    has_previous = more if backwards else cursor is not None
    return {
        "rows": rows,
        "next": _cursor_of(rows[-1], column) if rows and has_next else None,
        "previous": _cursor_of(rows[0], column) if rows and has_previous else None,
    }


def _reverse(sort):
    column, descending = SORTS[sort]
    return next(name for name, (c, d) in SORTS.items() if c == column and d != descending)


def _beyond(column, cursor, *, descending):
    """Rows past (value, pk). The first condition alone is an index range, so
    the database seeks to the cursor instead of scanning up to it."""
    value, pk = cursor
    op = "lt" if descending else "gt"
    within = Q(**{f"{column}__{op}e": value})
    return within & (Q(**{f"{column}__{op}": value}) | Q(**{f"record_id__{op}": pk}))


def _cursor_of(summary, column) -> str:
    value = getattr(summary, column)
    text = value.isoformat() if isinstance(value, datetime.datetime) else str(value)
    return f"{text}~{summary.record_id}"


def _cursor_parse(text: str, column):
    """A cursor from the URL; anything malformed means "from the start"."""
    value, _, pk = (text or "").rpartition("~")
    if not value or not pk.isdigit():
        return None
    try:
        if column == "created_at":
            parsed = datetime.datetime.fromisoformat(value)
            return (parsed if parsed.tzinfo else timezone.make_aware(parsed)), int(pk)
        if column == "best_prob":
            return float(value), int(pk)
        return Decimal(value), int(pk)
    except (ValueError, InvalidOperation):
        return None


def count_capped(qs, cap: int = COUNT_CAP) -> tuple[int, bool]:
    """How many rows match, counting no further than `cap`."""
    count = qs.order_by().values("pk")[: cap + 1].count()
    return min(count, cap), count > cap


# --- One record -------------------------------------------------------------------------


def summary_get(*, team, pk) -> RecordSummary:
    return get_object_or_404(RecordSummary.objects.filter(team=team), pk=pk)


def saved_views_visible(*, team, user):
    return SavedView.objects.filter(Q(owner=user) | Q(shared=True), team=team).select_related(
        "owner"
    )


def saved_view_get(*, team, user, pk) -> SavedView:
    return get_object_or_404(saved_views_visible(team=team, user=user), pk=pk)


# --- Exports ----------------------------------------------------------------------------


def exports_recent(*, team, limit=50) -> list[Export]:
    return list(Export.objects.filter(team=team).select_related("created_by")[:limit])


def export_get(*, team, pk) -> Export:
    return get_object_or_404(Export.objects.filter(team=team), pk=pk)
