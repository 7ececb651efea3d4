from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse

from ximilar_portal.accounts.models import Team
from ximilar_portal.lib import ximilar
from ximilar_portal.records.models import Record

from .calls import service_label

COLLECTION_TYPE_CHOICES = [(key, key.replace("_", " ")) for key in ximilar.COLLECTION_TYPES]


class Collection(models.Model):
    """A Ximilar visual-search collection the team registered (its id lives at
    Ximilar; this row names it and says which API path its type uses)."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="collections")
    name = models.CharField(max_length=100)
    collection_type = models.CharField(
        "type", max_length=20, choices=COLLECTION_TYPE_CHOICES, default="products"
    )
    collection_id = models.CharField("collection id", max_length=100)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["team", "name"], name="one_collection_name_per_team")
        ]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("submissions:collection_edit", args=[self.pk])


class TeamQueue(models.Model):
    """Per team: whether its queue is paused by a person (distinct from a team
    blocked because Ximilar refused its token), and the shared rate limiter
    (the earliest moment the next request may go, in microseconds)."""

    team = models.OneToOneField(Team, on_delete=models.CASCADE, primary_key=True)
    paused = models.BooleanField(default=False)
    paused_at = models.DateTimeField(null=True, blank=True)
    paused_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    next_slot_us = models.BigIntegerField(default=0)
    # Ximilar answered 429: no request of the team before this moment (microseconds).
    throttled_until_us = models.BigIntegerField(default=0)

    def __str__(self):
        return f"queue of team {self.team_id}"


class Submission(models.Model):
    """One person's request to run one service over a set of records."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="submissions")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    service = models.CharField(max_length=40)
    options = models.JSONField(default=dict, blank=True)
    # Moved on by every batch; the sweeper revives submissions that stop moving.
    last_progress_at = models.DateTimeField(auto_now_add=True)
    collection = models.ForeignKey(
        Collection, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.service} #{self.pk}"

    def get_absolute_url(self):
        return reverse("submissions:detail", args=[self.pk])

    @property
    def service_label(self):
        return service_label(self.service)


class JobState(models.TextChoices):
    QUEUED = "queued", "Waiting"
    SENDING = "sending", "Sending"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"
    BLOCKED = "blocked", "Blocked"
    CANCELLED = "cancelled", "Cancelled"


FINAL_STATES = (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


class RecordJob(models.Model):
    """One record sent to one service: the database, not the broker, is the
    source of truth for where it stands (design §3.1)."""

    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name="jobs")
    record = models.ForeignKey(Record, on_delete=models.CASCADE, related_name="jobs")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    state = models.CharField(max_length=10, choices=JobState.choices, default=JobState.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claim_id = models.UUIDField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    error_class = models.CharField(max_length=40, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["submission", "state", "next_attempt_at"]),
            models.Index(fields=["state", "lease_until"]),
        ]

    def __str__(self):
        return f"job #{self.pk} ({self.state})"

    @property
    def is_final(self):
        return self.state in FINAL_STATES


class Result(models.Model):
    """What Ximilar answered for one job: exactly one per job (the one-to-one
    makes a second one impossible), the raw JSON kept beside the parsed parts.
    Of all results of one record and service, the newest is `is_current`; the
    older ones are kept as its history."""

    job = models.OneToOneField(RecordJob, on_delete=models.CASCADE, related_name="result")
    record = models.ForeignKey(Record, on_delete=models.CASCADE, related_name="results")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    service = models.CharField(max_length=40)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    raw = models.JSONField()
    best_label = models.CharField(max_length=255, blank=True)
    best_prob = models.FloatField(null=True, blank=True)
    labels = models.JSONField(default=list)
    tags = models.JSONField(default=list)
    colors = models.JSONField(default=list)
    processing_time = models.FloatField(null=True, blank=True)
    from_sandbox = models.BooleanField(default=False)
    is_current = models.BooleanField(default=False)
    note = models.CharField(max_length=300, blank=True)  # e.g. "skipped: record duplicate"

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["record", "service"],
                condition=Q(is_current=True),
                name="one_current_result_per_record_and_service",
            )
        ]

    def __str__(self):
        return f"{self.service} result for record #{self.record_id}"

    @property
    def service_label(self):
        return service_label(self.service)


class SearchAnswer(models.Model):
    """One answer of a visual search: the query record, the rank, the answer's
    `_id` and distance and the fields Ximilar returned; `record` links the
    answer to the team's own record when the `_id` is one of theirs."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="+")
    result = models.ForeignKey(Result, on_delete=models.CASCADE, related_name="answers")
    query_record = models.ForeignKey(Record, on_delete=models.CASCADE, related_name="+")
    rank = models.PositiveIntegerField()
    answer_id = models.CharField(max_length=255, blank=True)
    distance = models.FloatField(null=True, blank=True)
    fields = models.JSONField(default=dict)
    record = models.ForeignKey(
        Record, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["result", "rank"]
        indexes = [models.Index(fields=["team", "query_record"], name="subm_answer_query")]

    def __str__(self):
        return f"#{self.rank} {self.answer_id}"
