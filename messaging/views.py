from __future__ import annotations

import time

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.response import Response

from core.errors import ValidationFailed
from core.metrics import record_attempt, record_send
from core.openapi import (
    ERROR_RESPONSES,
    NOT_BLANK_PATTERN,
    RATE_LIMIT_HEADERS,
    RATE_LIMIT_RESPONSES,
    WRITE_ERROR_RESPONSES,
    EnvelopeListSchema,
    ErrorEnvelope,
)
from core.pagination import envelope_serializer, paginated_response
from messaging.models import MessageStatus
from messaging.ratelimits import rate_limit_consume, rate_limit_headers, rate_limit_peek
from messaging.selectors import message_get, message_list_for_conversation
from messaging.serializers import (
    MessageListQuerySerializer,
    MessageSerializer,
    SendEmailSerializer,
    SendMessageSerializer,
    SendSmsSerializer,
    normalised_sender,
)
from messaging.services import SendCommand, message_send
from providers.base import ForcedError

#: How each state of a just-sent message answers: sent 201, retry scheduled 202, provider refused 502.
SEND_STATUS_CODES = {
    MessageStatus.PENDING: status.HTTP_202_ACCEPTED,
    MessageStatus.FAILED: status.HTTP_502_BAD_GATEWAY,
}

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    {"type": "string", "minLength": 1, "maxLength": 255, "pattern": NOT_BLANK_PATTERN},
    OpenApiParameter.HEADER,
    required=False,
    description="Same key and body: the original message, nothing sent again. Same key, other body: 422.",
)

_SEND_RESPONSES = {
    201: OpenApiResponse(MessageSerializer, "Sent: the provider accepted the message."),
    202: OpenApiResponse(MessageSerializer, "Pending: a transient provider failure; a retry is scheduled."),
    502: OpenApiResponse(
        MessageSerializer,
        "Failed: the provider rejected the message for good (with the mock providers: `_forceError` with any "
        "4xx code but 429; 429 and 5xx are transient and answer 202).",
    ),
    409: OpenApiResponse(
        ErrorEnvelope, "A repeat of an idempotent send whose original is still on its first attempt; retry later."
    ),
    422: OpenApiResponse(ErrorEnvelope, "Idempotency key reused with another body."),
    **WRITE_ERROR_RESPONSES,
    **RATE_LIMIT_RESPONSES,
}

_SMS_EXAMPLE = OpenApiExample(
    "MMS",
    request_only=True,
    value={
        "from": "+12016661234",
        "to": "+18045551234",
        "type": "mms",
        "body": "Hello! This is a test MMS message with attachment.",
        "attachments": ["https://example.com/image.jpg"],
        "timestamp": "2024-11-01T14:00:00Z",
    },
)
_FORCED_ERROR_EXAMPLE = OpenApiExample(
    "Transient failure once (answers 202, retried by the outbox)",
    request_only=True,
    value={
        "from": "+12016661234",
        "to": "+18045551234",
        "body": "Retry me",
        "_forceError": {"code": 503, "times": 1},
    },
)
_EMAIL_EXAMPLE = OpenApiExample(
    "Email",
    request_only=True,
    value={
        "from": "user@usehatchapp.com",
        "to": "contact@gmail.com",
        "body": "Hello! This is a test email message with <b>HTML</b> formatting.",
        "attachments": ["https://example.com/document.pdf"],
        "timestamp": "2024-11-01T14:00:00Z",
    },
)
_SENT_EXAMPLE = OpenApiExample(
    "Sent",
    response_only=True,
    status_codes=["201"],
    value={
        "id": 1,
        "conversation_id": 1,
        "direction": "outbound",
        "type": "mms",
        "from": "+12016661234",
        "to": "+18045551234",
        "body": "Hello! This is a test MMS message with attachment.",
        "attachments": ["https://example.com/image.jpg"],
        "status": "sent",
        "provider": "twilio",
        "provider_message_id": "MM5f0b6ab3a4b1c43d2e0f9f8a7b6c5d4e",
        "client_message_id": None,
        "timestamp": "2024-11-01T14:00:00Z",
        "attempts": 1,
        "next_attempt_at": None,
        "error": None,
        "created_at": "2026-11-22T10:00:00.123456Z",
        "updated_at": "2026-11-22T10:00:00.345678Z",
    },
)


