"""The one settings file. Every value comes from the environment, with embedded
defaults that let a fresh clone run with no server installed (SQLite, a
filesystem Celery broker, local media). `PRODUCTION=true` turns the defaults
that are only safe on a laptop into start-up errors.

Every variable is listed in README.md and .env.example.
"""

import os
import secrets
import warnings
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name, default=""):
    return os.environ.get(name, default)


def env_bool(name, default=False):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name, default):
    value = os.environ.get(name)
    return int(value) if value else default


def env_float(name, default):
    value = os.environ.get(name)
    return float(value) if value else default


def env_list(name, default=""):
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


PRODUCTION = env_bool("PRODUCTION")
DEBUG = env_bool("DEBUG")
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var"))).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

_missing = [
    name
    for name in ("SECRET_KEY", "XIMILAR_TOKEN_KEYS", "ALLOWED_HOSTS", "DATABASE_URL")
    if PRODUCTION and not env_str(name)
]
if PRODUCTION and not env_str("CELERY_BROKER_URL"):
    _missing.append("CELERY_BROKER_URL")
if _missing:
    raise ImproperlyConfigured(
        "PRODUCTION=true needs these environment variables: " + ", ".join(_missing)
    )


def _development_secret(filename, make_value, what):
    """A value generated once and kept under var/, so restarts keep sessions and
    tokens readable. Only for development: production sets the variable."""
    path = VAR_DIR / filename
    if not path.exists():
        path.write_text(make_value())
        path.chmod(0o600)
        warnings.warn(
            f"{what} not set: generated a development value in {path}. "
            "Set it in the environment for any shared or production deployment.",
            stacklevel=2,
        )
    return path.read_text().strip()


SECRET_KEY = env_str("SECRET_KEY") or _development_secret(
    "secret_key", lambda: secrets.token_urlsafe(50), "SECRET_KEY"
)

# The token key ring: "key_id:base64(32 bytes)" entries separated by commas, the
# first one encrypts, all of them decrypt. Never derived from SECRET_KEY.
XIMILAR_TOKEN_KEYS = env_str("XIMILAR_TOKEN_KEYS") or _development_secret(
    "token_keys",
    lambda: "dev1:" + __import__("base64").b64encode(secrets.token_bytes(32)).decode(),
    "XIMILAR_TOKEN_KEYS",
)

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "ximilar_portal.accounts",
    "ximilar_portal.records",
    "ximilar_portal.submissions",
    "ximilar_portal.history",
    "ximilar_portal.audit",
    "ximilar_portal.ops",
    "axes",
]

MIDDLEWARE = [
    # First: a load balancer's probe needs no host check, redirect or session.
    "ximilar_portal.ops.middleware.HealthzMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "ximilar_portal.lib.security.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Around everything that may touch the database: a lock, a full storage or no
    # image decode slot in time is a 503 with Retry-After.
    "ximilar_portal.lib.faults.FaultMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "ximilar_portal.accounts.middleware.ActiveTeamMiddleware",
    "ximilar_portal.audit.middleware.AuditRequestMiddleware",
    # Last, as django-axes asks: turns a locked-out login into its lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "ximilar_portal.urls"
WSGI_APPLICATION = "ximilar_portal.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "ximilar_portal.accounts.context_processors.active_team",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'portal.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and sweeper write to one file: WAL lets readers run beside a
    # writer, IMMEDIATE transactions queue writers instead of failing them.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # A file, not memory, so a Celery worker process can share the test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-portal.sqlite3")}

# Seconds a web request waits for a database lock (SQLite busy timeout, PostgreSQL
# lock_timeout) before answering 503 with Retry-After; workers keep the longer wait.
DATABASE_WEB_LOCK_TIMEOUT = env_float("DATABASE_WEB_LOCK_TIMEOUT", 5.0)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "records:list"
LOGOUT_REDIRECT_URL = "accounts:login"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Static and media --------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns about a missing folder
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "whitenoise.storage.CompressedStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = DEBUG

UPLOAD_MAX_BYTES = env_int("UPLOAD_MAX_BYTES", 20 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
IMAGE_MAX_PIXELS = env_int("IMAGE_MAX_PIXELS", 64_000_000)
# Full image decodes one process runs at once (each up to IMAGE_MAX_PIXELS × 4 bytes),
# and how long a web request waits for one before answering 503 with Retry-After.
IMAGE_DECODE_CONCURRENCY = env_int("IMAGE_DECODE_CONCURRENCY", 2)
IMAGE_DECODE_WAIT = env_float("IMAGE_DECODE_WAIT", 15.0)
# Records: files one upload batch takes, largest import file, URL preview fetch time.
UPLOAD_BATCH_MAX_FILES = env_int("UPLOAD_BATCH_MAX_FILES", 1000)
IMPORT_MAX_BYTES = env_int("IMPORT_MAX_BYTES", 50 * 1024 * 1024)
URL_FETCH_TIMEOUT = env_float("URL_FETCH_TIMEOUT", 10.0)
# Media on S3-compatible storage (django-storages) when MEDIA_STORAGE=s3, so
# workers on other machines read the same bytes; local files otherwise.
MEDIA_STORAGE = env_str("MEDIA_STORAGE", "local")
if MEDIA_STORAGE == "s3":
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env_str("AWS_STORAGE_BUCKET_NAME"),
            "endpoint_url": env_str("AWS_S3_ENDPOINT_URL") or None,
            "region_name": env_str("AWS_S3_REGION_NAME") or None,
            "access_key": env_str("AWS_ACCESS_KEY_ID") or None,
            "secret_key": env_str("AWS_SECRET_ACCESS_KEY") or None,
            "default_acl": None,
            "querystring_auth": True,
            "file_overwrite": False,
        },
    }
    if not env_str("AWS_STORAGE_BUCKET_NAME"):
        raise ImproperlyConfigured("MEDIA_STORAGE=s3 needs AWS_STORAGE_BUCKET_NAME.")

