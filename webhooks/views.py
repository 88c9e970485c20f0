from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from core.errors import error_body
from core.openapi import WRITE_ERROR_RESPONSES, ErrorEnvelope
from core.parsers import StrictJSONParser
from webhooks.models import WebhookKind, WebhookOutcome
from webhooks.parsing import (
    INBOUND_EMAIL,
    INBOUND_SMS,
    MAX_ERROR_MESSAGE_LENGTH,
    MAX_EVENT_TYPE_LENGTH,
    MAX_SID_LENGTH,
    STATUS_NAME_PATTERN,
    InboundEmailSerializer,
    InboundSmsSerializer,
    InboundSpec,
    PayloadRejected,
    parse_inbound,
    parse_sendgrid_batch,
    parse_twilio_status,
    raw_webhook,
)
from webhooks.services import (
    webhook_receive_inbound,
    webhook_receive_sendgrid_item,
    webhook_receive_status,
    webhook_record_rejected,
    webhook_record_unverified,
)
from webhooks.signatures import VERIFIERS, SignatureInvalid, signatures_enabled_for, signed_request_from_django

WebhookAck = inline_serializer(
    "WebhookAck",
    {
        "status": serializers.ChoiceField(choices=["processed", "duplicate"]),
        "event_id": serializers.CharField(),
        "message_id": serializers.IntegerField(allow_null=True),
    },
)
StatusAck = inline_serializer(
    "StatusAck",
    {
        "status": serializers.ChoiceField(
            choices=["processed", "duplicate", "orphan"],
            help_text="orphan: the message is not known yet; the event is kept and applied when it is.",
        ),
        "event_id": serializers.CharField(),
        "message_id": serializers.IntegerField(allow_null=True),
    },
)
EventBatchAck = inline_serializer(
    "EventBatchAck",
    {
        "received": serializers.IntegerField(),
        "processed": serializers.IntegerField(),
        "duplicate": serializers.IntegerField(),
        "orphan": serializers.IntegerField(),
        "rejected": serializers.IntegerField(),
        "error": serializers.IntegerField(),
        "events": inline_serializer(
            "EventResult",
            {
                "index": serializers.IntegerField(),
                "event_id": serializers.CharField(allow_null=True),
                "status": serializers.ChoiceField(choices=WebhookOutcome.values),
                "message_id": serializers.IntegerField(allow_null=True),
                "error": serializers.CharField(required=False),
            },
            many=True,
        ),
    },
)
# The four fields the service reads; Twilio's others (AccountSid, From, To, ApiVersion, ...) are kept
# with the stored request and otherwise ignored, so the schema leaves them open. Optional fields may be
# blank or null: the parser takes either as absent (webhooks/parsing.py).
TwilioStatusSerializer = inline_serializer(
    "TwilioStatusCallback",
    {
        "MessageSid": serializers.CharField(
            max_length=MAX_SID_LENGTH, help_text="The message's sid (SmsSid is accepted too)."
        ),
        "MessageStatus": serializers.RegexField(
            STATUS_NAME_PATTERN,
            max_length=MAX_EVENT_TYPE_LENGTH,
            help_text="queued, sending, sent, delivered, undelivered, failed, read, ... (SmsStatus is accepted too).",
        ),
        "ErrorCode": serializers.CharField(
            required=False, allow_blank=True, allow_null=True, max_length=MAX_EVENT_TYPE_LENGTH
        ),
        "ErrorMessage": serializers.CharField(
            required=False, allow_blank=True, allow_null=True, max_length=MAX_ERROR_MESSAGE_LENGTH
        ),
    },
)
SendGridEventSerializer = inline_serializer(
    "SendGridEvent",
    {
        "sg_event_id": serializers.CharField(),
        "sg_message_id": serializers.CharField(),
        "event": serializers.CharField(
            help_text="processed, deferred, delivered, bounce, blocked, dropped, open, click, spamreport, ..."
        ),
        "email": serializers.CharField(required=False, allow_blank=True),
        "timestamp": serializers.IntegerField(required=False),
        "reason": serializers.CharField(required=False, allow_blank=True),
        "status": serializers.CharField(required=False, allow_blank=True),
    },
    many=True,
)

#: Every webhook: a signature that is missing, wrong or stale (when the provider's secret is set) is a 403.
WEBHOOK_ERROR_RESPONSES = {
    **WRITE_ERROR_RESPONSES,
    403: OpenApiResponse(ErrorEnvelope, "Signature missing, wrong or stale; the request is kept as rejected."),
}

_INBOUND_RESPONSES = {
    200: OpenApiResponse(WebhookAck, "Stored (first delivery) or recognised as a duplicate; nothing created twice."),
    **WEBHOOK_ERROR_RESPONSES,
}


