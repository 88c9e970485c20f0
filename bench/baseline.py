"""The baseline: about the least a Django + DRF service can do per request, in one file.

`make bench` serves it beside the service, under the same gunicorn layout and on the same
PostgreSQL server (its own database), so every figure of the service is read as a ratio to it.
Per inbound message it validates with a serializer, finds or creates the conversation and inserts
the message in one transaction; a repeated provider id is answered 200 ``duplicate`` by the unique
constraint. The reads are a DRF page of conversations (newest activity first, with its COUNT) and
a page of one thread. No auth, no raw event, no counters, no rate limit: it is a floor, not a rival.

    DATABASE_URL=postgresql://... python -m bench.baseline create-schema
    DATABASE_URL=postgresql://... gunicorn bench.baseline:application
"""

from __future__ import annotations

import os
import sys

import dj_database_url
import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY=os.environ.get("BASELINE_SECRET_KEY", "baseline-" + "x" * 50),
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["django.contrib.contenttypes", "rest_framework"],
        MIDDLEWARE=["django.middleware.security.SecurityMiddleware", "django.middleware.common.CommonMiddleware"],
        DATABASES={"default": dj_database_url.parse(os.environ["DATABASE_URL"], conn_max_age=60)},
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        USE_TZ=True,
        REST_FRAMEWORK={
            "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
            "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
            "DEFAULT_AUTHENTICATION_CLASSES": [],
            "DEFAULT_PERMISSION_CLASSES": [],
            "UNAUTHENTICATED_USER": None,
        },
    )
    django.setup()

from django.core.wsgi import get_wsgi_application
from django.db import IntegrityError, connection, models, transaction
from django.urls import path
from rest_framework import generics, serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView


class Conversation(models.Model):
    channel = models.CharField(max_length=16)
    participant_a = models.CharField(max_length=320)
    participant_b = models.CharField(max_length=320)
    last_message_at = models.DateTimeField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "baseline"
        constraints = [
            models.UniqueConstraint(fields=["participant_a", "participant_b", "channel"], name="baseline_conv_unique")
        ]
        indexes = [models.Index(fields=["-last_message_at", "-id"], name="baseline_conv_activity")]

    def __str__(self) -> str:
        return f"{self.participant_a} <-> {self.participant_b}"


class Message(models.Model):
    conversation = models.ForeignKey(Conversation, on_delete=models.PROTECT, db_index=False)
    direction = models.CharField(max_length=16)
    type = models.CharField(max_length=16)
    from_address = models.CharField(max_length=320)
    to_address = models.CharField(max_length=320)
    body = models.TextField(blank=True, default="")
    attachments = models.JSONField(default=list)
    provider_message_id = models.CharField(max_length=255, null=True, unique=True)
    timestamp = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        app_label = "baseline"
        indexes = [models.Index(fields=["conversation", "timestamp", "id"], name="baseline_msg_thread")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.from_address} -> {self.to_address}"


class InboundSerializer(serializers.Serializer):
    messaging_provider_id = serializers.CharField(max_length=255)
    type = serializers.ChoiceField(choices=["sms", "mms"], default="sms")
    body = serializers.CharField(allow_blank=True, default="")
    attachments = serializers.ListField(child=serializers.URLField(), allow_null=True, required=False)
    timestamp = serializers.DateTimeField()

    def to_internal_value(self, data):
        values = super().to_internal_value(data)
        for name in ("from", "to"):
            value = data.get(name) if isinstance(data, dict) else None
            if not isinstance(value, str) or not value:
                raise serializers.ValidationError({name: ["This field is required."]})
            values[name] = value
        return values


class InboundView(APIView):
    def post(self, request):
        serializer = InboundSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        participant_a, participant_b = sorted((data["from"], data["to"]))
        try:
            with transaction.atomic():
                conversation, _ = Conversation.objects.get_or_create(
                    channel="sms", participant_a=participant_a, participant_b=participant_b
                )
                message = Message.objects.create(
                    conversation=conversation,
                    direction="inbound",
                    type=data["type"],
                    from_address=data["from"],
                    to_address=data["to"],
                    body=data["body"],
                    attachments=data.get("attachments") or [],
                    provider_message_id=data["messaging_provider_id"],
                    timestamp=data["timestamp"],
                )
        except IntegrityError:
            return Response({"status": "duplicate", "event_id": data["messaging_provider_id"]})
        return Response({"status": "processed", "event_id": data["messaging_provider_id"], "message_id": message.pk})


class ConversationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Conversation
        fields = ["id", "channel", "participant_a", "participant_b", "last_message_at", "created_at"]


class MessageSerializer(serializers.ModelSerializer):
    class Meta:
        model = Message
        fields = ["id", "conversation_id", "direction", "type", "from_address", "to_address", "body", "timestamp"]


class ConversationPage(PageNumberPagination):
    page_size = 20


class MessagePage(PageNumberPagination):
    page_size = 50


class ConversationList(generics.ListAPIView):
    serializer_class = ConversationSerializer
    pagination_class = ConversationPage
    queryset = Conversation.objects.order_by("-last_message_at", "-id")


class ThreadPage(generics.ListAPIView):
    serializer_class = MessageSerializer
    pagination_class = MessagePage

    def get_queryset(self):
        return Message.objects.filter(conversation_id=self.kwargs["pk"]).order_by("-timestamp", "-id")


urlpatterns = [
    path("api/webhooks/sms", InboundView.as_view()),
    path("api/conversations", ConversationList.as_view()),
    path("api/conversations/<int:pk>/messages", ThreadPage.as_view()),
]

application = get_wsgi_application()


def create_schema() -> None:
    with connection.schema_editor() as editor:
        editor.create_model(Conversation)
        editor.create_model(Message)


if __name__ == "__main__":
    if sys.argv[1:] != ["create-schema"]:
        sys.exit("usage: python -m bench.baseline create-schema")
    create_schema()
