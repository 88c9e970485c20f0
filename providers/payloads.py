"""Reading provider payloads: JSON and form bodies, and the plain fields every provider reads.

Errors are ``core.errors`` application errors, so a whole request answers 400/413/415 in the
envelope and a batch item is rejected alone with the same message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from django.utils.dateparse import parse_datetime
from django.utils.timezone import get_fixed_timezone, is_naive, make_aware

from core.errors import ApplicationError, UnsupportedMediaType, ValidationFailed
from providers.base import RawWebhook

#: The longest provider id (message id, event id) we store.
MAX_ID_LENGTH = 255
#: The longest provider status or event name we store.
MAX_EVENT_TYPE_LENGTH = 64
#: Twilio sids are 34 characters; room to spare, and "<sid>:<status>" always fits an event id.
MAX_SID_LENGTH = 64
#: A provider status or event name as sent: a plain word, so it can never overflow or garble a note.
STATUS_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
#: The longest provider error message we store.
MAX_ERROR_MESSAGE_LENGTH = 1000

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


def is_json(content_type: str) -> bool:
    return content_type == JSON or content_type.endswith("+json")


def unsupported(raw: RawWebhook, *accepted: str) -> UnsupportedMediaType:
    return UnsupportedMediaType(
        f"Unsupported media type {raw.content_type or '(none)'!r}; send {' or '.join(accepted)}."
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def load_json(raw: RawWebhook) -> Any:
    if not is_json(raw.content_type):
        raise unsupported(raw, JSON)
    try:
        return json.loads(raw.raw_bytes, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ApplicationError(f"JSON parse error - {exc}", code="malformed_json") from None


def wrong_shape(message: str, *, expected: str) -> ValidationFailed:
    return ValidationFailed(message, details={"non_field_errors": [expected]})


def json_object(raw: RawWebhook) -> dict[str, Any]:
    payload = load_json(raw)
    if not isinstance(payload, dict):
        raise wrong_shape("The body must be a JSON object.", expected="Expected a JSON object.")
    return payload


def field_error(name: str, problem: str) -> ValidationFailed:
    return ValidationFailed(f"{name}: {problem}", details={name: [problem]})


def text(
    payload: Mapping[str, Any], *names: str, required: bool, max_length: int = MAX_ID_LENGTH, integers: bool = True
) -> str | None:
    """The first of ``names`` present, as a non-blank string of at most ``max_length`` characters.

    ``integers``: a JSON integer is taken as its decimal text; otherwise only strings are.
    """
    for name in names:
        value = payload.get(name)
        if value is None or value == "":
            continue
        if isinstance(value, list):
            raise field_error(names[0], "Must be a single string.")
        if isinstance(value, bool) or not isinstance(value, str | int) or (isinstance(value, int) and not integers):
            raise field_error(names[0], "Must be a string.")
        result = str(value).strip()
        if not result:
            continue
        if len(result) > max_length:
            raise field_error(names[0], f"Ensure this field has no more than {max_length} characters.")
        if "\x00" in result or any("\ud800" <= char <= "\udfff" for char in result):
            raise field_error(names[0], "Contains characters that cannot be stored.")
        return result
    if required:
        raise field_error(names[0], "This field is required.")
    return None


def required_text(
    payload: Mapping[str, Any], *names: str, max_length: int = MAX_ID_LENGTH, integers: bool = True
) -> str:
    value = text(payload, *names, required=True, max_length=max_length, integers=integers)
    assert value is not None  # required=True raises instead
    return value


def status_name(payload: Mapping[str, Any], *names: str) -> str:
    """A provider status or event name: a plain word as sent (so lower-casing cannot lengthen it),
    compared lower-cased."""
    for name in names:
        value = payload.get(name)
        if value is None or value == "":
            continue
        if isinstance(value, list):
            raise field_error(names[0], "Must be a single string.")
        if not isinstance(value, str) or not re.fullmatch(STATUS_NAME_PATTERN, value):
            raise field_error(names[0], "Must be a status name: up to 64 letters, digits, '_', '.' or '-'.")
        return value.lower()
    raise field_error(names[0], "This field is required.")


def optional_text(payload: Mapping[str, Any], *names: str, max_length: int) -> str | None:
    """An optional detail (an error code or reason): kept if it is usable text, never a reason to
    reject the event, since losing a bounce over its ``reason`` would be worse than a rough reason."""
    for name in names:
        value = payload.get(name)
        if isinstance(value, bool) or not isinstance(value, str | int):
            continue
        result = str(value).strip().replace("\x00", "")
        result = result.encode("utf-8", errors="replace").decode("utf-8")[:max_length]
        if result:
            return result
    return None


def form_fields(raw: RawWebhook) -> dict[str, Any]:
    """The form's fields; a repeated one is the list of its values, which no text field accepts."""
    try:
        body = raw.raw_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise ApplicationError("The form body is not UTF-8.", code="malformed_form") from None
    try:
        pairs = parse_qsl(body, keep_blank_values=True, strict_parsing=bool(body), max_num_fields=1000)
    except ValueError as exc:
        raise ApplicationError(f"Form parse error - {exc}", code="malformed_form") from None
    fields: dict[str, Any] = {}
    for name, value in pairs:
        if name not in fields:
            fields[name] = value
        elif isinstance(fields[name], list):
            fields[name].append(value)
        else:
            fields[name] = [fields[name], value]
    return fields


def unix_time(value: Any) -> datetime | None:
    """A Unix time in seconds (int or digit string), as an aware datetime; None if absent or unusable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int | float) and 0 <= value < 1e11:
        return datetime.fromtimestamp(value, tz=get_fixed_timezone(0))
    return None


def iso_time(value: Any, *, name: str) -> datetime | None:
    """An ISO-8601 timestamp (naive means UTC); None if absent (null); 400 if unreadable."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise field_error(name, "Must be an ISO-8601 date-time string.")
    try:
        moment = parse_datetime(value.strip())
    except ValueError:
        moment = None
    if moment is None:
        raise field_error(name, "Datetime has wrong format. Use ISO-8601, e.g. 2025-01-01T10:00:00Z.")
    aware = make_aware(moment, get_fixed_timezone(0)) if is_naive(moment) else moment
    try:
        return aware.astimezone(get_fixed_timezone(0))
    except OverflowError:
        raise field_error(name, "Datetime value out of range.") from None


def item_raw(request: RawWebhook, item: Any, *, kind: str) -> RawWebhook:
    """One item of a batch as a request of its own: stored, deduplicated and replayed by itself."""
    # Readable text; a lone surrogate (legal in JSON escapes, not in a text column) becomes "?".
    dumped = json.dumps(item, ensure_ascii=False, separators=(",", ":"))
    body = dumped.encode("utf-8", errors="replace").decode()
    return RawWebhook(
        provider=request.provider,
        kind=kind,
        headers=request.headers,
        content_type=JSON,
        body=body,
        raw_bytes=body.encode(),
        body_exact=request.body_exact and body == dumped,
    )


def as_kind(raw: RawWebhook, kind: str) -> RawWebhook:
    """The whole request stored as one item of ``kind``."""
    return RawWebhook(
        provider=raw.provider,
        kind=kind,
        headers=raw.headers,
        content_type=raw.content_type,
        body=raw.body,
        raw_bytes=raw.raw_bytes,
        body_exact=raw.body_exact,
    )
