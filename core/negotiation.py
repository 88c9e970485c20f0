"""Content negotiation with a shortcut for the API's usual request."""

from __future__ import annotations

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer

#: ``Accept`` values (or none at all) for which DRF's negotiation picks JSON with no media type
#: parameters: its answer, computed without parsing anything.
_PLAIN_JSON_ACCEPTS = frozenset({None, "*/*", "application/json"})


class JsonFirstContentNegotiation(DefaultContentNegotiation):
    """DRF's negotiation, answered at once when a view renders JSON only and the request asks for
    anything (no ``Accept``, ``*/*``) or for plain ``application/json``, with no query string (which
    could carry ``?format=``). That is nearly every API request, and DRF's general path (parsing the
    query string, the ``Accept`` header and each renderer's media type) cost a webhook about 2% of its
    Python (docs/PERFORMANCE.md, eighth round). Everything else, a 406 included, is DRF's."""

    def select_renderer(self, request, renderers, format_suffix=None):
        meta = request.META
        if (
            format_suffix is None
            and len(renderers) == 1
            and type(renderers[0]) is JSONRenderer
            and meta.get("HTTP_ACCEPT") in _PLAIN_JSON_ACCEPTS
            and not meta.get("QUERY_STRING")
        ):
            return renderers[0], renderers[0].media_type
        return super().select_renderer(request, renderers, format_suffix)
