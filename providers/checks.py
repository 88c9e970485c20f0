"""Start-up check for HTTP mode: sending for real needs each provider's credentials.

``manage.py migrate`` (bin/start.sh), ``run_worker`` and config/wsgi.py run Django's system checks, so
``PROVIDER_MODE=http`` without, say, ``SENDGRID_API_KEY`` stops the service before its first send
instead of failing every e-mail with a 401.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register

from providers.http import BASE_URL_SETTINGS, http_mode
from providers.mock import MockProvider
from providers.registry import providers_all


@register("providers")
def check_http_credentials(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    if not http_mode():
        return []
    errors = []
    problems = [
        problem
        for provider in providers_all()
        if isinstance(provider, MockProvider)
        for problem in provider.http_settings_problems()
    ]
    if problems:
        errors.append(
            Error(
                f"PROVIDER_MODE=http needs every provider's credentials: {'; '.join(problems)}",
                hint="Set them (docs/PROVIDERS.md), or PROVIDER_MODE=mock to send through the in-process mocks.",
                id="providers.E001",
            )
        )
    return errors + [
        Error(f"{name} must be an http(s) URL, got {getattr(settings, name)!r}.", id="providers.E002")
        for name in BASE_URL_SETTINGS
        if not str(getattr(settings, name)).startswith(("http://", "https://"))
    ]
