"""Pieces every provider's signature check uses: constant-time compares and required headers."""

from __future__ import annotations

import hmac

from providers.base import SignatureInvalid, SignedRequest


def header(request: SignedRequest, name: str) -> str:
    value = request.headers.get(name, "").strip()
    if not value:
        raise SignatureInvalid(f"Missing {name} header.")
    return value


def equal(expected: str, received: str) -> bool:
    # Bytes, because compare_digest refuses str with non-ASCII characters, which a header can hold.
    return hmac.compare_digest(expected.encode("utf-8"), received.encode("utf-8"))