# --- Ximilar ------------------------------------------------------------------
XIMILAR_API_URL = env_str("XIMILAR_API_URL", "https://api.ximilar.com/")
XIMILAR_CONNECT_TIMEOUT = env_float("XIMILAR_CONNECT_TIMEOUT", 5.0)
XIMILAR_READ_TIMEOUT = env_float("XIMILAR_READ_TIMEOUT", 90.0)
XIMILAR_MAX_ATTEMPTS = env_int("XIMILAR_MAX_ATTEMPTS", 6)
XIMILAR_BACKOFF_CAP = env_float("XIMILAR_BACKOFF_CAP", 300.0)
XIMILAR_CONCURRENCY = env_int("XIMILAR_CONCURRENCY", 4)
# A claim's lease: renewed every third of it while its worker lives, so a dead
# worker's records come free within about this long, whatever the call's length.
XIMILAR_LEASE_SECONDS = env_float("XIMILAR_LEASE_SECONDS", 30.0)
# A record still refused with 429 this long after it was submitted fails.
XIMILAR_RECORD_DEADLINE_SECONDS = env_float("XIMILAR_RECORD_DEADLINE_SECONDS", 86400.0)
# Engine: requests per second per team (token), shared by all workers (0 = no limit),
# and how long a submission with ready records may sit still before the sweeper re-enqueues it.
XIMILAR_RATE_LIMIT = env_float("XIMILAR_RATE_LIMIT", 5.0)
XIMILAR_SWEEP_GRACE_SECONDS = env_float("XIMILAR_SWEEP_GRACE_SECONDS", 60.0)

