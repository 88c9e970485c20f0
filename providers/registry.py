"""Which adapter serves which channel, from ``settings.MESSAGE_PROVIDERS``."""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from providers.base import MessageProvider


@cache
def _load(path: str) -> MessageProvider:
    try:
        provider_class = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"Provider {path!r} cannot be imported: {exc}") from exc
    return provider_class()


def provider_for_channel(channel: str) -> MessageProvider:
    try:
        path = settings.MESSAGE_PROVIDERS[channel]
    except KeyError:
        raise ImproperlyConfigured(f"No provider is configured for channel {channel!r}.") from None
    return _load(path)
