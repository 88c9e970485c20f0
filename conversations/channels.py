"""The channel registry: everything the service knows about a channel, in one entry.

A channel is what a conversation runs on (``sms`` carries SMS and MMS, ``email``, ``whatsapp``,
``instagram``). Serializers, the OpenAPI schema, rate limits, participant normalisation, the admin and
the database CHECK constraints all read this table, so adding a channel is one entry here (plus the
migration ``makemigrations`` writes for the CHECKs) and, if it needs one, a provider module.

It lives in ``conversations`` because that is the bottom of the dependency chain
(webhooks -> messaging -> conversations): the Conversation model's CHECK and participant normalisation
read it, and nothing here imports a model or names a provider: each provider module declares the
channels it serves (``Provider.default_channels``), and ``providers.registry`` finds them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from conversations.addresses import normalise_email, normalise_phone, normalise_scoped_id, normalise_whatsapp
from core.errors import ValidationFailed

PHONE_FORMAT = "phone"
PHONE_DESCRIPTION = (
    "a phone number: E.164 (+12015550123) preferred, national numbers are read in the service's default "
    "region; it must have the right length for its country"
)
SCOPED_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"


@dataclass(frozen=True)
class AddressRule:
    """How one channel's addresses are checked and normalised, and how the schema describes them."""

    normalise: Callable[..., str]
    #: OpenAPI ``format`` (bin/fuzz_hooks.py makes values for the project's own formats).
    schema_format: str | None
    description: str
    schema_pattern: str | None = None


PHONE = AddressRule(normalise=normalise_phone, schema_format=PHONE_FORMAT, description=PHONE_DESCRIPTION)
EMAIL = AddressRule(
    normalise=normalise_email,
    schema_format="email",
    description="an e-mail address (a display name, `Name <a@example.com>`, is accepted)",
)
WHATSAPP = AddressRule(
    normalise=normalise_whatsapp,
    schema_format="whatsapp-address",
    description=(
        "a WhatsApp user: a phone number (`+14155550123`, `whatsapp:+14155550123` or Meta's wa_id digits "
        "`14155550123`, all kept as E.164; a value starting with `+` must be a valid number) or an opaque "
        "user id (1-64 letters, digits, `-`, `_`, `.`, kept as given)"
    ),
)
SCOPED_ID = AddressRule(
    normalise=normalise_scoped_id,
    schema_format=None,
    schema_pattern=SCOPED_ID_PATTERN,
    description="an Instagram-scoped user id (1-64 letters, digits, `-`, `_`, `.`)",
)


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    label: str
    #: Message types this channel carries; the first is the default.
    message_types: tuple[str, ...]
    address: AddressRule
    #: Name of the setting holding the longest body, in characters.
    body_limit_setting: str
    #: Name of the setting holding the send rate limit, as ``(count, window seconds)``.
    rate_limit_setting: str
    #: Name of the setting holding the business's own address on the channel, used when a send
    #: omits ``from``; None when every send must say who it is from.
    sender_setting: str | None = None
    #: Bodies are HTML (previews strip tags; the admin renders them sanitised).
    html_body: bool = False
    #: ``type`` from the request, the attachments and the raw addresses -> the message type.
    infer_type: Callable[..., str] | None = None

    @property
    def body_limit(self) -> int:
        return int(getattr(settings, self.body_limit_setting))

    @property
    def rate_limit(self) -> tuple[int, int]:
        limit: tuple[int, int] = getattr(settings, self.rate_limit_setting)
        return limit

    @property
    def default_sender(self) -> str | None:
        if self.sender_setting is None:
            return None
        value: str | None = getattr(settings, self.sender_setting, None)
        return value or None

    def message_type(self, *, requested: str | None, from_address: str, to_address: str, attachments: list) -> str:
        if self.infer_type is not None:
            return self.infer_type(
                requested=requested, from_address=from_address, to_address=to_address, attachments=attachments
            )
        return requested or self.message_types[0]


def _sms_type(*, requested: str | None, from_address: str, to_address: str, attachments: list) -> str:
    """The scaffold's rule: email if asked for or an address has ``@``; mms if asked for or attachments
    are present; else sms. An ``email`` answer on the sms channel is refused by the caller."""
    if requested == "email" or "@" in from_address or "@" in to_address:
        return "email"
    if requested == "mms" or attachments:
        return "mms"
    return "sms"


CHANNELS: dict[str, ChannelSpec] = {
    spec.name: spec
    for spec in (
        ChannelSpec(
            name="sms",
            label="SMS/MMS",
            message_types=("sms", "mms"),
            address=PHONE,
            body_limit_setting="SMS_MAX_BODY_CHARS",
            rate_limit_setting="SMS_RATE_LIMIT",
            infer_type=_sms_type,
        ),
        ChannelSpec(
            name="email",
            label="Email",
            message_types=("email",),
            address=EMAIL,
            body_limit_setting="EMAIL_MAX_BODY_CHARS",
            rate_limit_setting="EMAIL_RATE_LIMIT",
            html_body=True,
        ),
        ChannelSpec(
            name="whatsapp",
            label="WhatsApp",
            message_types=("whatsapp",),
            address=WHATSAPP,
            body_limit_setting="WHATSAPP_MAX_BODY_CHARS",
            rate_limit_setting="WHATSAPP_RATE_LIMIT",
            sender_setting="WHATSAPP_PHONE_NUMBER",
        ),
        ChannelSpec(
            name="instagram",
            label="Instagram",
            message_types=("instagram",),
            address=SCOPED_ID,
            body_limit_setting="INSTAGRAM_MAX_BODY_CHARS",
            rate_limit_setting="INSTAGRAM_RATE_LIMIT",
            sender_setting="INSTAGRAM_ACCOUNT_ID",
        ),
    )
}


class UnknownChannel(ValidationFailed):
    code = "validation_error"


def channel_get(name: Any) -> ChannelSpec:
    """The channel's entry; 400 (in the envelope) for a name that is not a channel."""
    spec = CHANNELS.get(name) if isinstance(name, str) else None
    if spec is None:
        problem = f"Unknown channel; one of: {', '.join(CHANNELS)}."
        raise UnknownChannel(f"channel: {problem}", details={"channel": [problem]})
    return spec


def channel_choices() -> list[tuple[str, str]]:
    return [(spec.name, spec.label) for spec in CHANNELS.values()]


def channel_names() -> list[str]:
    return list(CHANNELS)


def message_types() -> list[str]:
    """Every message type of every channel (a type belongs to exactly one channel)."""
    return [message_type for spec in CHANNELS.values() for message_type in spec.message_types]


def message_type_choices() -> list[tuple[str, str]]:
    labels = {"sms": "SMS", "mms": "MMS", "whatsapp": "WhatsApp"}
    return [(message_type, labels.get(message_type, message_type.title())) for message_type in message_types()]


def channel_for_type(message_type: str) -> str | None:
    return next((spec.name for spec in CHANNELS.values() if message_type in spec.message_types), None)


def address_normalise(raw: str, *, channel: str, field: str = "address") -> str:
    """``raw`` as the channel stores it; ``InvalidAddress`` (400) when it is not an address there."""
    return CHANNELS[channel].address.normalise(raw, field=field)
