"""Routes. Every API path answers with or without a trailing slash (``/?``), never by redirect."""

from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from core.health import LivenessView, ReadinessView
from core.metrics import metrics_view
from core.middleware import json_not_found
from messaging.conversation_views import InboxConversationViewSet
from messaging.views import ConversationMessageViewSet, MessageViewSet
from webhooks.views import webhook_urls


class OptionalSlashRouter(SimpleRouter):
    """DRF's router with the trailing slash optional (its constructor only knows on or off)."""

    def __init__(self) -> None:
        super().__init__()
        self.trailing_slash = "/?"


router = OptionalSlashRouter()
router.register("messages", MessageViewSet, basename="message")
router.register("conversations", InboxConversationViewSet, basename="conversation")
router.register(
    r"conversations/(?P<conversation_id>[^/]+)/messages", ConversationMessageViewSet, basename="conversation-message"
)

urlpatterns = [
    *webhook_urls(),
    re_path(r"^api/", include(router.urls)),
    re_path(r"^api/schema/?$", SpectacularAPIView.as_view(), name="schema"),
    re_path(r"^api/docs/?$", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    re_path(r"^health(?:z)?/?$", LivenessView.as_view(), name="health"),
    re_path(r"^health/ready/?$", ReadinessView.as_view(), name="health-ready"),
    re_path(r"^metrics/?$", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("admin", RedirectView.as_view(url="/admin/", permanent=False)),
    # Anything else is a JSON 404, with DEBUG on or off.
    re_path(r"^.*$", json_not_found),
]

handler400 = "core.middleware.json_bad_request"
handler403 = "core.middleware.json_forbidden"
handler404 = "core.middleware.json_not_found"
handler500 = "core.middleware.json_server_error"
