from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from conversations.selectors import InboxFilters, conversation_list_page
from conversations.serializers import ConversationListQuerySerializer, ConversationSerializer
from conversations.services import (
    conversation_archive,
    conversation_close,
    conversation_mark_read,
    conversation_reopen,
    conversation_unarchive,
)
from core.openapi import ERROR_RESPONSES, EnvelopeListSchema
from core.pagination import envelope_serializer, page_response

_LIST_FILTERS = ("channel", "status", "participant", "unread", "archived", "q")


def _state_change(summary: str, description: str):
    return extend_schema(
        tags=["conversations"],
        request=None,
        responses={200: OpenApiResponse(ConversationSerializer, description), **ERROR_RESPONSES},
        summary=summary,
        description=f"{description} Idempotent: repeating it answers 200 with the conversation unchanged.",
    )


class ConversationViewSet(viewsets.ViewSet):
    """Browse conversations: newest activity first. ``retrieve`` (with the thread's messages) is added by
    messaging.conversation_views, since conversations does not depend on messaging."""

    schema = EnvelopeListSchema()

    lookup_value_regex = "[^/]+"

    @extend_schema(
        tags=["conversations"],
        parameters=[ConversationListQuerySerializer],
        responses={200: envelope_serializer("ConversationPage", ConversationSerializer), **ERROR_RESPONSES},
        summary="List conversations",
        description="Archived conversations are hidden unless `archived=true`.",
    )
    def list(self, request):
        query = ConversationListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = InboxFilters(**{key: query.validated_data.get(key) for key in _LIST_FILTERS})
        page = query.page_request
        conversations, total = conversation_list_page(filters=filters, page=page)
        return page_response(conversations, page, ConversationSerializer, total=total)

    @extend_schema(
        tags=["conversations"],
        request=None,
        responses={200: OpenApiResponse(ConversationSerializer, "unread_count is 0"), **ERROR_RESPONSES},
        summary="Mark a conversation read",
    )
    @action(detail=True, methods=["post"])
    def read(self, request, pk=None):
        return Response(ConversationSerializer(conversation_mark_read(conversation_id=pk)).data)

    @_state_change("Close a conversation", "status becomes closed; an inbound message reopens it.")
    @action(detail=True, methods=["post"])
    def close(self, request, pk=None):
        return Response(ConversationSerializer(conversation_close(conversation_id=pk)).data)

    @_state_change("Reopen a conversation", "status becomes open.")
    @action(detail=True, methods=["post"])
    def reopen(self, request, pk=None):
        return Response(ConversationSerializer(conversation_reopen(conversation_id=pk)).data)

    @_state_change(
        "Archive a conversation",
        "archived_at is set; the conversation leaves the default list until unarchived or an inbound message arrives.",
    )
    @action(detail=True, methods=["post"])
    def archive(self, request, pk=None):
        return Response(ConversationSerializer(conversation_archive(conversation_id=pk)).data)

    @_state_change("Unarchive a conversation", "archived_at becomes null.")
    @action(detail=True, methods=["post"])
    def unarchive(self, request, pk=None):
        return Response(ConversationSerializer(conversation_unarchive(conversation_id=pk)).data)
