"""Finding API keys the way operators name them."""

from __future__ import annotations

from apikeys.models import ApiKey


def api_key_find(*, identifier: str) -> list[ApiKey]:
    """Keys whose prefix is ``identifier`` or, if none, whose name is; active keys first, newest first."""
    identifier = identifier.strip()
    keys = ApiKey.objects.order_by("-created_at")
    by_prefix = list(keys.filter(prefix=identifier))
    found = by_prefix or list(keys.filter(name=identifier))
    return sorted(found, key=lambda api_key: not api_key.is_active)