def _send_command(data: dict, idempotency_key: str | None) -> SendCommand:
    client_message_id = data.get("client_message_id")
    if idempotency_key is not None:
        if not idempotency_key.strip() or len(idempotency_key) > 255:
            raise ValidationFailed(
                "Idempotency-Key must be 1 to 255 characters.",
                details={"Idempotency-Key": ["Must be 1 to 255 non-blank characters."]},
            )
        if client_message_id is not None and client_message_id != idempotency_key:
            raise ValidationFailed(
                "Idempotency-Key and client_message_id disagree; send one of them.",
                details={"client_message_id": ["Differs from the Idempotency-Key header."]},
            )
        client_message_id = idempotency_key
    forced = data.get("_forceError")
    return SendCommand(
        channel=data["channel"],
        type=data["type"],
        from_address=data["from_address"],
        to_address=data["to_address"],
        body=data["body"],
        attachments=data["attachments"],
        timestamp=data["timestamp"],
        client_message_id=client_message_id,
        forced_error=ForcedError(**forced) if forced else None,
    )


class MessageViewSet(viewsets.ViewSet):
    """Send SMS/MMS and Email; read one message."""

    lookup_value_regex = "[^/]+"

    @extend_schema(tags=["messages"], responses={200: MessageSerializer, **ERROR_RESPONSES}, summary="Get a message")
    def retrieve(self, request, pk=None):
        return Response(MessageSerializer(message_get(message_id=pk)).data)

    @extend_schema(
        tags=["messages"],
        summary="Send an SMS or MMS",
        request=SendSmsSerializer,
        parameters=[IDEMPOTENCY_HEADER, *RATE_LIMIT_HEADERS],
        responses=_SEND_RESPONSES,
        examples=[_SMS_EXAMPLE, _FORCED_ERROR_EXAMPLE, _SENT_EXAMPLE],
    )
    @action(detail=False, methods=["post"], url_path="sms")
    def sms(self, request):
        return self._send(request, SendSmsSerializer)

    @extend_schema(
        tags=["messages"],
        summary="Send an Email",
        request=SendEmailSerializer,
        parameters=[IDEMPOTENCY_HEADER, *RATE_LIMIT_HEADERS],
        responses=_SEND_RESPONSES,
        examples=[_EMAIL_EXAMPLE],
    )
    @action(detail=False, methods=["post"], url_path="email")
    def email(self, request):
        return self._send(request, SendEmailSerializer)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        for name, value in rate_limit_headers(request=request).items():  # every answer after the count
            response.setdefault(name, value)
        return response

    def _send(self, request, serializer_class: type[SendMessageSerializer]) -> Response:
        serializer = serializer_class(data=request.data)
        try:
            serializer.is_valid(raise_exception=True)
            command = _send_command(serializer.validated_data, request.headers.get("Idempotency-Key"))
        except (DRFValidationError, ValidationFailed):
            # Not counted, but answered with the headers of the sender's (or key's) current window.
            sender = normalised_sender(request.data, channel=serializer_class.channel)
            rate_limit_peek(request=request, channel=serializer_class.channel, sender=sender)
            raise
        rate_limit_consume(request=request, channel=command.channel, sender=command.from_address)
        started = time.monotonic()
        outcome = message_send(command=command)
        message = outcome.message
        if not outcome.replayed:
            record_attempt(
                channel=message.channel,
                provider=message.provider,
                outcome=message.status,
                source="inline",
                seconds=time.monotonic() - started,
            )
        record_send(channel=message.channel, provider=message.provider, outcome=message.status)
        # A repeat answers with the first answer's code (Stripe's semantics) and the message as it is now.
        answered_as = message.first_outcome if outcome.replayed and message.first_outcome else message.status
        return Response(
            MessageSerializer(message).data,
            status=SEND_STATUS_CODES.get(answered_as, status.HTTP_201_CREATED),
            headers={"Idempotent-Replayed": "true"} if outcome.replayed else None,
        )


class ConversationMessageViewSet(viewsets.ViewSet):
    """The messages of one conversation (served under /api/conversations/{id}/messages)."""

    schema = EnvelopeListSchema()

    @extend_schema(
        tags=["conversations"],
        summary="List a conversation's messages",
        parameters=[MessageListQuerySerializer],
        responses={200: envelope_serializer("MessagePage", MessageSerializer), **ERROR_RESPONSES},
    )
    def list(self, request, conversation_id=None):
        query = MessageListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        messages = message_list_for_conversation(conversation_id=conversation_id, order=query.validated_data["order"])
        return paginated_response(messages, query.page_request, MessageSerializer)
