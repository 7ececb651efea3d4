from celery import shared_task

from ximilar_portal.lib.background import periodic

from . import services


@shared_task(name="history.run_export", acks_late=True, max_retries=0)
def run_export(export_id: int) -> None:
    services.export_run(export_id=export_id)


@shared_task(name="history.sync")
@periodic
def sync() -> None:
    services.summaries_sync_all()


@shared_task(name="history.exports_sweep")
@periodic
def exports_sweep() -> None:
    services.exports_sweep()
