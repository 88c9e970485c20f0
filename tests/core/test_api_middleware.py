"""API requests skip the back office's session, user and flash-message middleware, and the usual
content negotiation is answered without parsing; everything else behaves as Django and DRF do."""

from __future__ import annotations

import pytest
from django.core import checks
from django.http import HttpResponse
from django.test import RequestFactory
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request

from core.middleware import (
    BackOfficeAuthenticationMiddleware,
    BackOfficeMessageMiddleware,
    BackOfficeSessionMiddleware,
)
from core.negotiation import JsonFirstContentNegotiation

BACK_OFFICE_ATTRIBUTES = ("session", "user", "_messages")


def _chain(seen: dict):
    def view(request):
        seen.update({name: hasattr(request, name) for name in BACK_OFFICE_ATTRIBUTES})
        return HttpResponse()

    return BackOfficeSessionMiddleware(BackOfficeAuthenticationMiddleware(BackOfficeMessageMiddleware(view)))


@pytest.mark.parametrize("path", ["/admin/", "/admin/messaging/message/", "/health", "/apikeys"])
def test_the_back_office_gets_sessions_users_and_messages(path):
    seen: dict = {}
    _chain(seen)(RequestFactory().get(path))
    assert seen == dict.fromkeys(BACK_OFFICE_ATTRIBUTES, True)


@pytest.mark.parametrize("path", ["/api/messages/sms", "/api/webhooks/sms", "/api/conversations/", "/api/docs"])
def test_api_requests_skip_them(path):
    seen: dict = {}
    _chain(seen)(RequestFactory().post(path))
    assert seen == dict.fromkeys(BACK_OFFICE_ATTRIBUTES, False)


def test_the_settings_use_them_and_the_admin_checks_accept_them(settings):
    for name in ("BackOfficeSessionMiddleware", "BackOfficeAuthenticationMiddleware", "BackOfficeMessageMiddleware"):
        assert f"core.middleware.{name}" in settings.MIDDLEWARE
    errors = [message.id for message in checks.run_checks(tags=[checks.Tags.admin])]
    assert not {"admin.E408", "admin.E409", "admin.E410"} & set(errors)


def _request(**meta) -> Request:
    return Request(RequestFactory().get("/api/conversations/", **meta))


class _Unparsed(DefaultContentNegotiation):
    def get_accept_list(self, request):  # what DRF's general path starts with
        raise AssertionError("the Accept header was parsed")


class _Shortcut(JsonFirstContentNegotiation, _Unparsed):
    pass


@pytest.mark.parametrize("meta", [{}, {"HTTP_ACCEPT": "*/*"}, {"HTTP_ACCEPT": "application/json"}])
def test_plain_json_requests_are_answered_without_parsing_as_drf_answers_them(meta):
    renderers = [JSONRenderer()]
    renderer, media_type = _Shortcut().select_renderer(_request(**meta), renderers)
    assert (renderer, media_type) == DefaultContentNegotiation().select_renderer(_request(**meta), renderers)
    assert (renderer, media_type) == (renderers[0], "application/json")


@pytest.mark.parametrize(
    ("meta", "renderers", "expected"),
    [
        ({"HTTP_ACCEPT": "application/json; indent=4"}, [JSONRenderer()], "application/json; indent=4"),
        ({"HTTP_ACCEPT": "text/html"}, [JSONRenderer(), BrowsableAPIRenderer()], "text/html"),
        ({"QUERY_STRING": "format=json"}, [JSONRenderer()], "application/json"),
    ],
)
def test_anything_else_is_drfs(meta, renderers, expected):
    with pytest.raises(AssertionError, match="parsed"):
        _Shortcut().select_renderer(_request(**meta), renderers)
    assert JsonFirstContentNegotiation().select_renderer(_request(**meta), renderers)[1] == expected


@pytest.mark.django_db
@pytest.mark.parametrize("accept", ["text/html", ""])
def test_an_api_that_cannot_answer_in_json_is_still_a_406(client, accept):
    response = client.get("/api/conversations/", HTTP_ACCEPT=accept)
    assert response.status_code == 406
    assert response["Content-Type"] == "application/json"


@pytest.mark.django_db
def test_the_api_uses_the_shortcut(client, monkeypatch):
    def parsed(self, request):
        raise AssertionError("the Accept header was parsed")

    monkeypatch.setattr(DefaultContentNegotiation, "get_accept_list", parsed)
    response = client.get("/api/conversations/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
