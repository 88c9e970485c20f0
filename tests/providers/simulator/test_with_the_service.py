"""The simulator against the real service: its signed callbacks and inbound posts are accepted by the
service's webhooks (live server, signatures required) and change the messages they are about."""

import pytest

from messaging.models import Direction, Message, MessageStatus, MessageType
from providers.simulator.app import Simulator
from providers.simulator.config import Behaviour, Credentials, SimulatorConfig
from tests.factories import ConversationFactory, MessageFactory
from tests.providers.simulator.conftest import Sim, mail, sms, wait_for
from webhooks.models import WebhookEvent

TWILIO_TOKEN = "twilio-token"
SENDGRID_KEY = "sendgrid-hook-key"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sim_for_service(live_server, settings):
    settings.TWILIO_AUTH_TOKEN = [TWILIO_TOKEN]
    settings.SENDGRID_WEBHOOK_VERIFICATION_KEY = [SENDGRID_KEY]
    settings.SENDGRID_WEBHOOK_PUBLIC_KEY = []
    settings.PUBLIC_BASE_URL = None
    simulator = Simulator(
        SimulatorConfig(
            callback_base_url=live_server.url,
            credentials=Credentials(twilio_auth_token=TWILIO_TOKEN, sendgrid_webhook_key=SENDGRID_KEY),
            # Duplicated and reordered callbacks: the service must still end at delivered.
            # Paused until the test has stored the message the callbacks are about.
            behaviour=Behaviour(
                callback_delay_ms=(10, 200), duplicate_rate=1.0, out_of_order_rate=1.0, callbacks_paused=True
            ),
        )
    )
    host, port = simulator.start("127.0.0.1", 0)
    yield Sim(f"http://{host}:{port}", simulator)
    simulator.stop()


def outbound(*, provider: str, provider_message_id: str, channel: str, type_: str, to: str) -> Message:
    conversation = ConversationFactory(channel=channel, participant_b=to)
    return MessageFactory(
        conversation=conversation,
        direction=Direction.OUTBOUND,
        type=type_,
        status=MessageStatus.SENT,
        provider=provider,
        provider_message_id=provider_message_id,
    )


def test_twilio_status_callbacks_are_verified_and_mark_the_message_delivered(sim_for_service):
    sid = sim_for_service.twilio(sms(To="+18045551234"), token=TWILIO_TOKEN).json()["sid"]
    message = outbound(
        provider="twilio", provider_message_id=sid, channel="sms", type_=MessageType.SMS, to="+18045551234"
    )

    sim_for_service.post_json("/control", {"callbacks_paused": False})
    wait_for(lambda: sim_for_service.stats()["callbacks"]["delivered"] == 6, "six accepted callbacks")

    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED
    assert not WebhookEvent.objects.filter(outcome="rejected").exists()


def test_sendgrid_events_are_verified_and_mark_the_email_delivered(sim_for_service):
    message_id = sim_for_service.sendgrid(mail()).headers["x-message-id"]
    message = outbound(
        provider="sendgrid",
        provider_message_id=message_id,
        channel="email",
        type_=MessageType.EMAIL,
        to="contact@example.com",
    )

    sim_for_service.post_json("/control", {"callbacks_paused": False})
    wait_for(lambda: sim_for_service.stats()["callbacks"]["delivered"] == 4, "four accepted event batches")

    message.refresh_from_db()
    assert message.status == MessageStatus.DELIVERED
    assert not WebhookEvent.objects.filter(outcome="rejected").exists()


def test_inbound_sms_delivered_twice_is_stored_once(sim_for_service):
    reply = sim_for_service.post_json(
        "/simulate/inbound/sms",
        {"from": "+18045551234", "to": "+12016661234", "body": "Hello twice", "duplicate": True},
    )

    assert reply.status == 200
    assert Message.objects.filter(direction=Direction.INBOUND, body="Hello twice").count() == 1


def test_inbound_email_is_stored(sim_for_service):
    reply = sim_for_service.post_json(
        "/simulate/inbound/email", {"from": "contact@gmail.com", "to": "user@usehatchapp.com", "body": "<p>Hi</p>"}
    )

    assert reply.status == 200
    assert Message.objects.filter(direction=Direction.INBOUND, type=MessageType.EMAIL).count() == 1
