"""Reads for records. `record_get` is the one way to fetch a record by id: it
looks only inside the given team, so an outsider always gets 404."""

from django.shortcuts import get_object_or_404

from .models import Record


def records_for_team(*, team):
    return Record.objects.filter(team=team).select_related("created_by")


def record_get(*, team, pk) -> Record:
    return get_object_or_404(records_for_team(team=team), pk=pk)
