"""Gatehouse settings: everything comes from the environment, with embedded defaults.

Without DATABASE_URL the gateway runs on SQLite; without REDIS_URL it uses in-process fallbacks (local
memory cache, eager Celery, in-memory channel layer). Without ANTHROPIC_API_KEY, `scripts/serve`
starts the built-in fake upstream and points ANTHROPIC_BASE_URL at it.
"""

from pathlib import Path

from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from gateway.serve import DEFAULT_WORKER_CONNECTIONS, WORKER_CONNECTIONS_ENV

from .env import database_from_url, env_bool, env_float, env_int, env_list, env_names, env_str, env_url, env_usd_nano
from .logging import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", False)
# The fallback is for the embedded mode only; docker-compose refuses to start without SECRET_KEY.
SECRET_KEY = env_str("SECRET_KEY", "gatehouse-insecure-development-key-change-me")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",  # `runserver` serves ASGI (plain WSGI runserver would buffer streams)
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from here (no CDN)
    "accounts",
    "billing",
    "conversations",
    "gateway",
    "gateway.batches",
    "management",
]

# The full stack serves the admin and the dashboard. API paths (gateway/api/registry.py) skip it:
# under ASGI every MiddlewareMixin costs two sync/async thread hops per request, and the API needs
# none of sessions, CSRF or messages (config/asgi.py).
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

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
                "accounts.dashboard.navigation",
                "billing.dashboard.alerts",
            ],
        },
    },
]

DATABASE_URL = env_url("DATABASE_URL", schemes=("postgres", "postgresql", "sqlite"))
if DATABASE_URL:
    DATABASES = {"default": database_from_url("DATABASE_URL", DATABASE_URL)}
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
DATABASES["default"]["CONN_MAX_AGE"] = env_int("CONN_MAX_AGE", 600, minimum=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Concurrent writers (gateway + celery) on SQLite: wait for the lock instead of failing.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    # A file, not the in-memory default: end-to-end tests share the test database with a server process.
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "var" / "test.sqlite3")}
IS_POSTGRES = DATABASES["default"]["ENGINE"].endswith("postgresql")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_url("REDIS_URL", schemes=("redis", "rediss", "unix"))
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Celery: Redis as broker; without Redis, tasks run eagerly in-process (embedded mode only).
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# The schedule is in UTC whatever TIME_ZONE says: usage days and budget periods are UTC days.
CELERY_TIMEZONE = "UTC"
# Beat in production; billing/scheduler.py runs the same entries in-process in the embedded mode.
# `expires` drops runs queued while no worker was up instead of replaying them back to back.
CELERY_BEAT_SCHEDULE: dict = {
    "usage-rollup": {"task": "billing.tasks.usage_rollup", "schedule": crontab(), "options": {"expires": 50}},
    # At half past, not on the hour: the window's events start at midnight but its debits at `since`, so
    # at 00:00 a debit posted a few seconds later for the last events of the day before reads as drift.
    "usage-reconcile": {"task": "billing.tasks.usage_reconcile", "schedule": crontab(minute=30),
                        "options": {"expires": 50 * 60}},
    "conversations-expire": {"task": "conversations.tasks.conversations_expire", "schedule": crontab(minute="*/10"),
                             "options": {"expires": 9 * 60}},
    # Auto-recharge also starts from the request path (billing/autorecharge.py); this catches the rest.
    "auto-recharge-sweep": {"task": "billing.tasks.auto_recharge_sweep", "schedule": crontab(),
                            "options": {"expires": 50}},
    # Just after the month ends: its ledger is closed, every later entry belongs to the new month.
    "statements-monthly": {"task": "billing.tasks.statements_monthly",
                           "schedule": crontab(minute=10, hour=0, day_of_month=1), "options": {"expires": 23 * 60 * 60}},
    "alert-deliveries-due": {"task": "billing.tasks.alert_deliveries_due", "schedule": crontab(),
                             "options": {"expires": 50}},
    # PostgreSQL's monthly partitions of usage rows and request logs: months ahead, retention (no-ops on SQLite).
    "usage-partitions": {"task": "billing.tasks.usage_partitions_maintain", "schedule": crontab(minute=15),
                         "options": {"expires": 50 * 60}},
    "request-log-partitions": {"task": "conversations.tasks.request_log_partitions_maintain",
                               "schedule": crontab(minute=20), "options": {"expires": 50 * 60}},
}
# Beat's entries for batches (config/celery.py adds them to beat's schedule). In the embedded mode the
# gateway's event loop does the same work itself (gateway/batches/executor.sweep), not the billing scheduler:
# it would run a resumed batch on its thread for the batch's whole length.
BATCH_BEAT_SCHEDULE: dict = {
    # Batches whose worker died are taken up again once their lease lapsed.
    "batches-resume": {"task": "gateway.batches.tasks.batches_resume", "schedule": crontab(),
                       "options": {"expires": 50}},
    "batches-expire": {"task": "gateway.batches.tasks.batches_expire", "schedule": crontab(minute=20),
                       "options": {"expires": 50 * 60}},
}

