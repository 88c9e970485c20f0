"""How Twilio's webhook endpoints are documented in the OpenAPI schema."""

from drf_spectacular.utils import OpenApiExample, inline_serializer
from rest_framework import serializers

from providers.payloads import MAX_ERROR_MESSAGE_LENGTH, MAX_EVENT_TYPE_LENGTH, MAX_SID_LENGTH, STATUS_NAME_PATTERN
from providers.twilio import InboundSmsSerializer

_STATUS_HELP = "queued, sending, sent, delivered, undelivered, failed, read, ... (SmsStatus is accepted too)."


# The four fields the service reads; Twilio's others (AccountSid, From, To, ApiVersion, ...) are kept
# with the stored request and otherwise ignored, so the schema leaves them open. Optional fields may be
# blank, and in JSON null: the parser takes either as absent.
def _status_serializer(name: str, *, nullable: bool):
    return inline_serializer(
        name,
        {
            "MessageSid": serializers.CharField(
                max_length=MAX_SID_LENGTH, help_text="The message's sid (SmsSid is accepted too)."
            ),
            "MessageStatus": serializers.RegexField(
                STATUS_NAME_PATTERN,
                max_length=MAX_EVENT_TYPE_LENGTH,
                help_text=_STATUS_HELP,
            ),
            "ErrorCode": serializers.CharField(
                required=False, allow_blank=True, allow_null=nullable, max_length=MAX_EVENT_TYPE_LENGTH
            ),
            "ErrorMessage": serializers.CharField(
                required=False, allow_blank=True, allow_null=nullable, max_length=MAX_ERROR_MESSAGE_LENGTH
            ),
        },
    )


TwilioStatusSerializer = _status_serializer("TwilioStatusCallback", nullable=True)
# A form's values are all text: it cannot carry a null, so its schema has none. Described as nullable,
# a field would let a schema reader build an "invalid" form (a value neither text nor null, such as {})
# that form encoding drops, i.e. a valid form the service rightly accepts.
TwilioStatusFormSerializer = _status_serializer("TwilioStatusCallbackForm", nullable=False)

INBOUND_DOCS = {
    "summary": "Inbound SMS/MMS",
    "request": InboundSmsSerializer,
    "examples": [
        OpenApiExample(
            "Inbound MMS",
            request_only=True,
            value={
                "from": "+18045551234",
                "to": "+12016661234",
                "type": "mms",
                "messaging_provider_id": "message-2",
                "body": "This is an incoming MMS message",
                "attachments": ["https://example.com/received-image.jpg"],
                "timestamp": "2024-11-01T14:00:00Z",
            },
        )
    ],
}

STATUS_DOCS = {
    "summary": "SMS status callback (Twilio)",
    "description": (
        "Form-encoded as Twilio sends it, or JSON with the same string fields. Other fields Twilio sends "
        "(AccountSid, From, To, ...) are stored with the request and otherwise ignored. "
        "Deduplicated by MessageSid + MessageStatus. "
        "A status only moves forward; an event for a message not stored yet is kept as an orphan "
        "and applied when it is."
    ),
    "request": {
        "application/x-www-form-urlencoded": TwilioStatusFormSerializer,
        "application/json": TwilioStatusSerializer,
    },
    "examples": [
        OpenApiExample(
            "Undelivered",
            request_only=True,
            value={
                "MessageSid": "SM5f0b6ab3a4b1c43d2e0f9f8a7b6c5d4e",
                "MessageStatus": "undelivered",
                "ErrorCode": "30003",
                "AccountSid": "AC00000000000000000000000000000000",
                "From": "+12016661234",
                "To": "+18045551234",
                "ApiVersion": "2010-04-01",
            },
        )
    ],
}
