"""pytest: always PostgreSQL (DATABASE_URL, default the local docker-compose database), no latency."""

import os

from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DATABASE_URL", "postgresql://messaging_user:messaging_password@127.0.0.1:5432/messaging_service")

from config.settings.base import *  # noqa: F403
from config.settings.base import DATABASES

if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured("Tests run on PostgreSQL only; DATABASE_URL must be a postgresql:// URL.")

ALLOWED_HOSTS = ["*"]
MOCK_PROVIDER_LATENCY_MS = (0, 0)
MOCK_PROVIDER_FAILURE_RATE = 0.0
# Fixed, whatever the environment says: tests that need keys enforced use override_settings.
API_AUTH_REQUIRED = False
TWILIO_AUTH_TOKEN: list[str] = []
SENDGRID_WEBHOOK_VERIFICATION_KEY: list[str] = []
SENDGRID_WEBHOOK_PUBLIC_KEY: list[str] = []
PUBLIC_BASE_URL = None
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# No collected static files in tests; WhiteNoise would warn about the missing directory.
MIDDLEWARE = [m for m in MIDDLEWARE if m != "whitenoise.middleware.WhiteNoiseMiddleware"]  # noqa: F405
