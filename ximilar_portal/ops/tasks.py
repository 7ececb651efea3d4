"""Thin task: beat sends one to every work queue (CELERY_BEAT_SCHEDULE)."""

from celery import shared_task

from . import services


@shared_task(name="ops.heartbeat", ignore_result=True)
def heartbeat(kind: str) -> None:
    services.heartbeat_record(name=kind)
