from __future__ import annotations

import time

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.response import Response

from core.errors import ValidationFailed
from core.headers import request_header
from core.metrics import record_attempt, record_send
from core.openapi import ERROR_RESPONSES, RATE_LIMIT_HEADERS, EnvelopeListSchema
from core.pagination import envelope_serializer, page_response
from messaging.models import MessageStatus
from messaging.openapi import (
    ANY_CHANNEL_EXAMPLES,
    EMAIL_EXAMPLE,
    FORCED_ERROR_EXAMPLE,
    IDEMPOTENCY_HEADER,
    PREFER_HEADER,
    SEND_RESPONSES,
    SENT_EXAMPLE,
    SMS_EXAMPLE,
)
from messaging.ratelimits import rate_limit_consume, rate_limit_headers, rate_limit_peek
from messaging.selectors import message_get, message_thread_page
from messaging.serializers import (
    MessageListQuerySerializer,
    MessageSerializer,
    SendAnyChannelSerializer,
    SendEmailSerializer,
    SendMessageSerializer,
    SendSmsSerializer,
    normalised_sender,
    request_channel,
)
from messaging.services import SendCommand, message_send

#: How each state of a just-sent message answers: sent 201, retry scheduled 202, provider refused 502.
SEND_STATUS_CODES: dict[str, int] = {
    MessageStatus.PENDING: status.HTTP_202_ACCEPTED,
    MessageStatus.FAILED: status.HTTP_502_BAD_GATEWAY,
}


RESPOND_ASYNC = "respond-async"


def _prefers_async(request) -> bool:
    """Whether the request's ``Prefer`` header (RFC 7240) asks for ``respond-async``."""
    for header in (request_header(request, "Prefer") or "").split(","):
        preference = header.split(";", 1)[0].split("=", 1)[0].strip().lower()
        if preference == RESPOND_ASYNC:
            return True
    return False


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
    return SendCommand.from_validated(data, client_message_id=client_message_id)


class MessageViewSet(viewsets.ViewSet):
    """Send on any channel; read one message."""

    lookup_value_regex = "[^/]+"

    @extend_schema(
        tags=["messages"],
        summary="Send a message on any channel",
        description=(
            "One endpoint for every channel (sms, email, whatsapp, instagram). `from` defaults to the "
            "channel's business identity (WHATSAPP_PHONE_NUMBER, INSTAGRAM_ACCOUNT_ID) and is still "
            "required for sms and email. Same answers, idempotency and rate limits as the per-channel endpoints."
        ),
        request=SendAnyChannelSerializer,
        parameters=[IDEMPOTENCY_HEADER, PREFER_HEADER, *RATE_LIMIT_HEADERS],
        responses=SEND_RESPONSES,
        examples=ANY_CHANNEL_EXAMPLES,
    )
    def create(self, request):
        return self._send(request, SendAnyChannelSerializer)

    @extend_schema(tags=["messages"], responses={200: MessageSerializer, **ERROR_RESPONSES}, summary="Get a message")
    def retrieve(self, request, pk=None):
        return Response(MessageSerializer(message_get(message_id=pk)).data)

    @extend_schema(
        tags=["messages"],
        summary="Send an SMS or MMS",
        request=SendSmsSerializer,
        parameters=[IDEMPOTENCY_HEADER, PREFER_HEADER, *RATE_LIMIT_HEADERS],
        responses=SEND_RESPONSES,
        examples=[SMS_EXAMPLE, FORCED_ERROR_EXAMPLE, SENT_EXAMPLE],
    )
    @action(detail=False, methods=["post"], url_path="sms")
    def sms(self, request):
        return self._send(request, SendSmsSerializer)

    @extend_schema(
        tags=["messages"],
        summary="Send an Email",
        request=SendEmailSerializer,
        parameters=[IDEMPOTENCY_HEADER, PREFER_HEADER, *RATE_LIMIT_HEADERS],
        responses=SEND_RESPONSES,
        examples=[EMAIL_EXAMPLE],
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
            command = _send_command(serializer.validated_data, request_header(request, "Idempotency-Key"))
        except (DRFValidationError, ValidationFailed):
            # Not counted, but answered with the headers of the sender's (or key's) current window.
            endpoint_channel = None if serializer_class is SendAnyChannelSerializer else serializer_class.channel
            channel = request_channel(request.data, default=endpoint_channel)
            if channel is not None:
                sender = normalised_sender(request.data, channel=channel)
                rate_limit_peek(request=request, channel=channel, sender=sender)
            raise
        rate_limit_consume(request=request, channel=command.channel, sender=command.from_address)
        asked_async = _prefers_async(request)
        queue = asked_async or settings.SEND_MODE == "queue"
        started = time.monotonic()
        outcome = message_send(command=command, queue=queue)
        message = outcome.message
        if not outcome.replayed and not queue:
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
        headers = {}
        if outcome.replayed:
            headers["Idempotent-Replayed"] = "true"
        if asked_async:
            # Applied whether this request stored the message or repeated one: nothing was sent in it.
            headers["Preference-Applied"] = RESPOND_ASYNC
        return Response(
            MessageSerializer(message).data,
            status=SEND_STATUS_CODES.get(str(answered_as), status.HTTP_201_CREATED),
            headers=headers or None,
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
        page = query.page_request
        messages, total = message_thread_page(
            conversation_id=conversation_id, order=query.validated_data["order"], page=page
        )
        return page_response(messages, page, MessageSerializer, total=total)
