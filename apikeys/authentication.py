"""DRF authentication by API key: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

A presented key is always checked, whether or not ``API_AUTH_REQUIRED`` is on: a malformed, unknown
or revoked key is a 401 ``invalid_api_key`` either way, so a client learns that its key is wrong
before enforcement is switched on. Whether a request *without* a key may pass is the permission's
decision (``apikeys.permissions.HasApiKey``).
"""

from __future__ import annotations

from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from apikeys.models import ApiKey
from apikeys.services import api_key_authenticate

AUTH_SCHEME = "Bearer"
API_KEY_HEADER = "X-API-Key"
INVALID_API_KEY = "invalid_api_key"


def _invalid(message: str) -> AuthenticationFailed:
    return AuthenticationFailed(message, code=INVALID_API_KEY)


def _bearer_key(request: Request) -> str | None:
    """The key in ``Authorization: Bearer <key>``; None when there is no Bearer credential at all.

    Other schemes (Basic from a proxy in front of the service, say) are not ours and are ignored.
    """
    authorization = request.META.get("HTTP_AUTHORIZATION")
    if authorization is None:
        return None
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != AUTH_SCHEME.lower():
        return None
    credentials = credentials.strip()
    if not credentials or " " in credentials:
        raise _invalid("Malformed Authorization header: send 'Authorization: Bearer <key>'.")
    return credentials


def _header_key(request: Request) -> str | None:
    value = request.META.get("HTTP_X_API_KEY")
    if value is None:
        return None
    if not value.strip():
        raise _invalid(f"The {API_KEY_HEADER} header is empty.")
    return value.strip()


class ApiKeyAuthentication(BaseAuthentication):
    """Sets ``request.auth`` to the ``ApiKey`` (``request.user`` stays None: keys belong to clients, not users)."""

    def authenticate(self, request: Request) -> tuple[None, ApiKey] | None:
        bearer, header = _bearer_key(request), _header_key(request)
        if bearer is not None and header is not None and bearer != header:
            raise _invalid(f"Authorization and {API_KEY_HEADER} carry different keys; send one.")
        presented = bearer or header
        if presented is None:
            return None
        api_key = api_key_authenticate(presented=presented)
        if api_key is None:
            raise _invalid("The API key is malformed, unknown or revoked.")
        return None, api_key

    def authenticate_header(self, request: Request) -> str:
        # Makes DRF answer 401 (not 403) with WWW-Authenticate when authentication is missing or fails.
        return AUTH_SCHEME
