"""A channel's rules for a message's content, from the channel registry: the message type, the
addresses normalised for the channel, a body that is not blank, and the channel's body limit.

Sends (the API serializers) and inbound webhooks (the webhook pipeline) both apply them here, so a
channel's rules live in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from conversations.addresses import InvalidAddress
from conversations.channels import ChannelSpec, channel_for_type


@dataclass(frozen=True)
class MessageContent:
    type: str
    from_address: str
    to_address: str


def content_check(
    *,
    spec: ChannelSpec,
    requested_type: str | None,
    raw_from: str,
    raw_to: str,
    body: str,
    attachments: list[str],
    describe_mismatch: str = "This endpoint carries {channel} messages; this payload is {type}.",
) -> tuple[MessageContent | None, dict[str, list[str]]]:
    """The normalised content, or None and the problems per field."""
    errors: dict[str, list[str]] = {}
    if requested_type is not None and channel_for_type(requested_type) is None:
        return None, {"type": [f"Must be one of: {', '.join(spec.message_types)}."]}
    message_type = spec.message_type(
        requested=requested_type, from_address=raw_from, to_address=raw_to, attachments=attachments
    )
    if message_type not in spec.message_types:
        return None, {"type": [describe_mismatch.format(channel=spec.name, type=message_type)]}
    addresses = {}
    for field, raw in (("from", raw_from), ("to", raw_to)):
        try:
            addresses[field] = spec.address.normalise(raw, field=field)
        except InvalidAddress as exc:
            errors.update(exc.details)
    if not body.strip() and not attachments:
        errors["body"] = ["Must not be blank unless attachments are given."]
    limit = spec.body_limit
    if len(body) > limit:
        errors["body"] = [f"Must be at most {limit} characters for {spec.name}; got {len(body)}."]
    if errors:
        return None, errors
    return MessageContent(type=message_type, from_address=addresses["from"], to_address=addresses["to"]), {}
