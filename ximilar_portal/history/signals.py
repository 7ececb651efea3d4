"""Keep summaries fresh for records and results saved one at a time. Bulk
writes and `.update()` calls send no signal: `services.summary_sync` and the
`summary_refresh` hook cover those."""

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from ximilar_portal.records.models import Record
from ximilar_portal.submissions.models import Result

from .services import summary_refresh


def _refresh_after_commit(record_id) -> None:
    transaction.on_commit(lambda: summary_refresh(record_ids=[record_id]))


@receiver(post_save, sender=Record, dispatch_uid="history.record_saved")
def record_saved(sender, instance, raw=False, **kwargs):
    if not raw:
        _refresh_after_commit(instance.pk)


@receiver(post_save, sender=Result, dispatch_uid="history.result_saved")
def result_saved(sender, instance, raw=False, **kwargs):
    if not raw:
        _refresh_after_commit(instance.record_id)
