from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from core.errors import error_body
from core.openapi import WRITE_ERROR_RESPONSES
from webhooks.models import WebhookKind
from webhooks.parsing import (
    INBOUND_EMAIL,
    INBOUND_SMS,
    InboundEmailSerializer,
    InboundSmsSerializer,
    InboundSpec,
    PayloadRejected,
    parse_inbound,
    raw_webhook,
)
from webhooks.services import webhook_receive_inbound, webhook_record_rejected

WebhookAck = inline_serializer(
    "WebhookAck",
    {
        "status": serializers.ChoiceField(choices=["processed", "duplicate"]),
        "event_id": serializers.CharField(),
        "message_id": serializers.IntegerField(allow_null=True),
    },
)

_INBOUND_RESPONSES = {
    200: OpenApiResponse(WebhookAck, "Stored (first delivery) or recognised as a duplicate; nothing created twice."),
    **WRITE_ERROR_RESPONSES,
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

    def _inbound(self, request, spec: InboundSpec) -> Response:
        raw = raw_webhook(request, provider=spec.provider, kind=WebhookKind.INBOUND)
        try:
            inbound = parse_inbound(raw, spec)
        except PayloadRejected as rejection:
            webhook_record_rejected(raw=raw, error=f"{rejection.code}: {rejection.message}")
            return Response(error_body(rejection.code, rejection.message, rejection.details), status=rejection.status)
        result = webhook_receive_inbound(raw=raw, inbound=inbound)
        return Response(
            {
                "status": "duplicate" if result.duplicate else "processed",
                "event_id": result.event.event_id,
                "message_id": result.message.pk if result.message else None,
            }
        )
