"""Shared OpenAPI pieces: the error envelope and the answers every endpoint may give."""

from django.core.validators import RegexValidator
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, inline_serializer
from rest_framework import serializers

ErrorEnvelope = inline_serializer(
    "ErrorEnvelope",
    {
        "error": inline_serializer(
            "Error",
            {
                "code": serializers.CharField(help_text="Machine-readable, e.g. validation_error, not_found."),
                "message": serializers.CharField(),
                "details": serializers.DictField(help_text="Per-field problems for validation errors."),
            },
        )
    },
)

#: This API's own string formats; standard ones (``email``, ``date-time``) keep their standard meaning.
#: bin/fuzz_hooks.py tells schemathesis how to make values of each.
PHONE_FORMAT = "phone"
PHONE_OR_EMAIL_FORMAT = "phone-or-email"
HTTP_URL_FORMAT = "http-url"
PHONE_DESCRIPTION = (
    "a phone number: E.164 (+12015550123) preferred, national numbers are read in the service's default "
    "region; it must have the right length for its country"
)

#: "Holds a character other than whitespace", whitespace being what Python's str.strip() removes (DRF
#: trims text fields with it, and so do the webhook parsers), spelled out: ECMAScript's \s, which the
#: schema's readers use, differs (it lacks \x1c-\x1f and \x85 and adds \ufeff).
NOT_BLANK_PATTERN = r"[^\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"

ERROR_RESPONSES = {
    400: OpenApiResponse(ErrorEnvelope, "Invalid input"),
    404: OpenApiResponse(ErrorEnvelope, "Not found"),
}

#: Added by ApiSchema to every operation that takes an API key; not listed per view.
AUTH_ERROR_RESPONSE = OpenApiResponse(
    ErrorEnvelope,
    "API key missing (authentication_required) or malformed, unknown or revoked (invalid_api_key). "
    "A missing key is refused only when the service runs with API_AUTH_REQUIRED.",
)

WRITE_ERROR_RESPONSES = {
    400: OpenApiResponse(ErrorEnvelope, "Invalid input (malformed JSON, missing or invalid fields)"),
    413: OpenApiResponse(ErrorEnvelope, "Request body too large"),
    415: OpenApiResponse(ErrorEnvelope, "Content-Type is not application/json"),
}

RATE_LIMIT_RESPONSES = {
    429: OpenApiResponse(ErrorEnvelope, "Rate limited (`rate_limited`): too many sends for this key; see Retry-After."),
    503: OpenApiResponse(
        ErrorEnvelope,
        "Rate limiter unavailable (`rate_limit_unavailable`); only with RATE_LIMIT_FAIL_OPEN=false. See Retry-After.",
    ),
}

#: Answers given after a send was counted carry the X-RateLimit-* headers; so does a 400 whose key
#: (its valid sender, API key or client IP) can be told, read without counting.
_COUNTED = [201, 202, 400, 409, 422, 429, 502]


def _response_header(name: str, statuses: list[int], description: str) -> OpenApiParameter:
    return OpenApiParameter(name, OpenApiTypes.INT, OpenApiParameter.HEADER, response=statuses, description=description)


RATE_LIMIT_HEADERS = [
    _response_header("X-RateLimit-Limit", _COUNTED, "Sends allowed per window for this key."),
    _response_header("X-RateLimit-Remaining", _COUNTED, "Sends left in the current window."),
    _response_header("X-RateLimit-Reset", _COUNTED, "Unix time (seconds) when the next window starts."),
    _response_header("Retry-After", [429, 503], "Seconds to wait before sending again."),
]


def strip_trailing_slashes(endpoints, **kwargs):
    """drf-spectacular hook: document paths as the contract writes them (a trailing slash is optional)."""
    return [
        (path.rstrip("/") if path != "/" else path, path_regex, method, callback)
        for path, path_regex, method, callback in endpoints
    ]


def require_request_bodies(result, **kwargs):
    """drf-spectacular hook: every documented request body is required (none of our writes accepts an
    empty request; drf-spectacular cannot tell for schemas given as oneOf variants), and every
    operation may meet the HTTP server's own limit on the request line."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            if "requestBody" in operation:
                operation["requestBody"]["required"] = True
            operation.setdefault("responses", {}).setdefault("414", _URI_TOO_LONG)
    return result


#: Answered by gunicorn before the application runs (docs/API.md, Limits), so not in the envelope.
_URI_TOO_LONG = {"description": "Request line longer than the server's limit (4,094 bytes); nothing was done."}


def refuses_blank_text(field) -> bool:
    """A writable text field that trims its input and then refuses it blank: whitespace alone is a 400."""
    return (
        isinstance(field, serializers.CharField)
        and not field.read_only
        and field.trim_whitespace
        and not field.allow_blank
        # A field with a pattern of its own says what it accepts already.
        and not any(isinstance(validator, RegexValidator) for validator in field.validators)
    )


class ApiSchema(AutoSchema):
    """The project's schema class: operations that take an API key also document its 401, and text
    fields that refuse blank input say that whitespace alone is blank too."""

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        # minLength 1 alone would promise that " " is accepted; DRF trims it to "" and refuses it.
        if direction == "request" and refuses_blank_text(field) and schema and schema.get("type") == "string":
            schema.setdefault("pattern", NOT_BLANK_PATTERN)
        return schema

    def _get_parameters(self):
        parameters = super()._get_parameters()
        for parameter in parameters:
            # DRF reads an optional query parameter sent empty (?status=) as absent, not as a bad value.
            if parameter.get("in") == OpenApiParameter.QUERY and not parameter.get("required"):
                parameter["allowEmptyValue"] = True
        return parameters

    # A hook on drf-spectacular's response building (a private method, pinned with the package):
    # extend_schema(responses=...) replaces get_response_serializers() wholesale, so that cannot be it.
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if "401" not in responses and self._takes_credentials():
            responses["401"] = self._get_response_for_code(AUTH_ERROR_RESPONSE, "401", direction=direction)
        return responses

    def _takes_credentials(self) -> bool:
        # get_auth() lists the accepted security requirements; {} stands for "anonymous". A credential
        # that is sent is checked even where anonymous requests pass, so any real one can mean a 401.
        return any(self.get_auth())


class EnvelopeListSchema(ApiSchema):
    """Our list actions answer one envelope object, not a bare array: don't wrap it in one."""

    def _is_list_view(self, serializer=None) -> bool:
        return False

    def get_operation_id(self) -> str:
        operation_id = super().get_operation_id()
        if getattr(self.view, "action", None) == "list" and operation_id.endswith("_retrieve"):
            return operation_id.removesuffix("_retrieve") + "_list"
        return operation_id