# --- Celery ---------------------------------------------------------------------
# The database is the source of truth for every record's state; the broker only
# carries ids. No result backend: nothing reads task results.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
# Files that the filesystem broker could not read as messages (None with another broker).
BROKER_QUARANTINE_DIR = None
if CELERY_BROKER_URL.startswith("filesystem://"):
    if PRODUCTION and not env_bool("ALLOW_FILESYSTEM_BROKER"):
        raise ImproperlyConfigured(
            "PRODUCTION=true refuses CELERY_BROKER_URL=filesystem://: the embedded broker "
            "serves one machine from local files. Use redis://... or amqp://..., or set "
            "ALLOW_FILESYSTEM_BROKER=true to run it anyway."
        )
    _broker_dir = Path(env_str("CELERY_BROKER_FOLDER", str(VAR_DIR / "broker")))
    BROKER_QUARANTINE_DIR = _broker_dir / "quarantine"
    # filesystem:// is the portal's own transport (registered in ximilar_portal/celery.py).
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir),
        "data_folder_out": str(_broker_dir),
        "control_folder": str(_broker_dir / "control"),
        "quarantine_folder": str(BROKER_QUARANTINE_DIR),
        # Where earlier versions kept every processed message: emptied at start.
        "processed_folder": str(_broker_dir / "processed"),
        "polling_interval": 0.1,  # kombu's default of 1 s delays every hand-over
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_PUBLISH_RETRY = True
CELERY_TIMEZONE = TIME_ZONE
CELERY_SWEEP_SECONDS = env_float("CELERY_SWEEP_SECONDS", 15.0)
HISTORY_SYNC_SECONDS = env_float("HISTORY_SYNC_SECONDS", 30.0)
# Queues by kind of work, each read by its own worker processes (Procfile).
# CELERY_QUEUE names the engine's queue and prefixes the others, so separate
# deployments or test runs can share one broker.
CELERY_QUEUE = env_str("CELERY_QUEUE", "celery")
WORK_QUEUES = {
    "engine": CELERY_QUEUE,
    "heavy": f"{CELERY_QUEUE}-heavy",
    "periodic": f"{CELERY_QUEUE}-periodic",
}
CELERY_TASK_DEFAULT_QUEUE = WORK_QUEUES["engine"]
# Declared, so a worker started without -Q reads all three (one process does it all).
CELERY_TASK_QUEUES = [Queue(name, routing_key=name) for name in WORK_QUEUES.values()]
# Health (/healthz): beat sends a heartbeat to every work queue this often; one
# older than HEALTH_HEARTBEAT_MAX_AGE says that queue (or beat) has no live worker.
HEALTH_HEARTBEAT_SECONDS = env_float("HEALTH_HEARTBEAT_SECONDS", 15.0)
HEALTH_HEARTBEAT_MAX_AGE = env_float("HEALTH_HEARTBEAT_MAX_AGE", 4 * HEALTH_HEARTBEAT_SECONDS)
HEALTH_BROKER_TIMEOUT = env_float("HEALTH_BROKER_TIMEOUT", 2.0)
# Background work (previews, imports, exports) handed to the broker or held by a
# worker this long without moving is handed over again by its app's sweep; a worker
# holds a piece of work for BACKGROUND_LEASE_SECONDS, renewed while it runs.
BACKGROUND_SWEEP_GRACE_SECONDS = env_float("BACKGROUND_SWEEP_GRACE_SECONDS", 120.0)
BACKGROUND_LEASE_SECONDS = env_float("BACKGROUND_LEASE_SECONDS", 300.0)
# Background exports: how many of one team's run at once (the others wait their
# turn), and how long a running one may go without a sign of life from its
# worker before the sweeper hands it out again.
EXPORT_MAX_RUNNING_PER_TEAM = env_int("EXPORT_MAX_RUNNING_PER_TEAM", 2)
EXPORT_STALE_SECONDS = env_float("EXPORT_STALE_SECONDS", 120.0)
CELERY_BEAT_SCHEDULE = {
    "sweep": {"task": "submissions.sweep", "schedule": CELERY_SWEEP_SECONDS},
    "records-sweep": {"task": "records.sweep", "schedule": CELERY_SWEEP_SECONDS},
    # Waiting exports started, lost or abandoned running ones handed out again.
    "exports-sweep": {"task": "history.exports_sweep", "schedule": CELERY_SWEEP_SECONDS},
    # Summaries of jobs moved without a refresh call (see history.services).
    "history-sync": {"task": "history.sync", "schedule": HISTORY_SYNC_SECONDS},
    # One per queue; a heartbeat nobody ran in time is dropped, not run late.
    **{
        f"ops-heartbeat-{kind}": {
            "task": "ops.heartbeat",
            "schedule": HEALTH_HEARTBEAT_SECONDS,
            "args": (kind,),
            "options": {"queue": queue, "expires": HEALTH_HEARTBEAT_MAX_AGE},
        }
        for kind, queue in WORK_QUEUES.items()
    },
}
HEAVY_TASKS = [
    "history.run_export",
    "records.import_check",
    "records.import_commit",
    "records.fetch_preview",
    "records.fetch_batch_previews",
]
# Every task celery beat sends is periodic work, whatever it is named (the
# heartbeats name their queue themselves: each checks a queue has a worker).
CELERY_TASK_ROUTES = {
    **{name: {"queue": WORK_QUEUES["heavy"]} for name in HEAVY_TASKS},
    **{
        entry["task"]: {"queue": WORK_QUEUES["periodic"]}
        for entry in CELERY_BEAT_SCHEDULE.values()
        if "queue" not in entry.get("options", {})
    },
}

# --- E-mail and security ---------------------------------------------------------
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "portal@localhost")
ADMINS = [("Admin", a) for a in env_list("ADMINS")]
# SMTP, used when EMAIL_BACKEND=django.core.mail.backends.smtp.EmailBackend.
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL")
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
# Team invitations: a link that works once and expires after this many days.
INVITATION_MAX_AGE_DAYS = env_int("INVITATION_MAX_AGE_DAYS", 7)
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_TIMEOUT", 60 * 60 * 24)

# Login throttling (django-axes): after LOGIN_FAILURE_LIMIT wrong passwords for
# one address from one IP, that pair is locked out for LOGIN_LOCKOUT_MINUTES.
# The pair, not the address alone, so strangers cannot lock a person out.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = env_int("LOGIN_LOCKOUT_MINUTES", 15) / 60  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# The login form's field is "username" even though people sign in with an e-mail.
AXES_USERNAME_FORM_FIELD = "username"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/lockout.html"
AXES_VERBOSE = False

# Error e-mails and debug pages hide token-looking variables in every frame.
DEFAULT_EXCEPTION_REPORTER_FILTER = (
    "ximilar_portal.accounts.error_reports.PortalExceptionReporterFilter"
)
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 14 * 24 * 3600)
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # "__Host-" cookies are refused by browsers unless secure, host-only, path "/".
    SESSION_COOKIE_NAME = "__Host-sessionid"
    CSRF_COOKIE_NAME = "__Host-csrftoken"
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    # urllib3 logs request lines at DEBUG; headers are never logged, but keep
    # third-party chatter down.
    # axes logs every successful login at INFO ("Deleted 0 failed login attempts").
    "loggers": {"urllib3": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}
