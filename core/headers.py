"""Request headers read by name straight from the WSGI environment (``request.META``).

``request.headers`` (Django's ``HttpHeaders``) turns every header of the request into a title-cased
name the first time it is read; the request hot paths read two or three headers by name, so they look
each one up under its WSGI name instead, and Django never builds the mapping for them. The value is
the one ``request.headers`` would give (the same environment entry), and a name is matched whatever
its case, as there."""

from __future__ import annotations

import functools

from django.http import HttpRequest
from django.http.request import HttpHeaders


@functools.cache
def wsgi_name(header: str) -> str:
    """``Content-Type`` -> ``CONTENT_TYPE``, ``X-Request-ID`` -> ``HTTP_X_REQUEST_ID``."""
    return HttpHeaders.to_wsgi_name(header)


def request_header(request: HttpRequest, header: str, default: str | None = None) -> str | None:
    """``request.headers.get(header, default)``."""
    return request.META.get(wsgi_name(header), default)
