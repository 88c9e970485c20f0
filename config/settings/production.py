"""Production: refuses to start with DEBUG on, an insecure secret key, without explicit hosts, without
webhook secrets or without a shared store for the rate-limit counters."""

from django.core.exceptions import ImproperlyConfigured

from config.env import env
from config.settings.base import *  # noqa: F403
from config.settings.base import REDIS_URL, SECRET_KEY

DEBUG = env.bool("DJANGO_DEBUG", default=False)
if DEBUG:
    raise ImproperlyConfigured("DJANGO_DEBUG must be off in production: it shows internals to anyone.")
if SECRET_KEY.startswith("django-insecure") or len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY must be set to a long random value in production "
        "(python -c 'import secrets; print(secrets.token_urlsafe(64))')."
    )
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS must list the host names this service answers on.")

# /metrics is closed to the public: a METRICS_TOKEN, or METRICS_PUBLIC=true on a private bind only.
METRICS_PUBLIC = env.bool("METRICS_PUBLIC", default=False)

# Every REST endpoint needs an API key unless explicitly switched off (webhooks and health stay open).
API_AUTH_REQUIRED = env.bool("API_AUTH_REQUIRED", default=True)

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_REDIRECT_EXEMPT = [r"^health"]
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", 60 * 60 * 24 * 30, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True

# Webhook signatures: required unless WEBHOOK_SIGNATURES_REQUIRED=false is set explicitly; a missing
# secret then stops start-up (webhooks/checks.py, run by migrate and config/wsgi.py).
WEBHOOK_SIGNATURES_REQUIRED = env.bool("WEBHOOK_SIGNATURES_REQUIRED", default=True)

# Rate limits are counted in Redis, shared by every process. Without it each of bin/start.sh's
# processes would count alone and let through several times the limit.
if REDIS_URL is None and not env.bool("RATE_LIMIT_ALLOW_LOCAL_MEMORY", default=False):
    raise ImproperlyConfigured(
        "REDIS_URL must be set in production: rate limits are shared by every process through it "
        "(RATE_LIMIT_ALLOW_LOCAL_MEMORY=true accepts per-process counting, right for a single process only)."
    )
