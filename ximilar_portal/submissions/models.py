from django.conf import settings
from django.db import models

from ximilar_portal.accounts.models import Team
from ximilar_portal.records.models import Record

from .calls import service_label


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

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.service} #{self.pk}"

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
    makes a second one impossible), the raw JSON kept beside the parsed parts."""

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

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.service} result for record #{self.record_id}"

    @property
    def service_label(self):
        return service_label(self.service)
