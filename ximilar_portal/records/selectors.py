"""Reads for records. `record_get` and `batch_get` are the one way to fetch a
record or a batch by id: they look only inside the given team, so an outsider
always gets 404."""

from django.db.models import Count, Q
from django.shortcuts import get_object_or_404

from .models import BatchItem, ItemStatus, Record, UploadBatch


def records_for_team(*, team):
    return Record.objects.filter(team=team).select_related("created_by")


def record_get(*, team, pk) -> Record:
    return get_object_or_404(records_for_team(team=team), pk=pk)


def records_selected(*, team, ids):
    """The team's records among `ids`; ids of other teams are simply not there."""
    return Record.objects.filter(team=team, pk__in=list(ids))


def batches_for_team(*, team):
    return UploadBatch.objects.filter(team=team).select_related("created_by")


def batch_get(*, team, pk) -> UploadBatch:
    return get_object_or_404(batches_for_team(team=team), pk=pk)


def batch_counts(*, batch) -> dict:
    counts = batch.items.aggregate(
        **{status: Count("pk", filter=Q(status=status)) for status in ItemStatus.values}
    )
    counts["created"] = batch.records.count()
    return counts


def batch_items(*, batch, status=None, limit=500):
    items = BatchItem.objects.filter(batch=batch).select_related("record", "duplicate_of")
    if status:
        items = items.filter(status=status)
    return items.defer("data")[:limit]


def batch_preview_rows(*, batch, limit=200):
    """Import preview: the rows that will not be created first, then a sample
    of those that will."""
    items = BatchItem.objects.filter(batch=batch)
    problems = items.exclude(status=ItemStatus.ACCEPTED).select_related("duplicate_of")
    return list(problems[:limit]), list(items.filter(status=ItemStatus.ACCEPTED)[:limit])
