"""Local development: debug on by default, every host accepted, mock providers with latency."""

from config.env import env
from config.settings.base import *  # noqa: F403

DEBUG = env.bool("DJANGO_DEBUG", default=True)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["*"])
# API keys are optional locally, so bin/test.sh and curl work without one; a key sent is still checked.
API_AUTH_REQUIRED = env.bool("API_AUTH_REQUIRED", default=False)
