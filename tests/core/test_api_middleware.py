"""API requests skip the back office's middleware (static files, sessions, CSRF, users, flash messages)
and answer exactly as through the full chain, and the usual content negotiation is answered without
parsing; everything else behaves as Django and DRF do."""

from __future__ import annotations

import json

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.core import checks
from django.middleware.csrf import CsrfViewMiddleware
from django.test import Client, RequestFactory, override_settings
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request

from core.middleware import api_middleware
from core.negotiation import JsonFirstContentNegotiation
from tests import payloads

LANE = "core.middleware.ApiLaneMiddleware"

#: API requests of every kind of answer: a page, not found, bad JSON, an unsupported media type, a
#: method not allowed, a body over the limit, a disallowed host, and plain HTTP behind the proxy.
API_REQUESTS = [
    ("get", "/api/conversations/", {}),
    ("get", "/api/conversations/999999/messages", {}),
    ("get", "/api/nowhere", {}),
    ("post", "/api/webhooks/sms", {"data": "{not json", "content_type": "application/json"}),
    ("post", "/api/webhooks/sms", {"data": "hello", "content_type": "text/plain"}),
    ("put", "/api/webhooks/sms", {"data": "{}", "content_type": "application/json"}),
    ("post", "/api/messages/sms", {"data": json.dumps({"from": "nobody"}), "content_type": "application/json"}),
    ("post", "/api/messages/sms", {"data": "x" * 2_000_000, "content_type": "application/json"}),
    ("get", "/api/conversations/", {"HTTP_HOST": "evil.example"}),
    ("get", "/api/conversations/", {"secure": False}),
    ("options", "/api/webhooks/sms", {}),
]

PRODUCTION_LIKE = {
    "ALLOWED_HOSTS": ["testserver"],
    "SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https"),
    "SECURE_SSL_REDIRECT": True,
    "SECURE_HSTS_SECONDS": 3600,
}


def _answer(method: str, path: str, extra: dict):
    extra = dict(extra)
    secure = extra.pop("secure", True)
    headers = {"HTTP_X_REQUEST_ID": "same-id", **({"HTTP_X_FORWARDED_PROTO": "https"} if secure else {})}
    response = getattr(Client(raise_request_exception=False), method)(path, **extra, **headers)
    return response.status_code, sorted(response.items()), response.content


@pytest.mark.django_db
@pytest.mark.parametrize(("method", "path", "extra"), API_REQUESTS)
def test_an_api_request_answers_as_through_the_full_chain(method, path, extra):
    with override_settings(**PRODUCTION_LIKE):
        through_the_lane = _answer(method, path, extra)
    with override_settings(**PRODUCTION_LIKE, MIDDLEWARE=[m for m in django_settings.MIDDLEWARE if m != LANE]):
        through_everything = _answer(method, path, extra)
    assert through_the_lane == through_everything


@pytest.mark.django_db
def test_api_requests_skip_the_back_office_middleware(monkeypatch):
    for middleware in (SessionMiddleware, CsrfViewMiddleware, AuthenticationMiddleware, MessageMiddleware):
        monkeypatch.setattr(middleware, "process_request", _refuse)
    client = Client()
    assert client.get("/api/conversations/").status_code == 200
    assert client.post("/api/webhooks/sms", payloads.inbound_sms(), content_type="application/json").status_code == 200
    assert client.get("/api/docs").status_code == 200
    assert client.get("/api/nowhere").status_code == 404


def _refuse(self, request):
    raise AssertionError(f"{type(self).__name__} ran for {request.path}")


@pytest.mark.django_db
def test_the_back_office_gets_sessions_csrf_and_users():
    response = Client().get("/admin/login/")
    assert response.status_code == 200
    assert "csrftoken" in response.cookies
    assert response.wsgi_request.user.is_anonymous  # AuthenticationMiddleware ran
    assert hasattr(response.wsgi_request, "session")
    assert hasattr(response.wsgi_request, "_messages")


def test_the_lane_keeps_the_rest_of_the_chain_in_order(settings):
    lane = api_middleware()
    assert lane == [
        "django.middleware.security.SecurityMiddleware",
        "core.middleware.RequestSizeLimitMiddleware",
        "core.middleware.JsonErrorMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ]
    after_the_lane = settings.MIDDLEWARE[settings.MIDDLEWARE.index(LANE) + 1 :]
    assert [m for m in after_the_lane if m in lane] == lane
    assert set(after_the_lane) - set(lane) <= set(settings.BACK_OFFICE_MIDDLEWARE)


def test_the_admin_checks_accept_the_middleware():
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
