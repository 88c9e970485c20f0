"""Page/limit paging with the list envelope of the HTTP contract (ARCHITECTURE.md): ``data``, the page's
items, and ``meta``, the page number, the limit and the total. (The envelope is built with keyword
arguments: its key is the contract's word, not the Meta provider's name.)"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from django.db.models import QuerySet
from rest_framework import serializers
from rest_framework.response import Response

from core.fields import QueryIntegerField, SharedFieldsSerializer

MAX_PAGE = 10_000_000


@dataclass(frozen=True)
class PageRequest:
    page: int
    limit: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.limit


class PageQuerySerializer(SharedFieldsSerializer):
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


def page_response(items: list, page: PageRequest, serializer_class, *, total: int) -> Response:
    """The list envelope of a page already read."""
    return Response(
        dict(
            data=serializer_class(items, many=True).data,
            meta={"page": page.page, "limit": page.limit, "total": total},
        )
    )


class Countable(Protocol):
    def count(self) -> int: ...


class LazyCount:
    """Counts the rows of a queryset that is built only if ``page_total`` has to count (a page read by a
    prepared statement need not build the ORM query at all)."""

    def __init__(self, build: Callable[[], QuerySet]) -> None:
        self._build = build

    def count(self) -> int:
        return self._build().count()


def page_total(
    queryset: Countable, page: PageRequest, items: list, *, kept: int | Callable[[], int | None] | None = None
) -> int:
    """How many rows ``queryset`` holds, knowing that ``items`` is its page ``page``, without a
    ``COUNT(*)`` where it can: a page that is not full is the last one, so the total is what lies
    before it plus its rows; an empty first page means none. Otherwise ``kept`` (a counter the
    database keeps, or a function reading it) is the answer when it is consistent with the page (at
    least the rows seen; no more than the offset when the page is empty), and the rows are counted
    when it is not. The check catches a counter below what the page shows (rows loaded behind the
    service's back, never counted); a counter that is wrong but high enough is believed, so a bulk load
    that bypasses the service must recount (docs/SCHEMA.md)."""
    seen = page.offset + len(items)
    if items and len(items) < page.limit:
        return seen
    if not items and page.offset == 0:
        return 0
    if callable(kept):
        kept = kept()
    if kept is not None and (kept >= seen if items else kept <= page.offset):
        return kept
    return queryset.count()


def envelope_serializer(name: str, item_serializer) -> serializers.Serializer:
    """The list envelope, for the OpenAPI schema."""
    meta = type(
        f"{name}Meta",
        (serializers.Serializer,),
        {"page": serializers.IntegerField(), "limit": serializers.IntegerField(), "total": serializers.IntegerField()},
    )
    return type(name, (serializers.Serializer,), dict(data=item_serializer(many=True), meta=meta()))()
