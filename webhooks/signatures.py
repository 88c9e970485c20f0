"""The Django side of webhook signatures: the request as the provider signed it, and one runtime rule
for when a signature is required. Each provider's own scheme lives in its module (providers/)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.utils.encoding import escape_uri_path, iri_to_uri

from providers.base import Provider, SignedRequest


def signatures_required(provider: Provider) -> bool:
    """A provider's webhooks must be signed when one of its secrets is set, or whenever
    WEBHOOK_SIGNATURES_REQUIRED is on (then a provider without secrets accepts nothing)."""
    return settings.WEBHOOK_SIGNATURES_REQUIRED or provider_has_secret(provider)


def provider_has_secret(provider: Provider) -> bool:
    return any(getattr(settings, name, None) for name in provider.secret_settings)


def signed_request_from_django(request: HttpRequest) -> SignedRequest:
    """Builds the SignedRequest for a Django (or DRF) request.

    Call it before anything parses the body (``request.POST``, DRF's ``request.data``): Django can
    hand out the raw body only once it has been read as such.
    """
    return SignedRequest(
        method=request.method or "",
        url=public_url(request),
        headers=request.headers,
        body=request.body,
        content_type=request.META.get("CONTENT_TYPE", ""),
    )


def public_url(request: HttpRequest) -> str:
    """The URL the provider called. Behind a proxy the scheme, host and port Django sees are not the
    ones the provider signed, so PUBLIC_BASE_URL (the public URL of the application root, with any
    path prefix the proxy strips) replaces them; the path inside the application and the raw query
    string are kept.
    """
    base = settings.PUBLIC_BASE_URL
    if not base:
        return request.build_absolute_uri()
    url = base + escape_uri_path(request.path_info)
    query = request.META.get("QUERY_STRING", "")
    return f"{url}?{iri_to_uri(query)}" if query else url
