"""The one way to tell the history that records changed: `note(record_ids)`
inside the transaction that changed them (see `RecordChange`)."""

from collections.abc import Iterable

from .models import RecordChange


def note(record_ids: Iterable[int]) -> None:
    ids = sorted(set(record_ids))
    if ids:
        RecordChange.objects.bulk_create([RecordChange(record_id=pk) for pk in ids])
