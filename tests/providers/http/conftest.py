"""HTTP mode against the provider simulator (in this process, on a free port) or recorded answers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from providers import http
from providers.base import OutboundMessage
from providers.simulator.config import Credentials
from tests.providers.simulator.conftest import Sim, receiver, start_simulator  # noqa: F401  (fixtures)

ACCOUNT_SID = "AC" + "7" * 32
AUTH_TOKEN = "twilio-auth-token"
SENDGRID_KEY = "SG.test-key"
META_TOKEN = "meta-access-token"
PHONE_NUMBER_ID = "106540352242922"
IG_ACCOUNT_ID = "17841400000000042"
CREDENTIALS = Credentials(
    twilio_account_sid=ACCOUNT_SID,
    twilio_auth_token=AUTH_TOKEN,
    sendgrid_api_key=SENDGRID_KEY,
    meta_access_token=META_TOKEN,
    whatsapp_phone_number_id=PHONE_NUMBER_ID,
    instagram_account_id=IG_ACCOUNT_ID,
)
RECORDED = Path(__file__).parent / "recorded"


@pytest.fixture
def http_settings(settings):
    """PROVIDER_MODE=http with credentials; base URLs are set by ``point_at``. Short timeouts."""
    settings.PROVIDER_MODE = "http"
    settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
    settings.TWILIO_AUTH_TOKEN = [AUTH_TOKEN]
    settings.SENDGRID_API_KEY = SENDGRID_KEY
    settings.META_ACCESS_TOKEN = META_TOKEN
    settings.WHATSAPP_PHONE_NUMBER_ID = PHONE_NUMBER_ID
    settings.INSTAGRAM_ACCOUNT_ID = IG_ACCOUNT_ID
    settings.PROVIDER_TIMEOUT_SECONDS = 1.0
    settings.PROVIDER_CONNECT_TIMEOUT_SECONDS = 1.0
    settings.EMAIL_SUBJECT = None
    http.clients_close()
    yield settings
    http.clients_close()


def point_at(settings, url: str) -> None:
    settings.TWILIO_BASE_URL = settings.SENDGRID_BASE_URL = settings.META_GRAPH_BASE_URL = url


@pytest.fixture
def sim(http_settings, start_simulator) -> Sim:  # noqa: F811
    """A simulator checking every credential, with the service's base URLs pointing at it."""
    running = start_simulator(credentials=CREDENTIALS, callbacks=False)
    point_at(http_settings, running.url)
    return running


def inject_fault(provider: str, fault: str | None) -> None:
    """Every request of ``provider``'s pooled client carries ``X-Sim-Fail: fault`` (None: no fault)."""
    headers = http.client_for(provider).headers
    if fault is None:
        headers.pop("X-Sim-Fail", None)
    else:
        headers["X-Sim-Fail"] = fault


def answer_with(provider: str, handler: Callable[[httpx.Request], httpx.Response]) -> None:
    """Installs a client for ``provider`` whose every request is answered by ``handler`` (no network)."""
    http.clients_close()
    http.client_for(provider)  # created as usual, then swapped for one on a mock transport
    key = next(key for key in http._clients if key[0] == provider)
    http._clients[key] = httpx.Client(transport=httpx.MockTransport(handler))


def recorded(name: str) -> httpx.Response:
    """A recorded provider answer: ``{"status", "headers", "body"}`` (body JSON, or a string as is)."""
    data = json.loads((RECORDED / name).read_text())
    body = data.get("body")
    content = body.encode() if isinstance(body, str) else (b"" if body is None else json.dumps(body).encode())
    return httpx.Response(data["status"], headers=data.get("headers", {}), content=content)


def outbound(channel: str = "sms", *, token: str = "tok-1", **overrides) -> OutboundMessage:
    defaults = {
        "sms": {"type": "sms", "from_address": "+12015550100", "to_address": "+18045551234"},
        "mms": {"type": "mms", "from_address": "+12015550100", "to_address": "+18045551234"},
        "email": {"type": "email", "from_address": "team@example.com", "to_address": "contact@example.com"},
        "whatsapp": {"type": "whatsapp", "from_address": "+12015550100", "to_address": "+14155550123"},
        "instagram": {"type": "instagram", "from_address": IG_ACCOUNT_ID, "to_address": "6543210987654321"},
    }[channel]
    fields = {
        "channel": "sms" if channel == "mms" else channel,
        "body": "Hello over HTTP",
        "attachments": ["https://example.com/a.png"] if channel == "mms" else [],
        "idempotency_token": token,
        **defaults,
        **overrides,
    }
    return OutboundMessage(**fields)
