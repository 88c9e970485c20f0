from __future__ import annotations

from django.conf import settings
from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import BasePermission

from apikeys.models import ApiKey


class HasApiKey(BasePermission):
    """Lets a request through if it carries a valid API key, or if ``API_AUTH_REQUIRED`` is off.

    The setting is read per request, so it can be switched in tests with ``override_settings``.
    """

    def has_permission(self, request, view) -> bool:
        if isinstance(request.auth, ApiKey) or not settings.API_AUTH_REQUIRED:
            return True
        # Raised here rather than returning False, to say how to authenticate instead of DRF's generic text.
        raise NotAuthenticated(
            "An API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'.",
            code="authentication_required",
        )
