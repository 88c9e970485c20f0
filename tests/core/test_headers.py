"""Headers read straight from the WSGI environment are the ones ``request.headers`` gives."""

import pytest
from django.test import RequestFactory

from core.headers import request_header
from webhooks.models import WebhookEvent

NAMES = [
    "Content-Type",
    "content-type",
    "Content-Length",
    "X-Request-ID",
    "x-request-id",
    "Idempotency-Key",
    "Prefer",
    "User-Agent",
    "X-Twilio-Signature",
    "Missing-Header",
]


@pytest.mark.parametrize("name", NAMES)
def test_a_header_reads_as_request_headers_reads_it(name):
    request = RequestFactory().post(
        "/api/webhooks/sms",
        data=b"{}",
        content_type="application/json; charset=utf-8",
        HTTP_X_REQUEST_ID="abc-123",
        HTTP_IDEMPOTENCY_KEY="key 1",
        HTTP_PREFER="respond-async, wait=5",
        HTTP_USER_AGENT="TwilioProxy/1.1",
        HTTP_X_TWILIO_SIGNATURE="c2lnbmF0dXJl",
    )
    assert request_header(request, name) == request.headers.get(name)
    assert request_header(request, name, "absent") == request.headers.get(name, "absent")


@pytest.mark.django_db
def test_the_hot_paths_leave_request_headers_unbuilt(client):
    # An inbound webhook and its request log read their headers by name; Django's HttpHeaders (every
    # header title-cased) is never made for them.
    response = client.post(
        "/api/webhooks/sms",
        data=b'{"from": "+12025550100", "to": "+18045551234", "type": "sms", "messaging_provider_id": "h-1",'
        b' "body": "hi", "attachments": null, "timestamp": "2026-01-01T00:00:00Z"}',
        content_type="application/json",
        HTTP_X_REQUEST_ID="req-1",
    )
    assert response.status_code == 200
    assert response["X-Request-ID"] == "req-1"
    assert "headers" not in response.wsgi_request.__dict__
    stored = WebhookEvent.objects.get().headers
    assert (stored["Content-Type"], stored["X-Request-Id"]) == ("application/json", "req-1")
    assert "User-Agent" not in stored  # none was sent
