"""prune_webhook_events: old raw events go, each event id's claim stays, so dedupe still works."""

from datetime import timedelta
from io import StringIO
from urllib.parse import urlencode

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from messaging.models import Message
from tests import payloads
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


def _age(days: int) -> None:
    WebhookEvent.objects.update(received_at=timezone.now() - timedelta(days=days))


def _event(outcome: str, event_id: str) -> WebhookEvent:
    return WebhookEvent.objects.create(
        provider="twilio", kind="status", event_id=event_id, outcome=outcome, body='{"raw": true}', headers={"a": "b"}
    )


def prune(*args: str) -> str:
    out = StringIO()
    call_command("prune_webhook_events", *args, stdout=out)
    return out.getvalue()


def test_a_redelivery_of_a_pruned_inbound_event_is_still_a_duplicate(client):
    inbound = payloads.inbound_sms()
    assert client.post("/api/webhooks/sms", inbound, content_type="application/json").status_code == 200
    _age(days=120)

    prune("--older-than", "90d")

    assert client.post("/api/webhooks/sms", inbound, content_type="application/json").status_code == 200
    assert Message.objects.filter(direction="inbound").count() == 1


def test_a_redelivered_status_callback_after_pruning_is_recognised_by_its_claim(client):
    sid = client.post("/api/messages/sms", payloads.sms(), content_type="application/json").json()[
        "provider_message_id"
    ]
    callback = urlencode(payloads.twilio_status(sid, "delivered"))
    form = "application/x-www-form-urlencoded"
    assert client.post("/api/webhooks/sms/status", data=callback, content_type=form).status_code == 200
    _age(days=120)

    prune("--older-than", "90d")
    assert client.post("/api/webhooks/sms/status", data=callback, content_type=form).status_code == 200

    outcomes = sorted(WebhookEvent.objects.filter(kind="status").values_list("outcome", flat=True))
    assert outcomes == ["duplicate", "processed"]


def test_old_duplicates_rejections_and_errors_are_deleted_and_claims_lose_their_raw_body():
    processed = _event("processed", "SM1:delivered")
    orphan = _event("orphan", "SM2:delivered")
    for outcome in ("duplicate", "rejected", "error"):
        _event(outcome, f"SM3:{outcome}")
    _age(days=91)

    prune("--older-than", "90d")

    assert set(WebhookEvent.objects.values_list("pk", flat=True)) == {processed.pk, orphan.pk}
    processed.refresh_from_db()
    assert (processed.event_id, processed.body, processed.headers, processed.body_exact) == (
        "SM1:delivered",
        "",
        {},
        False,
    )
    orphan.refresh_from_db()
    assert orphan.body == '{"raw": true}'  # applied when its message appears: kept whole


def test_recent_events_are_untouched():
    _event("duplicate", "SM4:sent")
    _age(days=10)
    prune("--older-than", "90d")
    assert WebhookEvent.objects.count() == 1


def test_a_dry_run_counts_and_changes_nothing():
    _event("processed", "SM5:delivered")
    _event("error", "SM6:failed")
    _age(days=100)

    output = prune("--older-than", "90d", "--dry-run")

    assert "Would delete 1 event(s) and drop the raw body of 1 processed event(s)" in output
    assert WebhookEvent.objects.filter(body='{"raw": true}').count() == 2


def test_an_unreadable_age_is_refused():
    with pytest.raises(CommandError):
        call_command("prune_webhook_events", "--older-than", "ninety days")
