"""The history's own read model. Record belongs to the uploads, Result and
RecordJob to the engine; filtering a million of those with joins and JSON
lookups is slow, so every record has one `RecordSummary` row holding what the
history filters, sorts and shows, kept up to date by `services.summary_refresh`.

Text columns that hold lists are written as `|a|b|c|` (lower case), so "has tag
red" is `contains "|red|"` on every database."""

import uuid

from django.conf import settings
from django.db import models

from ximilar_portal.accounts.models import Team
from ximilar_portal.records.models import Record

NO_PROB = -1.0  # sort key of a record without a probability (sorts last)
NO_PRICE = -1  # sort key of a record without a price


class Status(models.TextChoices):
    NONE = "", "Not sent"
    WAITING = "waiting", "Waiting"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    BLOCKED = "blocked", "Blocked"
    CANCELLED = "cancelled", "Cancelled"


class RecordSummary(models.Model):
    record = models.OneToOneField(
        Record, on_delete=models.CASCADE, primary_key=True, related_name="summary"
    )
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+", db_index=False)
    created_at = models.DateTimeField()
    # Copies of the record's own fields (filtered and exported without a join).
    ximilar_id = models.CharField(max_length=255)
    product_id = models.CharField(max_length=255, blank=True)
    category = models.CharField(max_length=255, blank=True)
    price = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    price_sort = models.DecimalField(max_digits=14, decimal_places=4, default=NO_PRICE)
    has_image = models.BooleanField(default=False)
    has_thumbnail = models.BooleanField(default=False)
    record_tags = models.JSONField(default=list)
    record_fields = models.JSONField(default=dict)
    # What the services said (the latest result of each service wins).
    status = models.CharField(max_length=10, choices=Status.choices, blank=True)
    has_error = models.BooleanField(default=False)
    error_message = models.CharField(max_length=500, blank=True)
    services = models.CharField(max_length=500, blank=True)  # |generic_tags|colors_product|
    best_label = models.CharField(max_length=255, blank=True)
    best_prob = models.FloatField(default=NO_PROB)
    top_tags = models.JSONField(default=list)  # [{"name", "prob"}], best first, a few
    colors = models.JSONField(default=list)  # [{"hex", "name", "percentage"}]
    # Filter helpers.
    tags_text = models.TextField(blank=True)  # |record tag|result tag|...
    fields_text = models.TextField(blank=True)  # |name=value|...
    people = models.CharField(max_length=500, blank=True)  # |user id|... creator and senders
    search_text = models.TextField(blank=True)  # lower-case _id, product_id, tags, fields
    refreshed_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-record_id"]
        indexes = [
            models.Index(fields=["team", "-created_at", "-record"], name="history_sum_date"),
            models.Index(fields=["team", "-best_prob", "-record"], name="history_sum_prob"),
            models.Index(fields=["team", "price_sort", "record"], name="history_sum_price"),
            models.Index(fields=["team", "status", "record"], name="history_sum_status"),
            models.Index(fields=["team", "best_label"], name="history_sum_label"),
        ]

    def __str__(self):
        return f"summary of {self.ximilar_id}"

    @property
    def service_list(self):
        return [name for name in self.services.split("|") if name]

    @property
    def has_prob(self):
        return self.best_prob >= 0


class SummaryLabel(models.Model):
    """One label or tag name a record was given, with its highest probability
    over all results: what "any label ≥ p" filters on."""

    summary = models.ForeignKey(RecordSummary, on_delete=models.CASCADE, related_name="labels")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+", db_index=False)
    name = models.CharField(max_length=255)  # lower case
    prob = models.FloatField()

    class Meta:
        indexes = [
            models.Index(fields=["summary", "name", "prob"], name="history_label_record"),
            models.Index(fields=["team", "name", "prob"], name="history_label_team"),
        ]

    def __str__(self):
        return f"{self.name} {self.prob:.3f}"


class SyncMark(models.Model):
    """How far the history has looked at records and jobs of a team: anything
    newer is summarised on the next visit, so records added in bulk or jobs
    created by the engine appear even if nobody called the refresh hook."""

    team = models.OneToOneField(Team, on_delete=models.CASCADE, primary_key=True)
    last_record_id = models.BigIntegerField(default=0)
    last_job_id = models.BigIntegerField(default=0)
    last_result_id = models.BigIntegerField(default=0)

    def __str__(self):
        return f"sync mark of team {self.team_id}"


class SavedView(models.Model):
    """A named filter (the history URL's query string), for its owner alone or
    shared with the team."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=100)
    query = models.CharField(max_length=2000, blank=True)
    shared = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self):
        return self.name


class ExportState(models.TextChoices):
    WAITING = "waiting", "Waiting"
    RUNNING = "running", "Running"
    DONE = "done", "Ready"
    FAILED = "failed", "Failed"


def export_path(export, filename):
    return f"exports/{export.team_id}/{uuid.uuid4().hex}.{export.format}"


class Export(models.Model):
    """A large export written in the background; downloaded from its page.

    It waits while its team has EXPORT_MAX_RUNNING_PER_TEAM running; a running
    one is taken by one worker (`run_token`), which shows it is alive through
    `heartbeat_at`. `key` is the same for identical exports (team, filter,
    sort, checked rows, format), so a second request reuses the first."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    format = models.CharField(max_length=8)
    query = models.CharField(max_length=2000, blank=True)
    record_ids = models.JSONField(default=list, blank=True)
    state = models.CharField(
        max_length=10, choices=ExportState.choices, default=ExportState.WAITING
    )
    key = models.CharField(max_length=64, blank=True)
    run_token = models.CharField(max_length=32, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    rows = models.PositiveIntegerField(default=0)
    file = models.FileField(upload_to=export_path, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    # While running: handed to the broker at (past) or held by a worker until
    # (future); see lib/background.py.

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["team", "state", "key"], name="history_export_state")]

    def __str__(self):
        return f"export #{self.pk} ({self.format})"
