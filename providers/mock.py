"""In-process stand-ins for Twilio (SMS/MMS) and SendGrid (Email).

``MockProvider`` owns the pipeline (latency, timeout, forced and random failures, acceptance);
each subclass only shapes the provider's identifiers and response fields.
"""

from __future__ import annotations

import hashlib
import random
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from django.conf import settings

from providers.base import MessageProvider, OutboundMessage, ProviderError, ProviderTimeout, SendResult
from providers.segments import sms_segments

_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def _digest(token: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}:{token}".encode()).hexdigest()


class MockProvider(MessageProvider):
    def send(self, message: OutboundMessage) -> SendResult:
        self._simulate_latency()
        forced = message.forced_error
        if forced is not None and forced.applies_to(message.attempt):
            raise ProviderError.from_http_status(
                provider=self.name, status=forced.code, message=forced.message or _REASONS.get(forced.code, "Error")
            )
        if settings.MOCK_PROVIDER_FAILURE_RATE and random.random() < settings.MOCK_PROVIDER_FAILURE_RATE:
            raise ProviderError.from_http_status(provider=self.name, status=503, message="Service Unavailable")
        return self.accept(message)

    def _simulate_latency(self) -> None:
        low, high = settings.MOCK_PROVIDER_LATENCY_MS
        seconds = random.uniform(low, high) / 1000 if high else 0.0
        timeout = settings.PROVIDER_TIMEOUT_SECONDS
        if seconds > timeout:
            time.sleep(timeout)
            raise ProviderTimeout(provider=self.name, seconds=timeout)
        if seconds:
            time.sleep(seconds)

    def accept(self, message: OutboundMessage) -> SendResult:
        raise NotImplementedError


class MockTwilioProvider(MockProvider):
    """Twilio's Messages resource: sid ``SM``/``MM`` + 32 hex, status ``queued``."""

    name = "twilio"
    account_sid = "AC" + "0" * 32

    def accept(self, message: OutboundMessage) -> SendResult:
        prefix = "MM" if message.type == "mms" else "SM"
        # Derived from the idempotency token: the same message always gets the same sid.
        sid = prefix + _digest(message.idempotency_token, "twilio")[:32]
        now = format_datetime(datetime.now(UTC), usegmt=True)
        response: dict[str, Any] = {
            "sid": sid,
            "account_sid": self.account_sid,
            "messaging_service_sid": None,
            "from": message.from_address,
            "to": message.to_address,
            "body": message.body,
            "status": "queued",
            "num_segments": str(sms_segments(message.body)),
            "num_media": str(len(message.attachments)),
            "direction": "outbound-api",
            "api_version": "2010-04-01",
            "price": None,
            "price_unit": "USD",
            "error_code": None,
            "error_message": None,
            "date_created": now,
            "date_updated": now,
            "date_sent": None,
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        return SendResult(provider=self.name, provider_message_id=sid, status="queued", response=response)


class MockSendGridProvider(MockProvider):
    """SendGrid's v3 mail/send: 202 with ``X-Message-Id``; ids look like ``{16 hex}.filter001.{ts}.0``."""

    name = "sendgrid"

    def accept(self, message: OutboundMessage) -> SendResult:
        message_id = f"{_digest(message.idempotency_token, 'sendgrid')[:16]}.filter001.{int(time.time())}.0"
        response = {"statusCode": 202, "message_id": message_id, "body": None}
        return SendResult(provider=self.name, provider_message_id=message_id, status="accepted", response=response)