class WebhookViewSet(viewsets.ViewSet):
    """Provider callbacks. Each request is stored raw with its outcome: processed, duplicate, rejected or error."""

    authentication_classes = []  # providers prove themselves by signature, not by API key
    permission_classes = [AllowAny]

    @extend_schema(
        tags=["webhooks"],
        summary="Inbound SMS/MMS",
        request=InboundSmsSerializer,
        responses=_INBOUND_RESPONSES,
        examples=[
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
    )
    @action(detail=False, methods=["post"], url_path="sms")
    def sms(self, request):
        return self._inbound(request, INBOUND_SMS)

    @extend_schema(
        tags=["webhooks"],
        summary="Inbound Email",
        request=InboundEmailSerializer,
        responses=_INBOUND_RESPONSES,
        examples=[
            OpenApiExample(
                "Inbound email",
                request_only=True,
                value={
                    "from": "contact@gmail.com",
                    "to": "user@usehatchapp.com",
                    "xillio_id": "message-3",
                    "body": "<html><body>This is an incoming email with <b>HTML</b> content</body></html>",
                    "attachments": ["https://example.com/received-document.pdf"],
                    "timestamp": "2024-11-01T14:00:00Z",
                },
            )
        ],
    )
    @action(detail=False, methods=["post"], url_path="email")
    def email(self, request):
        return self._inbound(request, INBOUND_EMAIL)

    @extend_schema(
        tags=["webhooks"],
        summary="SMS status callback (Twilio)",
        description=(
            "Form-encoded as Twilio sends it, or JSON with the same string fields. Other fields Twilio sends "
            "(AccountSid, From, To, ...) are stored with the request and otherwise ignored. "
            "Deduplicated by MessageSid + MessageStatus. "
            "A status only moves forward; an event for a message not stored yet is kept as an orphan "
            "and applied when it is."
        ),
        request={
            "application/x-www-form-urlencoded": TwilioStatusSerializer,
            "application/json": TwilioStatusSerializer,
        },
        responses={
            200: OpenApiResponse(StatusAck, "Stored and applied, kept as an orphan, or a duplicate."),
            **WEBHOOK_ERROR_RESPONSES,
        },
        examples=[
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
    )
    @action(detail=False, methods=["post"], url_path="sms/status", parser_classes=[StrictJSONParser, FormParser])
    def sms_status(self, request):
        raw = raw_webhook(request, provider="twilio", kind=WebhookKind.STATUS)
        if refused := self._unverified(request, raw):
            return refused
        try:
            status = parse_twilio_status(raw)
        except PayloadRejected as rejection:
            return self._rejected(raw, rejection)
        result = webhook_receive_status(raw=raw, status=status)
        return Response(
            {"status": result.outcome, "event_id": result.event.event_id, "message_id": result.event.message_id}
        )

    @extend_schema(
        tags=["webhooks"],
        summary="Email events (SendGrid)",
        description=(
            "A JSON array of SendGrid events. Each event is stored, deduplicated by sg_event_id and applied "
            "on its own: a malformed event is rejected without failing the rest, and a well-formed "
            "request always answers 200 with what became of each event."
        ),
        request=SendGridEventSerializer,
        responses={200: OpenApiResponse(EventBatchAck, "What became of each event."), **WEBHOOK_ERROR_RESPONSES},
        examples=[
            OpenApiExample(
                "Delivered and opened",
                request_only=True,
                value=[
                    {
                        "email": "contact@gmail.com",
                        "timestamp": 1730469600,
                        "event": "delivered",
                        "sg_event_id": "ZGVsaXZlcmVkLTAtMjQ",
                        "sg_message_id": "5f0b6ab3a4b1c43d.filter001.1730469600.0",
                        "smtp-id": "<5f0b6ab3a4b1c43d@ismtpd0001p1>",
                    },
                    {
                        "email": "contact@gmail.com",
                        "timestamp": 1730469700,
                        "event": "open",
                        "sg_event_id": "b3Blbi0wLTI0",
                        "sg_message_id": "5f0b6ab3a4b1c43d.filter001.1730469600.0",
                    },
                ],
            )
        ],
    )
    @action(detail=False, methods=["post"], url_path="email/events")
    def email_events(self, request):
        raw = raw_webhook(request, provider="sendgrid", kind=WebhookKind.STATUS)
        if refused := self._unverified(request, raw):
            return refused
        try:
            items = parse_sendgrid_batch(raw)
        except PayloadRejected as rejection:
            return self._rejected(raw, rejection)
        results = [webhook_receive_sendgrid_item(batch=raw, index=index, item=item) for index, item in enumerate(items)]
        counts = {outcome: 0 for outcome in WebhookOutcome.values}
        for result in results:
            counts[result["status"]] += 1
        return Response({"received": len(items), **counts, "events": results})

    def _unverified(self, request, raw) -> Response | None:
        """403 (and the request kept as rejected) unless the provider's signature checks out."""
        if not signatures_enabled_for(raw.provider):
            return None
        try:
            VERIFIERS[raw.provider](signed_request_from_django(request))
        except SignatureInvalid as invalid:
            webhook_record_unverified(raw=raw, error=f"{invalid.code}: {invalid.message}")
            return Response(error_body(invalid.code, invalid.message), status=403)
        return None

    def _rejected(self, raw, rejection: PayloadRejected) -> Response:
        webhook_record_rejected(raw=raw, error=f"{rejection.code}: {rejection.message}")
        return Response(error_body(rejection.code, rejection.message, rejection.details), status=rejection.status)

    def _inbound(self, request, spec: InboundSpec) -> Response:
        raw = raw_webhook(request, provider=spec.provider, kind=WebhookKind.INBOUND)
        if refused := self._unverified(request, raw):
            return refused
        try:
            inbound = parse_inbound(raw, spec)
        except PayloadRejected as rejection:
            return self._rejected(raw, rejection)
        result = webhook_receive_inbound(raw=raw, inbound=inbound)
        return Response(
            {
                "status": result.outcome,
                "event_id": result.event.event_id,
                "message_id": result.message.pk if result.message else None,
            }
        )
