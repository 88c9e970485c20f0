"""Proof that a webhook comes from its provider: one verification step per provider, one exception.

Twilio signs SMS webhooks with HMAC-SHA1 over the URL it called plus the form parameters. SendGrid
signs event webhooks with ECDSA P-256 over a timestamp plus the raw body; the seed design signs the
same bytes with an HMAC-SHA256 key, and either scheme may be configured. The inbound e-mail webhook
uses the SendGrid schemes. Every secret setting is a list so a rotation can accept the old and the new
secret at once, and every comparison is constant-time. docs/WEBHOOK_SIGNATURES.md has the details.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.datastructures import CaseInsensitiveMapping
from django.utils.encoding import escape_uri_path, iri_to_uri
from django.utils.http import parse_header_parameters

if TYPE_CHECKING:
    from django.http import HttpRequest

TWILIO_SIGNATURE_HEADER = "X-Twilio-Signature"
SENDGRID_SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"

_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


class SignatureInvalid(Exception):
    """The request cannot be proven to come from the provider (answer 403).

    The message says what is wrong with the request and is safe to show the caller: it never holds
    a secret or the signature we expected.
    """

    code = "invalid_signature"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class SignedRequest:
    """What a signature covers, independent of Django so tests and tools can build one directly.

    ``url`` is the full public URL as the provider called it (scheme://host[:port]/path?query);
    ``headers`` are looked up case-insensitively; ``content_type`` keeps only the media type, lowercased.
    """

    method: str
    url: str
    # Kept out of repr: headers can hold credentials and the body personal data, and reprs get logged.
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    content_type: str = ""

    def __post_init__(self) -> None:
        media_type, _ = parse_header_parameters(self.content_type)
        object.__setattr__(self, "method", self.method.upper())
        object.__setattr__(self, "headers", CaseInsensitiveMapping(self.headers))
        object.__setattr__(self, "content_type", media_type.strip().lower())


def signed_request_from_django(request: HttpRequest) -> SignedRequest:
    """Builds the SignedRequest for a Django (or DRF) request.

    Call it before anything parses the body (``request.POST``, DRF's ``request.data``): Django can
    hand out the raw body only once it has been read as such.
    """
    return SignedRequest(
        method=request.method or "",
        url=public_url(request),
        headers=request.headers,
        body=request.body,
        content_type=request.META.get("CONTENT_TYPE", ""),
    )


def public_url(request: HttpRequest) -> str:
    """The URL the provider called. Behind a proxy the scheme, host and port Django sees are not the
    ones the provider signed, so PUBLIC_BASE_URL (the public URL of the application root, with any
    path prefix the proxy strips) replaces them; the path inside the application and the raw query
    string are kept.
    """
    base = settings.PUBLIC_BASE_URL
    if not base:
        return request.build_absolute_uri()
    url = base + escape_uri_path(request.path_info)
    query = request.META.get("QUERY_STRING", "")
    return f"{url}?{iri_to_uri(query)}" if query else url


# Twilio


def verify_twilio(request: SignedRequest) -> None:
    """Checks X-Twilio-Signature against every configured auth token; raises SignatureInvalid.

    Form bodies are signed as sorted parameters. Any other body is signed through ``bodySHA256`` in
    the URL, so the body must hash to that value; a non-empty body without it is not covered at all.
    """
    tokens = settings.TWILIO_AUTH_TOKEN
    if not tokens:
        raise SignatureInvalid("Twilio signature verification is not configured.")
    signature = _header(request, TWILIO_SIGNATURE_HEADER)
    params = _twilio_params(request)
    candidates = (
        twilio_signature(url=url, params=params, token=token) for url in _url_variants(request.url) for token in tokens
    )
    if not any(_equal(candidate, signature) for candidate in candidates):
        raise SignatureInvalid(f"{TWILIO_SIGNATURE_HEADER} does not match this request.")
    if request.content_type != FORM_MEDIA_TYPE or "bodySHA256=" in urlsplit(request.url).query:
        _check_body_hash(request)


def twilio_signature(*, url: str, params: Mapping[str, str] | Iterable[tuple[str, str]], token: str) -> str:
    """base64(HMAC-SHA1(token, url + name + value for each parameter sorted by name, then value)).
    A parameter repeated with the same value counts once, as twilio-python signs it."""
    pairs = params.items() if isinstance(params, Mapping) else params
    payload = url + "".join(name + value for name, value in sorted(set(pairs)))
    digest = hmac.new(token.encode("utf-8"), payload.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def twilio_json_url(*, url: str, body: bytes) -> str:
    """The URL Twilio signs for a non-form body: the URL with ``bodySHA256=<hex sha256 of body>`` added."""
    separator = "&" if urlsplit(url).query else ("" if url.endswith("?") else "?")
    return f"{url}{separator}bodySHA256={hashlib.sha256(body).hexdigest()}"


def _twilio_params(request: SignedRequest) -> list[tuple[str, str]]:
    if request.content_type != FORM_MEDIA_TYPE:
        return []
    return parse_qsl(request.body.decode("utf-8", errors="replace"), keep_blank_values=True)


def _check_body_hash(request: SignedRequest) -> None:
    query = parse_qsl(urlsplit(request.url).query, keep_blank_values=True)
    expected = next((value for name, value in query if name == "bodySHA256"), None)
    if expected is None:
        if request.body:
            raise SignatureInvalid("The body is not signed: a non-form body needs bodySHA256 in the URL.")
        return
    if not _equal(hashlib.sha256(request.body).hexdigest(), expected.lower()):
        raise SignatureInvalid("The body does not match the bodySHA256 in the URL.")


def _url_variants(url: str) -> list[str]:
    """The URL as received, without its port, and with the scheme's default port.

    Twilio is not consistent about whether the signed URL carries the port; twilio-python's
    RequestValidator accepts either, and so do we.
    """
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        return [url]
    if port is not None:
        netloc = parts.netloc.rsplit(":", 1)[0]
    elif parts.scheme in _DEFAULT_PORTS:
        netloc = f"{parts.netloc}:{_DEFAULT_PORTS[parts.scheme]}"
    else:
        return [url]
    return [url, urlunsplit(parts._replace(netloc=netloc))]


# SendGrid (event webhook and inbound e-mail)


def verify_sendgrid(request: SignedRequest) -> None:
    """Checks the SendGrid signature headers; either configured scheme passing is enough.

    Both schemes sign ``timestamp + raw body``; a timestamp outside the tolerance is refused before
    any signature is checked, so a captured request cannot be replayed later.
    """
    keys = settings.SENDGRID_WEBHOOK_VERIFICATION_KEY
    public_keys = settings.SENDGRID_WEBHOOK_PUBLIC_KEY
    if not keys and not public_keys:
        raise SignatureInvalid("SendGrid signature verification is not configured.")
    signature = _header(request, SENDGRID_SIGNATURE_HEADER)
    timestamp = _fresh_timestamp(request)
    hex_signature = signature.lower()
    if any(
        _equal(sendgrid_hmac_signature(timestamp=timestamp, body=request.body, key=key), hex_signature) for key in keys
    ):
        return
    signed = timestamp.encode("ascii") + request.body
    if any(_ecdsa_valid(public_key=_public_key(text), data=signed, signature=signature) for text in public_keys):
        return
    raise SignatureInvalid(f"{SENDGRID_SIGNATURE_HEADER} does not match this request.")


def sendgrid_hmac_signature(*, timestamp: str | int, body: bytes, key: str) -> str:
    """hex(HMAC-SHA256(key, timestamp + body)): the seed design's scheme."""
    return hmac.new(key.encode("utf-8"), str(timestamp).encode("ascii") + body, hashlib.sha256).hexdigest()


def sendgrid_ecdsa_signature(*, timestamp: str | int, body: bytes, private_key: ec.EllipticCurvePrivateKey) -> str:
    """base64(DER(ECDSA-P256-SHA256(timestamp + body))): SendGrid's scheme, for tests and simulators."""
    der = private_key.sign(str(timestamp).encode("ascii") + body, _ECDSA_SHA256)
    return base64.b64encode(der).decode("ascii")


def _fresh_timestamp(request: SignedRequest) -> str:
    raw = _header(request, SENDGRID_TIMESTAMP_HEADER)
    if not _UNIX_SECONDS.fullmatch(raw):
        raise SignatureInvalid(f"{SENDGRID_TIMESTAMP_HEADER} must be a Unix time in whole seconds.")
    tolerance = settings.WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS
    if abs(time.time() - int(raw)) > tolerance:
        raise SignatureInvalid(f"{SENDGRID_TIMESTAMP_HEADER} is more than {tolerance} seconds from now.")
    return raw


def _ecdsa_valid(*, public_key: ec.EllipticCurvePublicKey, data: bytes, signature: str) -> bool:
    try:
        public_key.verify(base64.b64decode(signature, validate=True), data, _ECDSA_SHA256)
    except (InvalidSignature, ValueError):
        return False
    return True


@lru_cache(maxsize=32)
def _public_key(text: str) -> ec.EllipticCurvePublicKey:
    """Base64 DER SubjectPublicKeyInfo (as SendGrid's console shows it) or PEM; raises ValueError."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        key = serialization.load_pem_public_key(text.replace("\\n", "\n").encode("ascii"))
    else:
        key = serialization.load_der_public_key(base64.b64decode("".join(text.split()), validate=True))
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not an ECDSA P-256 public key")
    return key


# Both providers


VERIFIERS: Mapping[str, Callable[[SignedRequest], None]] = {"twilio": verify_twilio, "sendgrid": verify_sendgrid}
"""The verifier per provider name, as WebhookEvent.provider spells it."""

_SECRET_SETTINGS = {
    "twilio": ("TWILIO_AUTH_TOKEN",),
    "sendgrid": ("SENDGRID_WEBHOOK_VERIFICATION_KEY", "SENDGRID_WEBHOOK_PUBLIC_KEY"),
}


def signatures_enabled_for(provider: str) -> bool:
    """True when a secret for the provider is configured, i.e. its webhooks must be signed."""
    try:
        names = _SECRET_SETTINGS[provider]
    except KeyError:
        raise ValueError(f"Unknown webhook provider {provider!r}.") from None
    return any(getattr(settings, name) for name in names)


def _header(request: SignedRequest, name: str) -> str:
    value = request.headers.get(name, "").strip()
    if not value:
        raise SignatureInvalid(f"Missing {name} header.")
    return value


def _equal(expected: str, received: str) -> bool:
    # Bytes, because compare_digest refuses str with non-ASCII characters, which a header can hold.
    return hmac.compare_digest(expected.encode("utf-8"), received.encode("utf-8"))


# Start-up checks, called from the settings so a bad value stops the service before it serves.


def validate_public_base_url(*, setting: str, value: str | None) -> str | None:
    """``http(s)://host[:port]`` with an optional path prefix and no trailing slash, or None."""
    if value is None:
        return None
    parts = urlsplit(value)
    try:
        port_ok = parts.port != 0
    except ValueError:  # not a number, or out of range
        port_ok = False
    shaped_right = (
        parts.scheme in _DEFAULT_PORTS
        and bool(parts.hostname)
        and port_ok
        and "@" not in parts.netloc
        and not parts.query
        and not parts.fragment
        and not any(char.isspace() for char in value)
    )
    if not shaped_right:
        raise ImproperlyConfigured(
            f"{setting} must be http(s)://host[:port] with an optional path prefix "
            f"(e.g. https://api.example.com), got {value!r}."
        )
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def validate_public_keys(*, setting: str, keys: list[str]) -> list[str]:
    """Parses every public key now, so a malformed one fails start-up rather than the first webhook."""
    for position, text in enumerate(keys, start=1):
        try:
            _public_key(text)
        except (ValueError, UnsupportedAlgorithm):
            raise ImproperlyConfigured(
                f"{setting}: key {position} of {len(keys)} is not an ECDSA P-256 public key "
                "(base64 DER as SendGrid shows it, or PEM)."
            ) from None
    return keys


def require_webhook_secrets(
    *, twilio_tokens: list[str], sendgrid_keys: list[str], sendgrid_public_keys: list[str]
) -> None:
    """WEBHOOK_SIGNATURES_REQUIRED: a service that accepts unsigned webhooks accepts forged ones."""
    missing = []
    if not twilio_tokens:
        missing.append("TWILIO_AUTH_TOKEN")
    if not sendgrid_keys and not sendgrid_public_keys:
        missing.append("SENDGRID_WEBHOOK_PUBLIC_KEY or SENDGRID_WEBHOOK_VERIFICATION_KEY")
    if missing:
        raise ImproperlyConfigured(
            f"Webhook signatures are required, but these are not set: {'; '.join(missing)}. Set them, "
            "or set WEBHOOK_SIGNATURES_REQUIRED=false to accept unsigned webhooks (never on a public network)."
        )
