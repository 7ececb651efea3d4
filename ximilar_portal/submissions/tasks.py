"""Thin tasks: they take ids, never tokens or images, and call a service."""

from celery import shared_task

from ximilar_portal.lib.background import periodic

from . import services


@shared_task(name="submissions.process", acks_late=True, reject_on_worker_lost=True)
def process_submission(submission_id: int) -> None:
    services.submission_process(submission_id=submission_id)


@shared_task(name="submissions.sweep")
@periodic
def sweep() -> None:
    services.sweep()
