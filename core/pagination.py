"""Page/limit paging with the list envelope ``{"data": [...], "meta": {"page", "limit", "total"}}``."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet
from rest_framework import serializers
from rest_framework.response import Response

from core.fields import QueryIntegerField

MAX_PAGE = 10_000_000


@dataclass(frozen=True)
class PageRequest:
    page: int
    limit: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit


class PageQuerySerializer(serializers.Serializer):
    """``page`` and ``limit`` query parameters: bad values are a 400, a too-large limit is clamped."""

    DEFAULT_LIMIT = 20
    MAX_LIMIT = 100

    page = QueryIntegerField(min_value=1, max_value=MAX_PAGE, default=1)
    limit = QueryIntegerField(min_value=1, required=False)

    def validate(self, attrs):
        attrs["limit"] = min(attrs.get("limit", self.DEFAULT_LIMIT), self.MAX_LIMIT)
        return attrs

    @property
    def page_request(self) -> PageRequest:
        return PageRequest(page=self.validated_data["page"], limit=self.validated_data["limit"])


def paginated_response(queryset: QuerySet, page: PageRequest, serializer_class) -> Response:
    total = queryset.count()
    items = queryset[page.offset : page.offset + page.limit] if page.offset < total else []
    return Response(
        {
            "data": serializer_class(items, many=True).data,
            "meta": {"page": page.page, "limit": page.limit, "total": total},
        }
    )


def envelope_serializer(name: str, item_serializer) -> serializers.Serializer:
    """The list envelope, for the OpenAPI schema."""
    meta = type(
        f"{name}Meta",
        (serializers.Serializer,),
        {"page": serializers.IntegerField(), "limit": serializers.IntegerField(), "total": serializers.IntegerField()},
    )
    return type(name, (serializers.Serializer,), {"data": item_serializer(many=True), "meta": meta()})()
