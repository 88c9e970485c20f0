"""Participant addresses: phone numbers to E.164, e-mail addresses trimmed with the domain lower-cased."""

from __future__ import annotations

import functools
import re

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email

from core.errors import ValidationFailed

# The scaffold's sample payloads wrap addresses as Markdown links: "[a@b.com](mailto:a@b.com)".
_MARKDOWN_MAILTO = re.compile(r"^\[(?P<label>[^\]]*)\]\(mailto:(?P<target>[^)]*)\)$", re.IGNORECASE)
_DISPLAY_NAME = re.compile(r"^[^<>]*<(?P<address>[^<>]+)>$")
_MAX_EMAIL_LENGTH = 254
_MAX_PHONE_INPUT = 64


class InvalidAddress(ValidationFailed):
    code = "invalid_address"


def normalise_email(raw: str, *, field: str = "address") -> str:
    value = raw.strip()
    markdown = _MARKDOWN_MAILTO.match(value)
    if markdown:
        value = markdown.group("target").strip()
    display = _DISPLAY_NAME.match(value)
    if display:
        value = display.group("address").strip()
    if value.lower().startswith("mailto:"):
        value = value[len("mailto:") :]
    local, sep, domain = value.rpartition("@")
    candidate = f"{local}@{domain.lower()}" if sep else value
    try:
        if len(candidate) > _MAX_EMAIL_LENGTH:
            raise DjangoValidationError("too long")
        validate_email(candidate)
    except DjangoValidationError:
        raise InvalidAddress(
            f"{field} is not a valid e-mail address.", details={field: [f"Invalid e-mail address: {raw!r}."]}
        ) from None
    return candidate


def normalise_phone(raw: str, *, field: str = "address") -> str:
    e164 = _e164(raw, settings.PHONE_DEFAULT_REGION)
    if e164 is None:
        raise InvalidAddress(
            f"{field} is not a valid phone number.",
            details={field: [f"Invalid phone number: {raw!r}. Use E.164, e.g. +12015550123."]},
        )
    return e164


@functools.lru_cache(maxsize=8192)
def _e164(raw: str, region: str) -> str | None:
    """``raw`` in E.164, or None when it is no phone number. Cached: one side of nearly every message is
    one of the business's few numbers, and parsing costs more than the rest of an address's checks."""
    if len(raw) > _MAX_PHONE_INPUT or not any(ch.isdigit() for ch in raw):
        return None
    try:
        number = phonenumbers.parse(raw.strip(), region)
    except phonenumbers.NumberParseException:
        return None
    # "Possible" (right length for the country) rather than "valid" (an allocated range): test and
    # fictional numbers such as +1 555 ... are common and a provider, not us, decides reachability.
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def looks_like_email(raw: str) -> bool:
    return "@" in raw


#: Meta's business-scoped user ids (and seed 004's ``user-123``): kept exactly as given.
_SCOPED_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
#: Meta's wa_id: the number's digits without the ``+``.
_WA_ID = re.compile(r"[1-9][0-9]{6,14}")


def normalise_scoped_id(raw: str, *, field: str = "address") -> str:
    """An opaque user id of 1-64 letters, digits, ``-``, ``_`` or ``.``, kept as given."""
    value = raw.strip()
    if not _SCOPED_ID.fullmatch(value):
        raise InvalidAddress(
            f"{field} is not a valid user id.",
            details={field: [f"Invalid user id: {raw[:80]!r}. Use 1-64 letters, digits, '-', '_' or '.'."]},
        )
    return value


def normalise_whatsapp(raw: str, *, field: str = "address") -> str:
    """A WhatsApp user: a phone number (``+14155550123``, ``whatsapp:+1...`` or wa_id digits), kept as
    E.164, or an opaque user id kept as given. A value starting with ``+`` must be a valid number."""
    value = raw.strip()
    if value.lower().startswith("whatsapp:"):
        value = value[len("whatsapp:") :].strip()
        return _whatsapp_phone(value, raw=raw, field=field)
    if value.startswith("+"):
        return _whatsapp_phone(value, raw=raw, field=field)
    if _WA_ID.fullmatch(value):
        return _whatsapp_phone("+" + value, raw=raw, field=field)
    return normalise_scoped_id(value, field=field)


def _whatsapp_phone(value: str, *, raw: str, field: str) -> str:
    error = InvalidAddress(
        f"{field} is not a valid WhatsApp number.",
        details={field: [f"Invalid WhatsApp number: {raw[:80]!r}. Use E.164, e.g. +14155550123."]},
    )
    if len(value) > _MAX_PHONE_INPUT or not value.startswith("+"):
        raise error
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise error from None
    if not phonenumbers.is_valid_number(number):
        raise error
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
