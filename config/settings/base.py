"""Settings shared by every environment. Values come from ``config.env`` only."""

import re
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from redis.connection import parse_url

from config.env import env

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = BASE_DIR / "var"

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="django-insecure-development-only-key")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "core",
    "apikeys",
    "conversations",
    "messaging",
    "webhooks",
    "providers",
]

MIDDLEWARE = [
    "core.middleware.RequestLogMiddleware",
    # A request to the REST API (/api/...) goes on without BACK_OFFICE_MIDDLEWARE (core/middleware.py).
    "core.middleware.ApiLaneMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "core.middleware.RequestSizeLimitMiddleware",
    "core.middleware.JsonErrorMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
#: What only the back office (the admin, static files) needs: static files, sessions, CSRF (API clients
#: present API keys, never cookies), the logged-in user and the admin's flash messages.
BACK_OFFICE_MIDDLEWARE = [
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
# Every API path answers with or without a trailing slash itself; never redirect.
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


#: Bounds on every wait for PostgreSQL (docs/OPERATIONS.md#database-timeouts). Seconds; 0 turns one off.
DB_CONNECT_TIMEOUT = env.float("DB_CONNECT_TIMEOUT", 1.0, maximum=60.0)
DB_QUERY_TIMEOUT = env.float("DB_QUERY_TIMEOUT", 1.5, maximum=3600.0)
DB_STATEMENT_TIMEOUT = env.float("DB_STATEMENT_TIMEOUT", 1.0, maximum=3600.0)
DB_LOCK_TIMEOUT = env.float("DB_LOCK_TIMEOUT", 0.5, maximum=3600.0)
DB_IDLE_IN_TRANSACTION_TIMEOUT = env.float("DB_IDLE_IN_TRANSACTION_TIMEOUT", 10.0, maximum=3600.0)
DB_KEEPALIVES_IDLE = env.int("DB_KEEPALIVES_IDLE", 5, minimum=1)
DB_KEEPALIVES_INTERVAL = env.int("DB_KEEPALIVES_INTERVAL", 2, minimum=1)
DB_KEEPALIVES_COUNT = env.int("DB_KEEPALIVES_COUNT", 3, minimum=1)
#: The request hot paths' statements are prepared on each connection (core/prepared.py). Off for a
#: connection pooler in transaction mode that does not track prepared statements (docs/OPERATIONS.md).
DB_PREPARED_STATEMENTS = env.bool("DB_PREPARED_STATEMENTS", True)
#: A send's recorded outcome (sent, its provider id) commits without waiting for its WAL flush: a
#: database crash may lose the last fraction of a second of outcomes, whose messages the outbox then
#: reconciles through their idempotency tokens. The stored message itself always waits for its flush
#: (docs/OPERATIONS.md#outcomes-committed-asynchronously).
DB_ASYNC_OUTCOME_COMMIT = env.bool("DB_ASYNC_OUTCOME_COMMIT", True)
#: A repeated inbound message's record (the ``duplicate`` event naming the message it repeats) commits
#: without waiting for its WAL flush: a database crash may lose the last fraction of a second of such
#: records, never a message, its first delivery or the claim that answers the next repeat
#: (docs/OPERATIONS.md#duplicates-committed-asynchronously).
DB_ASYNC_DUPLICATE_COMMIT = env.bool("DB_ASYNC_DUPLICATE_COMMIT", True)
#: psycopg's ``prepare_threshold`` when they are on: no statement reaches it, so psycopg prepares only
#: what core/prepared.py asks for (Django's own cursors bind on the client and never prepare).
PREPARE_EXPLICIT_ONLY = 2**31 - 1
#: Retry-After on a 503 database_unavailable answer.
DATABASE_RETRY_AFTER_SECONDS = env.int("DATABASE_RETRY_AFTER_SECONDS", 5, minimum=1)
if DB_QUERY_TIMEOUT and DB_STATEMENT_TIMEOUT and DB_STATEMENT_TIMEOUT >= DB_QUERY_TIMEOUT:
    raise ImproperlyConfigured(
        f"DB_STATEMENT_TIMEOUT ({DB_STATEMENT_TIMEOUT:g}) must be shorter than DB_QUERY_TIMEOUT "
        f"({DB_QUERY_TIMEOUT:g}): the server should end a slow statement before the client gives up on it."
    )


def postgresql_options(
    *,
    connect_timeout: float,
    query_timeout: float,
    statement_timeout: float,
    lock_timeout: float,
    idle_in_transaction_timeout: float,
    keepalives_idle: int,
    keepalives_interval: int,
    keepalives_count: int,
) -> dict:
    """OPTIONS for core.postgresql: client-side bounds, server-side timeouts, TCP keepalives."""
    server = {
        "statement_timeout": statement_timeout,
        "lock_timeout": lock_timeout,
        "idle_in_transaction_session_timeout": idle_in_transaction_timeout,
    }
    return {
        # Enforced by core.postgresql on the client, whether or not the server answers.
        "client_connect_timeout": connect_timeout,
        "client_query_timeout": query_timeout,
        # libpq's own connect_timeout (whole seconds, at least 2): a second guard behind the one above.
        "connect_timeout": max(2, int(connect_timeout + 0.999)) if connect_timeout else 0,
        # Enforced by the server, per session.
        "options": " ".join(f"-c {name}={round(seconds * 1000)}" for name, seconds in server.items()),
        # A peer that vanished (host down, cable cut) is noticed on an idle connection by keepalives, and
        # on a busy one by tcp_user_timeout (unacknowledged data), instead of after the kernel's ~15 minutes.
        "keepalives": 1,
        "keepalives_idle": keepalives_idle,
        "keepalives_interval": keepalives_interval,
        "keepalives_count": keepalives_count,
        "tcp_user_timeout": round(query_timeout * 1000) if query_timeout else 0,
    }


def _database_config() -> dict:
    url = env.str("DATABASE_URL")
    if url is None:
        VAR_DIR.mkdir(exist_ok=True)
        # Writers take the lock when the transaction starts (IMMEDIATE) and wait for it rather than
        # failing with "database is locked" half-way through a transaction.
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "db.sqlite3",
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
        }
    try:
        config: dict = dict(dj_database_url.parse(url, conn_max_age=env.int("DB_CONN_MAX_AGE", 600, minimum=0)))
    except ValueError as exc:
        raise ImproperlyConfigured(f"DATABASE_URL is not a valid database URL: {exc}") from None
    config["CONN_HEALTH_CHECKS"] = True
    if config["ENGINE"] == "django.db.backends.postgresql":
        config["ENGINE"] = "core.postgresql"
        config["OPTIONS"] = {
            **postgresql_options(
                connect_timeout=DB_CONNECT_TIMEOUT,
                query_timeout=DB_QUERY_TIMEOUT,
                statement_timeout=DB_STATEMENT_TIMEOUT,
                lock_timeout=DB_LOCK_TIMEOUT,
                idle_in_transaction_timeout=DB_IDLE_IN_TRANSACTION_TIMEOUT,
                keepalives_idle=DB_KEEPALIVES_IDLE,
                keepalives_interval=DB_KEEPALIVES_INTERVAL,
                keepalives_count=DB_KEEPALIVES_COUNT,
            ),
            # psycopg prepares only the statements core/prepared.py asks it to; None: none at all.
            "prepare_threshold": PREPARE_EXPLICIT_ONLY if DB_PREPARED_STATEMENTS else None,
            **config.get("OPTIONS", {}),
        }
    return config


DATABASES = {"default": _database_config()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

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
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Request limits. The body limit is enforced before any view runs (413); see docs/API.md.
MAX_REQUEST_BODY_BYTES = env.int("MAX_REQUEST_BODY_BYTES", 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

# API keys (docs/API.md#authentication). Every DRF view checks a presented key; with
# API_AUTH_REQUIRED a request without one is a 401. Off here and in development, on by default in
# production. Views that opt out: webhooks (provider signatures), health, the schema and Swagger UI.
API_AUTH_REQUIRED = env.bool("API_AUTH_REQUIRED", default=False)
# How long a PostgreSQL connection may remember a key it found active (apikeys/cache.py); a revocation
# ends it at once through a notification, this bounds it where notifications cannot arrive. 0: off.
API_KEY_CACHE_SECONDS = env.float("API_KEY_CACHE_SECONDS", 60.0, minimum=0.0, maximum=3600.0)

REST_FRAMEWORK = {
    "DEFAULT_PARSER_CLASSES": ["core.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "core.negotiation.JsonFirstContentNegotiation",
    "DEFAULT_AUTHENTICATION_CLASSES": ["apikeys.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["apikeys.permissions.HasApiKey"],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "core.exceptions.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "core.openapi.ApiSchema",
    "DATETIME_FORMAT": "iso-8601",
    # ASCII-escaped JSON: a lone surrogate echoed back can never make rendering fail.
    "UNICODE_JSON": False,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Messaging Service API",
    "DESCRIPTION": (
        "Send and receive SMS, MMS and Email through provider adapters, grouped into conversations. "
        'Errors always use the envelope `{"error": {"code", "message", "details"}}`. '
        "Send an API key as `Authorization: Bearer <key>` or `X-API-Key: <key>` (required when the "
        "service runs with `API_AUTH_REQUIRED`); webhooks are authenticated by provider signatures instead."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The schema and Swagger UI are open (no key needed, a key sent along is ignored): the contract
    # is not a secret, and Swagger UI's Authorize button needs the page before it has a key.
    "SERVE_AUTHENTICATION": [],
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "PREPROCESSING_HOOKS": ["core.openapi.strip_trailing_slashes"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "core.openapi.require_request_bodies",
    ],
    "ENUM_NAME_OVERRIDES": {
        "ChannelEnum": "conversations.channels.channel_choices",
        "MessageTypeEnum": "conversations.channels.message_type_choices",
        "SmsMessageTypeEnum": ["sms", "mms"],
        "EmailMessageTypeEnum": ["email"],
        "MessageStatusEnum": "messaging.models.MessageStatus",
        "ConversationStatusEnum": "conversations.models.ConversationStatus",
    },
}

# Messaging
PHONE_DEFAULT_REGION = env.str("PHONE_DEFAULT_REGION", default="US").upper()
SMS_MAX_BODY_CHARS = 1600
EMAIL_MAX_BODY_CHARS = env.int("EMAIL_MAX_BODY_CHARS", 200_000, minimum=1)
MAX_ATTACHMENTS = 10

WHATSAPP_MAX_BODY_CHARS = 4096
INSTAGRAM_MAX_BODY_CHARS = 1000

# Providers: each channel is served by the registered providers that list it in their
# default_channels (providers/registry.py); these override that by registered name or by dotted path
# to a provider class.
# A comma-separated list is a failover chain, tried in order (docs/PROVIDERS.md): SMS_PROVIDERS=a,b.
# The singular names (SMS_PROVIDER ...) are read when the plural is unset.
MESSAGE_PROVIDERS: dict[str, list[str]] = {
    channel: names
    for channel, names in {
        channel: env.list(f"{prefix}_PROVIDERS", default=[]) or env.list(f"{prefix}_PROVIDER", default=[])
        for channel, prefix in (
            ("sms", "SMS"),
            ("email", "EMAIL"),
            ("whatsapp", "WHATSAPP"),
            ("instagram", "INSTAGRAM"),
        )
    }.items()
    if names
}
# mock: the in-process fakes (zero setup); http: the providers' real HTTP APIs at the base URLs below.
PROVIDER_MODE = env.choice("PROVIDER_MODE", "mock", {"mock", "http"})
TWILIO_BASE_URL = env.str("TWILIO_BASE_URL", default="https://api.twilio.com").rstrip("/")
SENDGRID_BASE_URL = env.str("SENDGRID_BASE_URL", default="https://api.sendgrid.com").rstrip("/")
META_GRAPH_BASE_URL = env.str("META_GRAPH_BASE_URL", default="https://graph.facebook.com").rstrip("/")
META_GRAPH_VERSION = "v" + env.str("META_GRAPH_VERSION", default="v21.0").removeprefix("v")
if not re.fullmatch(r"v[0-9]+\.[0-9]+", META_GRAPH_VERSION):
    raise ImproperlyConfigured(f"META_GRAPH_VERSION must look like v21.0, got {META_GRAPH_VERSION!r}.")
TWILIO_ACCOUNT_SID = env.str("TWILIO_ACCOUNT_SID")
# Where Twilio posts status callbacks; unset: PUBLIC_BASE_URL + /api/webhooks/sms/status.
TWILIO_STATUS_CALLBACK_URL = env.str("TWILIO_STATUS_CALLBACK_URL")
SENDGRID_API_KEY = env.str("SENDGRID_API_KEY")
META_ACCESS_TOKEN = env.str("META_ACCESS_TOKEN")
# SendGrid requires a subject; messages have none. Unset: the start of the body's text.
EMAIL_SUBJECT = env.str("EMAIL_SUBJECT")
# Circuit breaker per provider (docs/PROVIDERS.md): this many transient failures in a row open it for
# PROVIDER_BREAKER_OPEN_SECONDS; then one probe send decides whether it closes again.
PROVIDER_BREAKER_FAILURES = env.int("PROVIDER_BREAKER_FAILURES", 5, minimum=1)
PROVIDER_BREAKER_OPEN_SECONDS = env.float("PROVIDER_BREAKER_OPEN_SECONDS", 30.0, minimum=0.1)
# The business's own identity on the Meta channels: the default ``from`` of a send, and the ``to`` of
# an inbound message (seed 004's payload names no recipient).
WHATSAPP_PHONE_NUMBER = env.str("WHATSAPP_PHONE_NUMBER", default="+12015550100")
INSTAGRAM_ACCOUNT_ID = env.str("INSTAGRAM_ACCOUNT_ID", default="17841400000000000")
WHATSAPP_PHONE_NUMBER_ID = env.str("WHATSAPP_PHONE_NUMBER_ID")
MOCK_PROVIDER_LATENCY_MS = env.millisecond_range("MOCK_PROVIDER_LATENCY_MS", default="100-500")
MOCK_PROVIDER_FAILURE_RATE = env.float("MOCK_PROVIDER_FAILURE_RATE", 0.0, maximum=1.0)
PROVIDER_TIMEOUT_SECONDS = env.float("PROVIDER_TIMEOUT_SECONDS", 5.0, minimum=0.1)
# Connecting is bounded on its own: a provider that does not answer the handshake fails fast (and,
# as nothing was sent, may be failed over at once).
PROVIDER_CONNECT_TIMEOUT_SECONDS = env.float(
    "PROVIDER_CONNECT_TIMEOUT_SECONDS", min(2.0, PROVIDER_TIMEOUT_SECONDS), minimum=0.05
)
# Calls to one provider in flight at once per process, each on a kept-alive connection of its own (so
# also the most connections open to it): by default the outbox worker's default concurrency, so the
# worker keeps all its calls in flight; lower it when a provider account limits concurrent requests.
PROVIDER_HTTP_MAX_CONNECTIONS = env.int("PROVIDER_HTTP_MAX_CONNECTIONS", 256, minimum=1, maximum=1024)
#: SendGrid event batches larger than this are refused (413); real ones hold far fewer.
SENDGRID_MAX_EVENTS_PER_BATCH = env.int("SENDGRID_MAX_EVENTS_PER_BATCH", 5000, minimum=1)
# inline: a send makes its first provider attempt in the request (201/202/502); queue: it is stored
# pending, due now, answered 202 at once and delivered by the outbox (as with "Prefer: respond-async").
SEND_MODE = env.choice("SEND_MODE", "inline", {"inline", "queue"})
# How long a repeated idempotent request waits for the original's first attempt before a 409.
IDEMPOTENCY_WAIT_SECONDS = env.float("IDEMPOTENCY_WAIT_SECONDS", PROVIDER_TIMEOUT_SECONDS + 1, minimum=0.0)

# Rate limits on the send endpoints (docs/RATE_LIMITING.md): (count, window seconds) per key.
SMS_RATE_LIMIT = env.rate("SMS_RATE_LIMIT", "100/m")
EMAIL_RATE_LIMIT = env.rate("EMAIL_RATE_LIMIT", "500/m")
WHATSAPP_RATE_LIMIT = env.rate("WHATSAPP_RATE_LIMIT", "600/m")
INSTAGRAM_RATE_LIMIT = env.rate("INSTAGRAM_RATE_LIMIT", "200/m")
#: What a limit counts per: the normalised sender address, the presented API key, or the client IP.
RATE_LIMIT_KEY = env.choice("RATE_LIMIT_KEY", "sender", {"sender", "api_key", "ip"})
#: A header a trusted proxy overwrites with the client IP (e.g. X-Real-IP). Unset: REMOTE_ADDR.
RATE_LIMIT_IP_HEADER = env.str("RATE_LIMIT_IP_HEADER")
if RATE_LIMIT_IP_HEADER is not None and not re.fullmatch(r"[A-Za-z0-9-]+", RATE_LIMIT_IP_HEADER):
    raise ImproperlyConfigured(f"RATE_LIMIT_IP_HEADER must be a header name, got {RATE_LIMIT_IP_HEADER!r}.")
#: When the counter store is unreachable: true lets sends through (logged), false answers 503.
RATE_LIMIT_FAIL_OPEN = env.bool("RATE_LIMIT_FAIL_OPEN", default=True)
# django-ratelimit's own settings. Its RATELIMIT_FAIL_OPEN stays off: messaging.ratelimits detects
# store failures itself and applies RATE_LIMIT_FAIL_OPEN.
RATELIMIT_ENABLE = env.bool("RATE_LIMIT_ENABLED", default=True)
RATELIMIT_USE_CACHE = "ratelimit"


def _redis_url() -> str | None:
    url = env.str("REDIS_URL")
    if url is not None:
        try:
            parse_url(url)
        except ValueError as exc:  # the message names the problem, never the password
            raise ImproperlyConfigured(f"REDIS_URL is not a valid Redis URL: {exc}") from None
    return url


def _caches(redis_url: str | None, timeout: float, mock_timeout: float) -> dict:
    """Rate-limit counters live in the "ratelimit" cache and the mock providers' memory of idempotency
    tokens in "mock_providers": Redis, shared by every process, when REDIS_URL is set; otherwise this
    process's memory, right only for a single development process.

    ``timeout`` bounds the rate limit's and the circuit breakers' round trips, which go on without
    Redis when it is slow. ``mock_timeout`` bounds the mocks' memory: it stands for a provider's own
    record of what it sent, which a provider does not lose because it was slow to write it, and a mock
    going on without it neither counts the send nor knows its token when a retry brings it again."""
    local = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    if redis_url is None:
        # The mocks' memory must outlive a process (the inline attempt runs in gunicorn, its retry in
        # run_worker): files under var/, shared by every process on this machine.
        mock_memory = {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "mock-providers"),
        }
        return {
            "default": local,
            "ratelimit": {**local, "LOCATION": "ratelimit"},
            MOCK_PROVIDER_CACHE: mock_memory,
            # Circuit breakers per process without Redis (docs/PROVIDERS.md).
            PROVIDER_BREAKER_CACHE: {**local, "LOCATION": "provider-breakers"},
        }
    redis: dict[str, Any] = {
        "BACKEND": "core.redis_cache.RedisCache",
        "LOCATION": redis_url,
        "KEY_PREFIX": "messaging",
        # Short timeouts: a slow or unreachable Redis must not hold sends up (see RATE_LIMIT_FAIL_OPEN).
        # One pool per process (core.redis_cache) for all its threads (an outbox worker has up to 1,024):
        # at most 100 connections. A thread finding them all taken waits for one (up to 2 s) instead of
        # failing at once: they are taken for a command's round trip, but with hundreds of threads a
        # thread holding one may wait a while for the GIL before giving it back.
        "OPTIONS": {
            "socket_connect_timeout": timeout,
            "socket_timeout": timeout,
            "pool_class": "redis.BlockingConnectionPool",
            "max_connections": 100,
            "timeout": 2.0,
        },
    }
    mock_redis = {
        **redis,
        "OPTIONS": {**redis["OPTIONS"], "socket_connect_timeout": mock_timeout, "socket_timeout": mock_timeout},
    }
    return {"default": local, "ratelimit": redis, MOCK_PROVIDER_CACHE: mock_redis, PROVIDER_BREAKER_CACHE: redis}


MOCK_PROVIDER_CACHE = "mock_providers"
PROVIDER_BREAKER_CACHE = "provider_breakers"
REDIS_URL = _redis_url()
REDIS_TIMEOUT_SECONDS = env.float("REDIS_TIMEOUT_SECONDS", 0.25, minimum=0.01, maximum=10.0)
# A send's usual round trip to the mocks' memory waits on Redis three times at most (connect, select,
# the script; a replay makes more), on top of a simulated latency of up to PROVIDER_TIMEOUT_SECONDS: a
# quarter of that timeout keeps such a call inside an inline send's lease (twice the timeout). One that
# runs over is taken over by the outbox, as any attempt whose outcome is not known in time.
MOCK_PROVIDER_REDIS_TIMEOUT_SECONDS = env.float(
    "MOCK_PROVIDER_REDIS_TIMEOUT_SECONDS", min(2.0, PROVIDER_TIMEOUT_SECONDS / 4), minimum=0.01
)
if MOCK_PROVIDER_REDIS_TIMEOUT_SECONDS > PROVIDER_TIMEOUT_SECONDS / 4:
    raise ImproperlyConfigured(
        f"MOCK_PROVIDER_REDIS_TIMEOUT_SECONDS ({MOCK_PROVIDER_REDIS_TIMEOUT_SECONDS:g}) must be at most a quarter of "
        f"PROVIDER_TIMEOUT_SECONDS ({PROVIDER_TIMEOUT_SECONDS:g}), or a mock's send could outlast its lease."
    )
CACHES = _caches(REDIS_URL, REDIS_TIMEOUT_SECONDS, MOCK_PROVIDER_REDIS_TIMEOUT_SECONDS)

# Retries of transient provider failures (the outbox worker acts on next_attempt_at).
RETRY_BASE_DELAY_SECONDS = env.float("RETRY_BASE_DELAY_SECONDS", 2.0, minimum=0.0)
RETRY_MAX_DELAY_SECONDS = env.float("RETRY_MAX_DELAY_SECONDS", 300.0, minimum=0.0)
MAX_ATTEMPTS = env.int("MAX_ATTEMPTS", 6, minimum=1)
# How long a claim holds a message. A worker that dies mid-send leaves its claims for this long;
# it must outlast a provider call, or a slow send would be taken over while still running.
OUTBOX_LEASE_SECONDS = env.float("OUTBOX_LEASE_SECONDS", max(30.0, PROVIDER_TIMEOUT_SECONDS * 3), minimum=1.0)
if OUTBOX_LEASE_SECONDS <= PROVIDER_TIMEOUT_SECONDS:
    raise ImproperlyConfigured(
        f"OUTBOX_LEASE_SECONDS ({OUTBOX_LEASE_SECONDS:g}) must be longer than PROVIDER_TIMEOUT_SECONDS "
        f"({PROVIDER_TIMEOUT_SECONDS:g}), or a slow send would be taken over while still running."
    )
#: A pending message due for longer than this is overdue: /metrics and the admin flag it.
OUTBOX_OVERDUE_SECONDS = env.float("OUTBOX_OVERDUE_SECONDS", 60.0, minimum=1.0)
# Provider calls in flight per worker process at most (threads that never touch the database; outcomes
# are recorded from the worker's one connection; fewer while the provider queues them:
# docs/OPERATIONS.md), and how many due messages one claim leases.
WORKER_CONCURRENCY = env.int("WORKER_CONCURRENCY", 256, minimum=1, maximum=1024)
# Delivery threads a worker starts with; it doubles them while that finishes calls faster, or starts
# one per call in flight once every thread has waited 50 ms on its call (docs/OPERATIONS.md).
WORKER_FIRST_THREADS = env.int("WORKER_FIRST_THREADS", 4, minimum=1, maximum=1024)
WORKER_BATCH_SIZE = env.int("WORKER_BATCH_SIZE", 100, minimum=1, maximum=1000)
WORKER_POLL_SECONDS = env.float("WORKER_POLL_SECONDS", 1.0, minimum=0.05)

LOG_LEVEL = env.choice("LOG_LEVEL", "INFO", {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})
# Prometheus /metrics (core/metrics.py): a bearer token, or open (development; production: 404 unless
# METRICS_TOKEN is set or METRICS_PUBLIC=true on a private bind).
METRICS_TOKEN = env.str("METRICS_TOKEN")
METRICS_PUBLIC = env.bool("METRICS_PUBLIC", default=True)
#: json: one JSON object per line (production, log shippers); plain: for reading in a terminal.
LOG_FORMAT = env.choice("LOG_FORMAT", "json", {"json", "plain"})
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "core.logging.ContextFilter"}},
    "formatters": {
        "json": {
            "()": "core.logging.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            "datefmt": "%Y-%m-%dT%H:%M:%S%z",
        },
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.request": {"level": "ERROR"},
        # core.middleware.RequestLogMiddleware writes the one line per request.
        "django.server": {"level": "WARNING"},
        # httpx writes an INFO line per provider request ("HTTP Request: POST ... 201 Created"): with
        # it, the outbox's delivery threads queued for the log handler's lock, and one worker drained
        # over HTTP at 0.77 times the rate (docs/PERFORMANCE.md, twenty-first round). The service
        # logs every failed attempt itself; LOG_LEVEL=DEBUG shows every request again (providers.http
        # writes the same line for the calls it makes without httpx's client).
        "httpx": {"level": "DEBUG" if LOG_LEVEL == "DEBUG" else "WARNING"},
    },
}

# Webhook signatures (providers/<name>.py, docs/WEBHOOK_SIGNATURES.md). Each secret is a
# comma-separated list so a rotation can accept the old and the new value at once. A provider's
# webhooks must be signed as soon as one of its secrets is set, and always when
# WEBHOOK_SIGNATURES_REQUIRED is on (production's default); webhooks/checks.py stops start-up when a
# required secret is missing or a key does not parse.
TWILIO_AUTH_TOKEN = env.list("TWILIO_AUTH_TOKEN", default=[])
SENDGRID_WEBHOOK_VERIFICATION_KEY = env.list("SENDGRID_WEBHOOK_VERIFICATION_KEY", default=[])
SENDGRID_WEBHOOK_PUBLIC_KEY = env.list("SENDGRID_WEBHOOK_PUBLIC_KEY", default=[])
META_APP_SECRET = env.list("META_APP_SECRET", default=[])
META_VERIFY_TOKEN = env.str("META_VERIFY_TOKEN")
_public_base_url = env.str("PUBLIC_BASE_URL")
PUBLIC_BASE_URL = _public_base_url.rstrip("/") if _public_base_url else None
WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS = env.int("WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS", 300, minimum=1)
WEBHOOK_SIGNATURES_REQUIRED = env.bool("WEBHOOK_SIGNATURES_REQUIRED", default=False)
