"""The provider registry: every provider by name, one instance each.

Adding a provider is its module and one line in ``PROVIDERS``. ``MESSAGE_PROVIDERS`` (settings) may
name a registered provider or a dotted path to a provider class (tests use that for fakes).
"""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from providers.base import Provider

PROVIDERS: dict[str, str] = {
    "twilio": "providers.twilio.TwilioProvider",
    "sendgrid": "providers.sendgrid.SendGridProvider",
    "meta": "providers.meta.MetaProvider",
}


@cache
def _load(path: str) -> Provider:
    try:
        provider_class = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"Provider {path!r} cannot be imported: {exc}") from exc
    provider: Provider = provider_class()
    return provider


def provider_get(name: str) -> Provider:
    """A provider by registered name or dotted path; ImproperlyConfigured if there is none."""
    if name in PROVIDERS:
        return _load(PROVIDERS[name])
    if "." in name:
        return _load(name)
    raise ImproperlyConfigured(f"No provider named {name!r}; registered: {', '.join(PROVIDERS)}.")


def provider_by_stored_name(name: str) -> Provider:
    """The provider a stored message or event names (``Provider.name``), whatever path configured it."""
    for path in PROVIDERS.values():
        provider = _load(path)
        if provider.name == name:
            return provider
    raise ImproperlyConfigured(f"No registered provider is called {name!r}.")


def provider_names_for_channel(channel: str) -> list[str]:
    """A channel's providers in failover order: MESSAGE_PROVIDERS' list for it (a single name is a list
    of one; registered names or dotted paths), else every registered provider that declares the channel
    among its ``default_channels``, in registry order."""
    configured = settings.MESSAGE_PROVIDERS.get(channel)
    if isinstance(configured, str):
        configured = [configured]
    if configured:
        return [str(name) for name in configured]
    names = [name for name, path in PROVIDERS.items() if channel in _load(path).default_channels]
    if not names:
        raise ImproperlyConfigured(f"No provider serves the {channel} channel; set MESSAGE_PROVIDERS for it.")
    return names


def providers_all() -> list[Provider]:
    return [_load(path) for path in PROVIDERS.values()]
