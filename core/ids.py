from typing import TypeVar

from django.db.models import Model, QuerySet

from core.errors import NotFound


def parse_id(value: object) -> int | None:
    """A resource id from a URL: plain ASCII digits within bigint range, else None."""
    text = str(value)
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        return None
    return int(text)


_M = TypeVar("_M", bound=Model)


def get_by_id(queryset: QuerySet[_M], raw_id: object, *, label: str) -> _M:
    """The row with this URL id, or a 404 for an unknown, non-numeric or out-of-range id."""
    pk = parse_id(raw_id)
    found = queryset.filter(pk=pk).first() if pk is not None else None
    if found is None:
        raise NotFound(f"{label} {raw_id} does not exist.")
    return found
