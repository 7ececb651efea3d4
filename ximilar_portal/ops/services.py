"""Writes of the operations app: only the heartbeats."""

from django.db import IntegrityError, transaction
from django.utils import timezone

from .models import Heartbeat


def heartbeat_record(*, name: str) -> None:
    now = timezone.now()
    if Heartbeat.objects.filter(name=name).update(seen_at=now):
        return
    try:
        with transaction.atomic():
            Heartbeat.objects.create(name=name, seen_at=now)
    except IntegrityError:  # another worker made the row first
        Heartbeat.objects.filter(name=name).update(seen_at=now)
