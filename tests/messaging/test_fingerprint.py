"""A send's request fingerprint stays what it was when it was stored: an idempotency key reused with the
same body must match the fingerprint of a message stored by an earlier release."""

import hashlib
import json
from dataclasses import asdict
from datetime import UTC, datetime

import pytest

from messaging.services import SendCommand
from providers.base import ForcedError

BASE = {"channel": "sms", "type": "sms", "from_address": "+12065550123", "to_address": "+18045551234", "body": "hi"}


def _as_first_stored(command: SendCommand) -> str:
    """The fingerprint as the first releases computed it."""
    content = asdict(command)
    content.pop("client_message_id")
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


@pytest.mark.parametrize(
    "command",
    [
        SendCommand(**BASE),
        SendCommand(**BASE, client_message_id="key-1"),
        SendCommand(**{**BASE, "type": "mms"}, attachments=["https://example.com/a.png", "https://example.com/b"]),
        SendCommand(**BASE, timestamp=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)),
        SendCommand(**BASE, forced_error=ForcedError(code=503, message="down", times=2, retry_after=7)),
        SendCommand(**{**BASE, "channel": "email", "type": "email", "body": '<p>é "quoted"</p>'}),
    ],
    ids=["plain", "client id", "attachments", "timestamp", "forced error", "email"],
)
def test_the_fingerprint_is_the_stored_one(command):
    assert command.fingerprint() == _as_first_stored(command)


def test_the_client_message_id_is_not_part_of_it():
    assert SendCommand(**BASE, client_message_id="a").fingerprint() == SendCommand(**BASE).fingerprint()
    assert SendCommand(**BASE).fingerprint() != SendCommand(**{**BASE, "body": "other"}).fingerprint()
