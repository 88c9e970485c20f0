"""Creating, revoking and checking API keys."""

from __future__ import annotations

import functools
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from apikeys import cache
from apikeys.keys import key_digest, key_generate, key_is_well_formed, key_shown_part
from apikeys.models import ApiKey
from core.errors import ValidationFailed
from core.prepared import model_columns, prepared_models

#: ``last_used_at`` is written at most this often per key, so a busy client costs no write per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def api_key_create(*, name: str) -> tuple[ApiKey, str]:
    """Stores a new key's hash and returns it with the key itself, which is never stored or shown again."""
    name = name.strip()
    max_length = ApiKey._meta.get_field("name").max_length or 0
    if not name or len(name) > max_length:
        raise ValidationFailed(
            f"An API key needs a name of 1 to {max_length} characters.",
            details={"name": [f"Must be 1 to {max_length} non-blank characters."]},
        )
    key = key_generate()
    api_key = ApiKey.objects.create(name=name, prefix=key_shown_part(key=key), key_hash=key_digest(key=key))
    return api_key, key


def api_key_revoke(*, api_key: ApiKey) -> bool:
    """Revokes the key from its next request on. False if it was already revoked (its date is kept)."""
    revoked = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now()) == 1
    api_key.refresh_from_db(fields=["revoked_at"])
    return revoked


#: ``ApiKey.objects.filter(key_hash=..., revoked_at__isnull=True).first()`` written out once and prepared
#: (core/prepared.py): every API request runs it, and building the ORM query cost more CPU (about
#: 0.25 ms) than the lookup itself.
@functools.cache
def _active_key_sql() -> str:
    table = ApiKey._meta.db_table
    return f"SELECT {model_columns(ApiKey)} FROM {table} WHERE key_hash = %s AND revoked_at IS NULL LIMIT 1"


def api_key_authenticate(*, presented: str) -> ApiKey | None:
    """The active key matching ``presented``, or None for a malformed, unknown or revoked one."""
    if not key_is_well_formed(key=presented):
        return None  # no database work for garbage
    digest = key_digest(key=presented)
    # Looking the digest up in a unique index leaks, through timing, at most how much of the *digest*
    # matched, which an attacker cannot steer towards a stored key's digest: SHA-256 is preimage
    # resistant. The row was found by equality on the digest, so there is nothing left to compare.
    lookup = cache.Lookup()
    api_key = lookup.remembered(digest)
    if api_key is None:
        api_key = _active_key(digest)
        if api_key is None:
            return None
        lookup.remember(digest, api_key)
    _api_key_mark_used(api_key=api_key, now=timezone.now())
    return api_key


def _active_key(digest: str) -> ApiKey | None:
    return next(iter(prepared_models(ApiKey, _active_key_sql(), [digest])), None)


def _api_key_mark_used(*, api_key: ApiKey, now: datetime) -> None:
    cutoff = now - LAST_USED_RESOLUTION
    if api_key.last_used_at is not None and api_key.last_used_at > cutoff:
        return
    # Guarded: of concurrent requests only the first after the cutoff writes.
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lte=cutoff)
    if ApiKey.objects.filter(stale, pk=api_key.pk).update(last_used_at=now):
        api_key.last_used_at = now
        return
    # Another request wrote it less than a minute ago: an instance this connection remembers
    # (apikeys/cache.py) takes that time, to wait a minute from it rather than write in vain on every
    # request.
    api_key.last_used_at = ApiKey.objects.filter(pk=api_key.pk).values_list("last_used_at", flat=True).first()