# Batches (gateway/batches/). A batch runs for minutes or hours: on a queue of its own, so that the billing
# tasks of the default queue never wait behind one (`celery -A config worker -Q celery,batches`).
BATCH_QUEUE = env_str("BATCH_QUEUE", "batches")
CELERY_TASK_ROUTES = {"gateway.batches.tasks.batch_run": {"queue": BATCH_QUEUE}}
BATCH_CONCURRENCY = env_int("BATCH_CONCURRENCY", 4, minimum=1)  # items of one batch in flight at once
BATCH_FILE_MAX_BYTES = env_int("BATCH_FILE_MAX_BYTES", 200 * 1024 * 1024, minimum=1)  # OpenAI's limit
BATCH_RETENTION_DAYS = env_int("BATCH_RETENTION_DAYS", 29, minimum=1)  # results and files, as Anthropic's
# Batch files go through Django's storage API: a directory by default; BATCH_STORAGE_BACKEND names any
# storage class (e.g. storages.backends.s3.S3Storage, whose settings come from its own AWS_* variables).
BATCH_STORAGE_BACKEND = env_str("BATCH_STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage")
BATCH_STORAGE_DIR = env_str("BATCH_STORAGE_DIR", str(BASE_DIR / "var" / "batch-files"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "batches": {"BACKEND": BATCH_STORAGE_BACKEND,
                "OPTIONS": {"location": BATCH_STORAGE_DIR}
                if BATCH_STORAGE_BACKEND == "django.core.files.storage.FileSystemStorage" else {}},
}

# Usage rows and request logs are partitioned by month on PostgreSQL (billing/services.py
# usage_partitions_maintain): months created this far ahead, request-id claims kept this long (the window
# in which a second record of one request id is refused, billing migration 0010), and usage months older
# than USAGE_RETENTION_DAYS dropped once billed (0: kept forever). Rollups and buckets are never dropped,
# so the dashboard and usage APIs keep showing those months. At least 31 days when set: the reconciliation
# compares the last 7 days with their rows, and a statement lists the rows its month's debits billed.
USAGE_PARTITIONS_AHEAD = env_int("USAGE_PARTITIONS_AHEAD", 3, minimum=1)
USAGE_CLAIM_HOURS = env_int("USAGE_CLAIM_HOURS", 24, minimum=1)
USAGE_RETENTION_DAYS = env_int("USAGE_RETENTION_DAYS", 0, minimum=0)
if 0 < USAGE_RETENTION_DAYS < 31:
    raise ImproperlyConfigured(f"USAGE_RETENTION_DAYS={USAGE_RETENTION_DAYS}: 0 (keep) or at least 31 days")

# Stripe top-ups and auto-recharge (billing/payments.py). Without STRIPE_SECRET_KEY the Billing page says
# top-ups are not configured; everything else works. STRIPE_API_BASE points the library at another
# server (the fake, fakes/stripe.py); empty: Stripe's own.
STRIPE_SECRET_KEY = env_str("STRIPE_SECRET_KEY")
STRIPE_WEBHOOK_SECRET = env_str("STRIPE_WEBHOOK_SECRET")
STRIPE_API_BASE = env_str("STRIPE_API_BASE")
STRIPE_WEBHOOK_TOLERANCE = env_int("STRIPE_WEBHOOK_TOLERANCE", 300, minimum=1)  # seconds a signature stays valid
TOPUP_MIN_NANO = env_usd_nano("TOPUP_MIN_USD", "5")
TOPUP_MAX_NANO = env_usd_nano("TOPUP_MAX_USD", "1000")
if TOPUP_MIN_NANO % 10**7 or TOPUP_MAX_NANO % 10**7 or not 50 * 10**7 <= TOPUP_MIN_NANO <= TOPUP_MAX_NANO:
    raise ImproperlyConfigured("TOPUP_MIN_USD and TOPUP_MAX_USD must be whole cents, at least 0.50, min <= max")

# Messages live in the server-side session, not a cookie: the admin shows a new key's secret in one.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"

SESSION_COOKIE_HTTPONLY = True
# Secure cookies outside DEBUG; browsers keep them on http://localhost and 127.0.0.1 too, so the
# embedded mode still works. SECURE_COOKIES=false is for a plain-HTTP deployment on another host.
SESSION_COOKIE_SECURE = not DEBUG and env_bool("SECURE_COOKIES", True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# The self-serve dashboard (accounts, billing, conversations and gateway views under /dashboard/).
LOGIN_URL = "login"
AUTHENTICATION_BACKENDS = ["accounts.backends.EmailBackend"]
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"
# Prepaid credit a new sign-up's workspace starts with, so a customer can try the API without an operator
# (0: none; the workspace then needs credit from an operator before its first request).
SIGNUP_CREDIT_NANO = env_usd_nano("SIGNUP_CREDIT_USD", "5")
# The dashboard warns every member that the balance is low once less than this is left before requests are
# refused (the balance plus the credit limit).
DASHBOARD_LOW_BALANCE_NANO = env_usd_nano("DASHBOARD_LOW_BALANCE_USD", "1")
# Failed logins per username and per client address within the window before further tries are refused.
LOGIN_ATTEMPTS = env_int("LOGIN_ATTEMPTS", 5, minimum=1)
LOGIN_ATTEMPTS_WINDOW_SECONDS = env_int("LOGIN_ATTEMPTS_WINDOW_SECONDS", 300, minimum=1)
# Password resets and invitations: printed on the console unless an SMTP server is configured.
EMAIL_HOST = env_str("EMAIL_HOST", "")
EMAIL_BACKEND = ("django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST
                 else "django.core.mail.backends.console.EmailBackend")
EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Gatehouse <noreply@localhost>")

# The gateway checks request sizes itself (GATEWAY_MAX_BODY_BYTES) to answer in the protocol's error shape.
DATA_UPLOAD_MAX_MEMORY_SIZE = None

LOG_FORMAT = env_str("LOG_FORMAT", "text")
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, got {LOG_FORMAT!r}")
LOGGING = logging_config(log_format=LOG_FORMAT, level=env_str("LOG_LEVEL", "WARNING"))

# --- Management API (/api/v1/, Django REST framework) -----------------------------------------------
MANAGEMENT_PAGE_SIZE = env_int("MANAGEMENT_PAGE_SIZE", 50, minimum=1)
MANAGEMENT_MAX_PAGE_SIZE = env_int("MANAGEMENT_MAX_PAGE_SIZE", 500, minimum=1)
# How long the answer to a POST with an Idempotency-Key is kept for its retries.
MANAGEMENT_IDEMPOTENCY_HOURS = env_int("MANAGEMENT_IDEMPOTENCY_HOURS", 24, minimum=1)
REST_FRAMEWORK = {
    # Token authentication only: no session, so CSRF never applies to the API.
    "DEFAULT_AUTHENTICATION_CLASSES": ["management.authentication.ManagementCredentialAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "management.exceptions.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Gatehouse management API",
    "DESCRIPTION": "Tenants, keys, credit, catalog, providers, usage and the audit log (docs/management-api.md).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "OAS_VERSION": "3.1.0",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    # Fields of one name with different choices (the ledger's and a provider's "kind"): named, not numbered.
    "ENUM_NAME_OVERRIDES": {
        "LedgerKindEnum": "billing.models.LedgerEntry.Kind",
        "CredentialKindEnum": ["operator", "admin"],
        "TenantStatusEnum": "accounts.models.Tenant.Status",
        "UsageStatusEnum": "billing.models.UsageEvent.Status",
        "ProviderKindEnum": "gateway.models.provider_choices",
    },
}

# --- Gateway ---------------------------------------------------------------------------------------
ANTHROPIC_API_KEY = env_str("ANTHROPIC_API_KEY", "")
ANTHROPIC_BASE_URL = env_url("ANTHROPIC_BASE_URL", schemes=("http", "https"))
UPSTREAM_TIMEOUT_SECONDS = env_float("UPSTREAM_TIMEOUT_SECONDS", 600.0, minimum=1.0)
UPSTREAM_CONNECT_TIMEOUT_SECONDS = env_float("UPSTREAM_CONNECT_TIMEOUT_SECONDS", 10.0, minimum=0.1)
# Until a stream's first event, for models without their own first_token_timeout_seconds: an upstream that
# accepts and never answers is given up (504, retried or fallen back) long before UPSTREAM_TIMEOUT_SECONDS.
UPSTREAM_FIRST_BYTE_TIMEOUT_SECONDS = env_float("UPSTREAM_FIRST_BYTE_TIMEOUT_SECONDS", 60.0, minimum=0.1)
# Connections one worker accepts (gateway/serve.py passes it to granian as --backpressure and exports the
# value it settled on, lower when the open-files limit cannot hold it).
GATEWAY_WORKER_CONNECTIONS = env_int(WORKER_CONNECTIONS_ENV, DEFAULT_WORKER_CONNECTIONS, minimum=1)
# Per provider credential and process. A stream holds its upstream connection for its whole life, so a pool
# smaller than the connections the worker accepts queues streams behind whole streams: with 512 (the old
# default) the 513th concurrent stream waited for one to end (issue 18: TTFB p50 5.5 s at 1,000 concurrent
# 5 s streams). A request holds one upstream connection at a time, so a pool as large as the worker's
# connections never queues; set it lower only to protect an upstream. /health answers 503 once every
# connection of a pool has been in use for UPSTREAM_POOL_SATURATED_SECONDS.
UPSTREAM_MAX_CONNECTIONS = env_int("UPSTREAM_MAX_CONNECTIONS", GATEWAY_WORKER_CONNECTIONS, minimum=1)
UPSTREAM_POOL_SATURATED_SECONDS = env_float("UPSTREAM_POOL_SATURATED_SECONDS", 5.0, minimum=0.0)
# Upstream credentials are encrypted with the first of these and decrypted with any (common/crypto.py).
GATEWAY_ENCRYPTION_KEYS = env_list("GATEWAY_ENCRYPTION_KEYS", [SECRET_KEY])
# Routing (gateway/routing.py): retries of one deployment before the next is tried, and the longest
# wait between them (a longer retry-after skips to the next deployment at once).
UPSTREAM_RETRIES = env_int("UPSTREAM_RETRIES", 1, minimum=0)
UPSTREAM_MAX_BACKOFF_SECONDS = env_float("UPSTREAM_MAX_BACKOFF_SECONDS", 2.0, minimum=0.0)
# `anthropic-beta` flags native Anthropic clients may not send upstream (a 400 naming the flag). Every other
# flag is forwarded, and the upstream judges what it knows: clients such as Claude Code send new betas with
# each release. Block the ones that change what a request costs if you do not want them (e.g. the 1M-token
# context window, context-1m-2025-08-07).
ANTHROPIC_BLOCKED_BETAS = env_names("ANTHROPIC_BLOCKED_BETAS", [], pattern=r"[a-z0-9][a-z0-9.-]*",
                                    example="context-1m-2025-08-07")
# Anthropic's own request limit is 32 MB; base64 images make bodies large.
GATEWAY_MAX_BODY_BYTES = env_int("GATEWAY_MAX_BODY_BYTES", 32 * 1024 * 1024, minimum=1024)
# How long a client may take to send a whole request body before the gateway stops reading and answers 408.
GATEWAY_BODY_TIMEOUT_SECONDS = env_float("GATEWAY_BODY_TIMEOUT_SECONDS", 30.0, minimum=0.1)
# Image and document URLs a client asks the upstream to fetch (gateway/url_policy.py): http(s) to public
# hosts only. Hosts listed here are allowed anyway (".example.com": every subdomain); ALLOW_PRIVATE lifts
# the private-address and local-name rules for upstreams outside the operator's network.
GATEWAY_URL_ALLOWED_HOSTS = [host.lower() for host in env_list("GATEWAY_URL_ALLOWED_HOSTS", [])]
GATEWAY_URL_ALLOW_PRIVATE = env_bool("GATEWAY_URL_ALLOW_PRIVATE", False)
# How long an authenticated key (and the model catalog) is trusted before the database is asked
# again; a revocation takes effect on every process within this time.
GATEWAY_AUTH_CACHE_SECONDS = env_float("GATEWAY_AUTH_CACHE_SECONDS", 1.0, minimum=0.0)
# Failed API authentications per client address (per process) within the window, after which the
# address's failures are 429s with retry-after instead of 401s (accounts.selectors._AuthFailures).
GATEWAY_AUTH_FAILURES = env_int("GATEWAY_AUTH_FAILURES", 20, minimum=1)
GATEWAY_AUTH_FAILURES_WINDOW_SECONDS = env_int("GATEWAY_AUTH_FAILURES_WINDOW_SECONDS", 60, minimum=1)
GATEWAY_CATALOG_CACHE_SECONDS = env_float("GATEWAY_CATALOG_CACHE_SECONDS", 5.0, minimum=0.0)
# How long a cached key or catalog is still used after its refresh failed because the database is
# unreachable: a short outage degrades to the last known state instead of failing every request.
GATEWAY_STALE_GRACE_SECONDS = env_float("GATEWAY_STALE_GRACE_SECONDS", 60.0, minimum=0.0)
# Usage rows the database cannot take wait in a spool (gateway/metering/spool.py): a Redis stream with REDIS_URL,
# else (and while Redis fails too) files in this directory, which must survive a restart. Each process
# replays it every GATEWAY_USAGE_SPOOL_REPLAY_SECONDS; /health is 503 while it holds more than
# GATEWAY_USAGE_SPOOL_MAX entries.
GATEWAY_USAGE_SPOOL_DIR = env_str("GATEWAY_USAGE_SPOOL_DIR", str(BASE_DIR / "var" / "usage-spool"))
GATEWAY_USAGE_SPOOL_REPLAY_SECONDS = env_float("GATEWAY_USAGE_SPOOL_REPLAY_SECONDS", 1.0, minimum=0.05)
GATEWAY_USAGE_SPOOL_MAX = env_int("GATEWAY_USAGE_SPOOL_MAX", 100_000, minimum=1)
# Namespace of the gateway's rate-limit, budget and balance counters and deployment cooldowns in Redis.
GATEWAY_REDIS_PREFIX = env_str("GATEWAY_REDIS_PREFIX", "gh:")
# How old a process's view of the deployment cooldowns in Redis (gateway/cooldowns.py) may be when it
# routes a request: a cooldown one process starts reaches every other within this time.
GATEWAY_COOLDOWN_SYNC_SECONDS = env_float("GATEWAY_COOLDOWN_SYNC_SECONDS", 0.5, minimum=0.01)
# Thread affinity (gateway/affinity.py): threads remembered per process without Redis, and how long an idle
# thread keeps its target (Anthropic's longest prompt-cache lifetime is an hour).
GATEWAY_AFFINITY_MAX_ENTRIES = env_int("GATEWAY_AFFINITY_MAX_ENTRIES", 50_000, minimum=1)
GATEWAY_AFFINITY_TTL_SECONDS = env_int("GATEWAY_AFFINITY_TTL_SECONDS", 3600, minimum=1)
# The models-and-prices list at /pricing/ without signing in (the dashboard's Models page always has it).
PUBLIC_PRICES = env_bool("PUBLIC_PRICES", False)
# Alert webhooks (billing/alerts.py): how often a failed delivery is retried, the first wait (doubling
# each time), and each POST's timeout. Plain http:// is refused except to loopback addresses in DEBUG.
ALERT_WEBHOOK_RETRIES = env_int("ALERT_WEBHOOK_RETRIES", 5, minimum=0)
ALERT_WEBHOOK_BACKOFF_SECONDS = env_float("ALERT_WEBHOOK_BACKOFF_SECONDS", 30.0, minimum=0.0)
ALERT_WEBHOOK_TIMEOUT_SECONDS = env_float("ALERT_WEBHOOK_TIMEOUT_SECONDS", 10.0, minimum=0.1)

# Prometheus metrics (defined in common/metrics.py, exposed by gateway/metrics.py). GET /metrics is off
# (404) unless METRICS_TOKEN is set, and then needs `Authorization: Bearer <METRICS_TOKEN>`. With several
# worker processes the launcher points PROMETHEUS_MULTIPROC_DIR at a fresh directory. A tenant label multiplies every per-request series by
# the number of tenants: off unless asked for.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
METRICS_TENANT_LABEL = env_bool("METRICS_TENANT_LABEL", False)
# A Celery worker serves its own task metrics on this port (0: off); see gateway/metrics.py.
CELERY_METRICS_PORT = env_int("CELERY_METRICS_PORT", 0, minimum=0)
