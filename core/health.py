"""Liveness and readiness probes. Open to everyone; no database work for liveness."""

from django.db import connection
from django.db.utils import DatabaseError
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core.database import database_unavailable_headers

_HealthSerializer = inline_serializer("Health", {"status": serializers.CharField()})


class OpenView(APIView):
    """No API key, ever: load balancers and orchestrators probe these."""

    authentication_classes = []
    permission_classes = [AllowAny]


class LivenessView(OpenView):
    @extend_schema(tags=["health"], responses={200: _HealthSerializer}, summary="Liveness")
    def get(self, request):
        return Response({"status": "ok"})


class ReadinessView(OpenView):
    @extend_schema(
        tags=["health"],
        responses={200: _HealthSerializer, 503: _HealthSerializer},
        summary="Readiness (checks the database)",
    )
    def get(self, request):
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except DatabaseError:
            # Bounded by DB_CONNECT_TIMEOUT / DB_QUERY_TIMEOUT (core.postgresql): under 2 s by default.
            return Response(
                {"status": "unavailable", "database": "unreachable"},
                status=503,
                headers=database_unavailable_headers(),
            )
        return Response({"status": "ok", "database": "ok"})
