"""Thin tasks: they take ids and call a service."""

from celery import shared_task

from ximilar_portal.lib.background import periodic

from . import batches, services


@shared_task(name="records.fetch_preview", acks_late=True, reject_on_worker_lost=True)
def fetch_preview(record_id: int) -> None:
    services.record_fetch_preview(record_id=record_id)


@shared_task(name="records.fetch_batch_previews", acks_late=True, reject_on_worker_lost=True)
def fetch_batch_previews(batch_id: int) -> None:
    batches.batch_fetch_previews(batch_id=batch_id)


@shared_task(name="records.import_check", acks_late=True, reject_on_worker_lost=True)
def import_check(batch_id: int) -> None:
    batches.import_check(batch_id=batch_id)


@shared_task(name="records.import_commit", acks_late=True, reject_on_worker_lost=True)
def import_commit(batch_id: int) -> None:
    batches.import_commit(batch_id=batch_id)


@shared_task(name="records.sweep")
@periodic
def sweep() -> None:
    services.previews_sweep()
    batches.imports_sweep()
