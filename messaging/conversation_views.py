"""GET /api/conversations/{id}: the conversation with the newest page of its messages.

Lives in messaging because it serialises messages (dependencies point messaging -> conversations).
"""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from conversations.serializers import ConversationDetailQuerySerializer, ConversationSerializer
from conversations.views import ConversationViewSet
from core.openapi import ERROR_RESPONSES
from messaging.inbox import conversation_thread_page
from messaging.serializers import MessageSerializer


class ConversationDetailSerializer(ConversationSerializer):
    """A conversation with one page of its messages, newest first."""

    messages = MessageSerializer(
        many=True, read_only=True, source="messages_page", help_text="The requested page, newest first."
    )
    messages_meta = inline_serializer(
        "ConversationMessagesMeta",
        {
            "page": serializers.IntegerField(),
            "limit": serializers.IntegerField(),
            "total": serializers.IntegerField(help_text="Messages in the conversation."),
        },
        read_only=True,
    )

    class Meta(ConversationSerializer.Meta):
        fields = [*ConversationSerializer.Meta.fields, "messages", "messages_meta"]
        read_only_fields = fields


class InboxConversationViewSet(ConversationViewSet):
    @extend_schema(
        tags=["conversations"],
        parameters=[ConversationDetailQuerySerializer],
        responses={200: ConversationDetailSerializer, **ERROR_RESPONSES},
        summary="Get one conversation with its newest messages",
        description=(
            "`messages` holds page `page` of the conversation's messages, newest first, `limit` per page "
            "(default 50, max 200); `messages_meta` says which page and how many messages there are."
        ),
    )
    def retrieve(self, request, pk=None):
        query = ConversationDetailQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        thread = conversation_thread_page(conversation_id=pk, page=query.page_request)
        conversation = thread.conversation
        # The detail serializer reads the page of messages and its meta from these two attributes.
        conversation.messages_page = thread.messages  # type: ignore[attr-defined]
        conversation.messages_meta = {  # type: ignore[attr-defined]
            "page": thread.page.page,
            "limit": thread.page.limit,
            "total": thread.total,
        }
        data = ConversationDetailSerializer(conversation).data
        return Response(data)
