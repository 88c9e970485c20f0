"""Signatures as the real providers make them, written from their documentation (not shared with the
service's verifiers, so a test passing proves both sides agree with the spec, not with each other)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from functools import lru_cache
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

TWILIO_SIGNATURE = "X-Twilio-Signature"
SENDGRID_SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
META_SIGNATURE = "X-Hub-Signature-256"


def twilio_signature(*, url: str, params: Iterable[tuple[str, str]], token: str) -> str:
    """base64(HMAC-SHA1(auth token, URL + each parameter name and value, sorted by name))."""
    payload = url + "".join(name + value for name, value in sorted(set(params)))
    return base64.b64encode(hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()).decode("ascii")


def twilio_body_url(*, url: str, body: bytes) -> str:
    """For a JSON body Twilio signs the URL with ``bodySHA256=<hex sha256(body)>`` added to its query."""
    separator = "&" if urlsplit(url).query else "?"
    return f"{url}{separator}bodySHA256={hashlib.sha256(body).hexdigest()}"


def sendgrid_hmac(*, timestamp: str, body: bytes, key: str) -> str:
    """hex(HMAC-SHA256(key, timestamp + body)): the scheme the service verifies with a shared key."""
    return hmac.new(key.encode(), timestamp.encode("ascii") + body, hashlib.sha256).hexdigest()


def sendgrid_ecdsa(*, timestamp: str, body: bytes, private_key_pem: str) -> str:
    """base64(DER(ECDSA P-256 SHA-256 over timestamp + body)): SendGrid's Signed Event Webhook."""
    key = _private_key(private_key_pem)
    return base64.b64encode(key.sign(timestamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))).decode("ascii")


def meta_signature(*, body: bytes, app_secret: str) -> str:
    """``sha256=`` + hex(HMAC-SHA256(app secret, raw body)): Meta's X-Hub-Signature-256."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


@lru_cache(maxsize=4)
def _private_key(pem: str) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem.replace("\\n", "\n").encode("ascii"), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("the SendGrid webhook private key must be an ECDSA P-256 key in PEM")
    return key


def check_private_key(pem: str) -> None:
    """Raises ValueError when the PEM is not an ECDSA P-256 private key (checked at start-up)."""
    try:
        _private_key(pem)
    except (TypeError, ValueError) as error:
        raise ValueError(f"the SendGrid webhook private key is not usable: {error}") from None
