from django.conf import settings
from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models
from django.utils import timezone


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email, password, **extra):
        user = self.model(email=self.normalize_email(email), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email, password=None, **extra):
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email, password=None, **extra):
        extra.update(is_staff=True, is_superuser=True)
        return self._create_user(email, password, **extra)


class User(AbstractUser):
    """People sign in with their e-mail address; there is no separate username."""

    username = None
    email = models.EmailField("e-mail address", unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS = []

    objects = UserManager()

    def __str__(self):
        return self.email


class Team(models.Model):
    name = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)
    # Set when Ximilar refuses the token (401/403): the queue waits until the
    # token is replaced, so no further call is made with a token known to fail.
    blocked_reason = models.CharField(max_length=200, blank=True)

    def __str__(self):
        return self.name


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"


class Membership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "user"], name="one_membership_per_team")
        ]

    def __str__(self):
        return f"{self.user} in {self.team} ({self.role})"

    @property
    def can_write(self):
        return self.role != Role.VIEWER

    @property
    def can_manage(self):
        return self.role in (Role.OWNER, Role.ADMIN)


class Credential(models.Model):
    """A team's Ximilar API token. Only ciphertext is stored; `last4` is what
    the UI shows. The ciphertext is bound to the team id, so a value copied into
    another team's row does not decrypt."""

    team = models.OneToOneField(Team, on_delete=models.CASCADE, related_name="credential")
    ciphertext = models.TextField()
    last4 = models.CharField(max_length=4)
    workspace = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    # What the last "Test token" found out (account details), for the token page.
    tested_at = models.DateTimeField(null=True, blank=True)
    credits_used = models.BigIntegerField(null=True, blank=True)
    credits_limit = models.BigIntegerField(null=True, blank=True)

    def __str__(self):
        return f"set · …{self.last4}"


class Invitation(models.Model):
    """An e-mailed link to join a team. Only the SHA-256 of the link's secret is
    stored, so the table cannot be used to join; the link works once and
    expires at `expires_at`."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"invitation of {self.email} to {self.team}"

    @property
    def is_pending(self):
        return self.accepted_at is None and self.expires_at > timezone.now()
