"""Start-up checks for webhook configuration (Django's system checks).

``manage.py migrate`` (run by bin/start.sh) and config/wsgi.py run them, so a service whose webhooks
could be forged, or whose secrets do not parse, stops before it serves.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, register

from providers.registry import providers_all
from webhooks.signatures import provider_has_secret

_SCHEMES = {"http", "https"}


@register("webhooks")
def check_webhook_secrets(app_configs=None, **kwargs) -> list[Error]:
    errors = []
    if settings.WEBHOOK_SIGNATURES_REQUIRED:
        missing = [
            f"{provider.name} ({' or '.join(provider.secret_settings)})"
            for provider in providers_all()
            if provider.secret_settings and not provider_has_secret(provider)
        ]
        if missing:
            errors.append(
                Error(
                    f"Webhook signatures are required, but these providers have no secret: {'; '.join(missing)}.",
                    hint="Set them, or set WEBHOOK_SIGNATURES_REQUIRED=false to accept unsigned webhooks "
                    "(never on a public network).",
                    id="webhooks.E001",
                )
            )
    for provider in providers_all():
        errors.extend(Error(problem, id="webhooks.E002") for problem in provider.settings_problems())
    problem = public_base_url_problem(settings.PUBLIC_BASE_URL)
    if problem:
        errors.append(Error(problem, id="webhooks.E003"))
    return errors


def public_base_url_problem(value: str | None) -> str | None:
    """``http(s)://host[:port]`` with an optional path prefix, or None (unset)."""
    if value is None:
        return None
    parts = urlsplit(value)
    try:
        port_ok = parts.port != 0
    except ValueError:  # not a number, or out of range
        port_ok = False
    shaped_right = (
        parts.scheme in _SCHEMES
        and bool(parts.hostname)
        and port_ok
        and "@" not in parts.netloc
        and not parts.query
        and not parts.fragment
        and not any(char.isspace() for char in value)
    )
    if shaped_right:
        return None
    return (
        "PUBLIC_BASE_URL must be http(s)://host[:port] with an optional path prefix "
        f"(e.g. https://api.example.com), got {value!r}."
    )
