from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from conversations.selectors import conversation_get, conversation_list
from conversations.serializers import ConversationListQuerySerializer, ConversationSerializer
from conversations.services import conversation_mark_read
from core.openapi import ERROR_RESPONSES, EnvelopeListSchema
from core.pagination import envelope_serializer, paginated_response


class ConversationViewSet(viewsets.ViewSet):
    """Browse conversations: newest activity first."""

    schema = EnvelopeListSchema()

    lookup_value_regex = "[^/]+"

    @extend_schema(
        tags=["conversations"],
        parameters=[ConversationListQuerySerializer],
        responses={200: envelope_serializer("ConversationPage", ConversationSerializer), **ERROR_RESPONSES},
        summary="List conversations",
    )
    def list(self, request):
        query = ConversationListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = {key: query.validated_data.get(key) for key in ("channel", "status", "participant")}
        return paginated_response(conversation_list(**filters), query.page_request, ConversationSerializer)

    @extend_schema(
        tags=["conversations"],
        responses={200: ConversationSerializer, **ERROR_RESPONSES},
        summary="Get one conversation",
    )
    def retrieve(self, request, pk=None):
        return Response(ConversationSerializer(conversation_get(conversation_id=pk)).data)

    @extend_schema(
        tags=["conversations"],
        request=None,
        responses={200: OpenApiResponse(ConversationSerializer, "unread_count is 0"), **ERROR_RESPONSES},
        summary="Mark a conversation read",
    )
    @action(detail=True, methods=["post"])
    def read(self, request, pk=None):
        return Response(ConversationSerializer(conversation_mark_read(conversation_id=pk)).data)
