"""Shared OpenAPI pieces: the error envelope and the answers every endpoint may give."""

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse, inline_serializer
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

ERROR_RESPONSES = {
    400: OpenApiResponse(ErrorEnvelope, "Invalid input"),
    404: OpenApiResponse(ErrorEnvelope, "Not found"),
}

WRITE_ERROR_RESPONSES = {
    400: OpenApiResponse(ErrorEnvelope, "Invalid input (malformed JSON, missing or invalid fields)"),
    413: OpenApiResponse(ErrorEnvelope, "Request body too large"),
    415: OpenApiResponse(ErrorEnvelope, "Content-Type is not application/json"),
}


def strip_trailing_slashes(endpoints, **kwargs):
    """drf-spectacular hook: document paths as the contract writes them (a trailing slash is optional)."""
    return [
        (path.rstrip("/") if path != "/" else path, path_regex, method, callback)
        for path, path_regex, method, callback in endpoints
    ]


class EnvelopeListSchema(AutoSchema):
    """Our list actions answer one envelope object, not a bare array: don't wrap it in one."""

    def _is_list_view(self, serializer=None) -> bool:
        return False

    def get_operation_id(self) -> str:
        operation_id = super().get_operation_id()
        if getattr(self.view, "action", None) == "list" and operation_id.endswith("_retrieve"):
            return operation_id.removesuffix("_retrieve") + "_list"
        return operation_id
