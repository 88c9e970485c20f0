"""What the OpenAPI schema says about message payloads beyond their fields' types.

``MessagePayloadSerializer.validate`` enforces rules across fields; the schema states them as far as
JSON Schema can, so that a request the schema calls valid is one the service accepts: the address
format of the endpoint's channel, the channel's body length limit, http(s) attachment URLs, and "a
body that is not blank, or at least one attachment". Loaded by ``MessagingConfig.ready``.
"""

from django.conf import settings
from drf_spectacular.extensions import OpenApiSerializerExtension

from conversations.models import Channel
from core.openapi import HTTP_URL_FORMAT, NOT_BLANK_PATTERN, PHONE_DESCRIPTION, PHONE_FORMAT

_ADDRESSES = {
    Channel.SMS: (PHONE_FORMAT, PHONE_DESCRIPTION),
    Channel.EMAIL: ("email", "an e-mail address (a display name, `Name <a@example.com>`, is accepted)"),
}
_ATTACHMENT_DESCRIPTION = "An http(s) URL with a host name (with a top-level domain) or an IP address."


class MessagePayloadSchema(OpenApiSerializerExtension):
    target_class = "messaging.serializers.MessagePayloadSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        if direction != "request":
            return schema
        channel = self.target.channel
        properties = schema["properties"]
        address_format, address_description = _ADDRESSES[channel]
        for name, role in (("from", "Sender"), ("to", "Recipient")):
            properties[name]["format"] = address_format
            properties[name]["description"] = f"{role}: {address_description}."
        properties["attachments"]["items"]["format"] = HTTP_URL_FORMAT
        properties["attachments"]["items"]["description"] = _ATTACHMENT_DESCRIPTION
        limit = settings.SMS_MAX_BODY_CHARS if channel == Channel.SMS else settings.EMAIL_MAX_BODY_CHARS
        properties["body"]["maxLength"] = limit
        properties["body"]["description"] = (
            f"At most {limit} characters. May be blank or absent only when attachments are given."
        )
        schema["anyOf"] = [
            {"required": ["body"], "properties": {"body": {"type": "string", "pattern": NOT_BLANK_PATTERN}}},
            {"required": ["attachments"], "properties": {"attachments": {"type": "array", "minItems": 1}}},
        ]
        return schema
