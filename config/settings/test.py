"""pytest: always PostgreSQL (DATABASE_URL, default the local docker-compose database), no latency."""

import os

from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DATABASE_URL", "postgresql://messaging_user:messaging_password@127.0.0.1:5432/messaging_service")

from config.env import Env
from config.settings.base import *  # noqa: F403
from config.settings.base import DATABASES, postgresql_options

if DATABASES["default"]["ENGINE"] != "core.postgresql":
    raise ImproperlyConfigured("Tests run on PostgreSQL only; DATABASE_URL must be a postgresql:// URL.")
# The same bounded backend as production, with bounds wide enough for a loaded CI machine; the tests of
# the bounds themselves (tests/core/test_database_faults.py) start servers with the production defaults.
DATABASES["default"]["OPTIONS"].update(
    postgresql_options(
        connect_timeout=10,
        query_timeout=120,
        statement_timeout=60,
        lock_timeout=30,
        idle_in_transaction_timeout=0,
        keepalives_idle=5,
        keepalives_interval=2,
        keepalives_count=3,
    ),
    client_health_check_timeout=10,
)

ALLOWED_HOSTS = ["*"]
# No latency, unless a test gives the worker processes it starts some (never the developer's setting).
MOCK_PROVIDER_LATENCY_MS = Env(os.environ).millisecond_range("TEST_MOCK_PROVIDER_LATENCY_MS", default="0")
MOCK_PROVIDER_FAILURE_RATE = 0.0
# Fixed, whatever the environment says: tests that need keys enforced use override_settings.
API_AUTH_REQUIRED = False
TWILIO_AUTH_TOKEN = []
SENDGRID_WEBHOOK_VERIFICATION_KEY = []
SENDGRID_WEBHOOK_PUBLIC_KEY = []
META_APP_SECRET = []
META_VERIFY_TOKEN = "test-verify-token"
WEBHOOK_SIGNATURES_REQUIRED = False
PUBLIC_BASE_URL = None
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# No collected static files in tests; WhiteNoise would warn about the missing directory.
MIDDLEWARE = [m for m in MIDDLEWARE if m != "whitenoise.middleware.WhiteNoiseMiddleware"]  # noqa: F405

# Rate limits as documented, whatever the environment says; counters in this process's memory, cleared
# before each test (tests/conftest.py). Tests that need Redis point the "ratelimit" cache at it themselves.
SMS_RATE_LIMIT = (100, 60)
EMAIL_RATE_LIMIT = (500, 60)
RATE_LIMIT_KEY = "sender"
RATE_LIMIT_IP_HEADER = None
RATE_LIMIT_FAIL_OPEN = True
RATELIMIT_ENABLE = True
# The in-process mocks, whatever the environment says; HTTP-mode tests set it themselves.
PROVIDER_MODE = "mock"
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    PROVIDER_BREAKER_CACHE: {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "breakers"},  # noqa: F405
    "ratelimit": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "ratelimit-tests"},
    # The mocks' memory of idempotency tokens. Worker processes started by a test share it through the
    # Redis database that test names (never REDIS_URL: a test must not flush a developer's Redis).
    MOCK_PROVIDER_CACHE: (  # noqa: F405
        {
            "BACKEND": "core.redis_cache.RedisCache",
            "LOCATION": os.environ["TEST_MOCK_PROVIDER_REDIS_URL"],
            "KEY_PREFIX": os.environ.get("TEST_MOCK_PROVIDER_REDIS_PREFIX", "messaging-tests"),
        }
        if os.environ.get("TEST_MOCK_PROVIDER_REDIS_URL")
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "mock-providers-tests"}
    ),
}
