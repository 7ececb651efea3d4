from django.db import models


class Heartbeat(models.Model):
    """When a worker last ran the heartbeat beat sent to one work queue (named
    by its kind in settings.WORK_QUEUES): a stale one says nobody serves it."""

    name = models.CharField(max_length=40, unique=True)
    seen_at = models.DateTimeField()

    def __str__(self):
        return f"{self.name} at {self.seen_at:%Y-%m-%d %H:%M:%S}"
