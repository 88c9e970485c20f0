"""The format of API keys: how one is made, shown to humans and hashed for storage."""

from __future__ import annotations

import hashlib
import re
import secrets

KEY_PREFIX = "ms_"
#: Characters of a key shown to humans (lists, logs, revoke_api_key): ``ms_`` and 8 random ones.
SHOWN_CHARS = len(KEY_PREFIX) + 8
#: ``ms_`` followed by URL-safe base64; ours are 43 characters after the prefix (32 random bytes).
_KEY_PATTERN = re.compile(r"ms_[A-Za-z0-9_-]{32,128}")


def key_generate() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_shown_part(*, key: str) -> str:
    return key[:SHOWN_CHARS]


def key_is_well_formed(*, key: str) -> bool:
    return _KEY_PATTERN.fullmatch(key) is not None


def key_digest(*, key: str) -> str:
    """SHA-256 hex of the whole key.

    A fast hash is right here, unlike for passwords: a key is 32 random bytes (256 bits), so there is
    nothing to guess and nothing a slow hash (bcrypt, PBKDF2) would protect; and a deterministic,
    unsalted digest lets each request find its key with one indexed lookup instead of hashing
    against every stored key.
    """
    return hashlib.sha256(key.encode("ascii")).hexdigest()
