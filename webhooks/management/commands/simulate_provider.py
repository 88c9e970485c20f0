"""manage.py simulate_provider: act toward a running service as Twilio, SendGrid and Meta would.

It sends real messages through the API, then calls the webhooks the way providers do: status
callbacks form-encoded and out of order, SendGrid batches with duplicates and a malformed event,
events for ids nobody knows, inbound messages delivered twice. Then it reads the messages back
and checks that each ended where it should. Exits non-zero if any check fails.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode
from urllib.request import Request, urlopen

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.cli import positive_int
from providers import meta, sendgrid, twilio

SCENARIOS = ("inbound", "sms-status", "email-events", "meta-inbound", "meta-status")


@dataclass
class Answer:
    status: int
    body: object


@dataclass
class Tally:
    passed: int = 0
    failures: list[str] = field(default_factory=list)


class Command(BaseCommand):
    help = (
        "Posts inbound messages, Twilio status callbacks, SendGrid event batches and Meta (WhatsApp, Instagram, "
        "seed 004) deliveries to a running service, with duplicates and out-of-order delivery, and checks "
        "the resulting message states."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "scenarios", nargs="*", metavar="scenario", help=f"Any of {', '.join(SCENARIOS)} (default: all)."
        )
        parser.add_argument("--base-url", default="http://127.0.0.1:8080", help="The running service.")
        parser.add_argument("--api-key", help="Sent as X-API-Key when the service requires keys.")
        parser.add_argument("--count", type=positive_int, default=3, help="Messages per scenario (default 3).")
        parser.add_argument("--seed", type=int, help="Seed for the shuffling, to repeat a run exactly.")
        parser.add_argument(
            "--twilio-auth-token",
            default=next(iter(settings.TWILIO_AUTH_TOKEN), None),
            help="Signs Twilio webhooks (X-Twilio-Signature). Default: the first TWILIO_AUTH_TOKEN.",
        )
        parser.add_argument(
            "--sendgrid-key",
            default=next(iter(settings.SENDGRID_WEBHOOK_VERIFICATION_KEY), None),
            help="Signs SendGrid webhooks (HMAC-SHA256). Default: the first SENDGRID_WEBHOOK_VERIFICATION_KEY.",
        )
        parser.add_argument(
            "--meta-app-secret",
            default=next(iter(settings.META_APP_SECRET), None),
            help="Signs Meta webhooks (X-Hub-Signature-256). Default: the first META_APP_SECRET.",
        )

    def handle(
        self,
        *args,
        scenarios,
        base_url,
        api_key,
        count,
        seed,
        twilio_auth_token,
        sendgrid_key,
        meta_app_secret,
        **options,
    ):
        unknown = sorted(set(scenarios) - set(SCENARIOS))
        if unknown:
            raise CommandError(f"Unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}.")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.twilio_token = twilio_auth_token
        self.sendgrid_key = sendgrid_key
        self.meta_secret = meta_app_secret
        # Signatures cover the URL the provider calls, which is the public one behind a proxy.
        self.signed_base_url = settings.PUBLIC_BASE_URL or self.base_url
        self.random = random.Random(seed)
        self.run_id = uuid.uuid4().hex[:8]
        self.tally = Tally()
        for scenario in scenarios or SCENARIOS:
            self.stdout.write(f"== {scenario}")
            getattr(self, "_" + scenario.replace("-", "_"))(count)
        failed = len(self.tally.failures)
        self.stdout.write(f"simulate_provider: {self.tally.passed} checks passed, {failed} failed")
        if failed:
            raise CommandError("; ".join(self.tally.failures))

    # Scenarios ------------------------------------------------------------------------------------

    def _inbound(self, count: int) -> None:
        deliveries = []
        for index in range(count):
            sms = {
                "from": f"+1804555{index:04d}",
                "to": "+12016661234",
                "type": "sms",
                "messaging_provider_id": f"sim-{self.run_id}-sms-{index}",
                "body": f"Simulated inbound SMS {index}",
                "attachments": None,
                "timestamp": "2024-11-01T14:00:00Z",
            }
            email = {
                "from": f"sim{index}@example.com",
                "to": "user@usehatchapp.com",
                "xillio_id": f"sim-{self.run_id}-email-{index}",
                "body": f"<p>Simulated inbound email {index}</p>",
                "attachments": [],
                "timestamp": "2024-11-01T14:00:00Z",
            }
            # Providers retry: each message is delivered twice.
            deliveries += [("/api/webhooks/sms", sms)] * 2 + [("/api/webhooks/email", email)] * 2
        self.random.shuffle(deliveries)
        outcomes = [self._post_json(path, body) for path, body in deliveries]
        self._check("every inbound delivery answered 200", all(a.status == 200 for a in outcomes), outcomes)
        processed = sum(1 for a in outcomes if isinstance(a.body, dict) and a.body.get("status") == "processed")
        self._check(f"{2 * count} messages stored once each, {2 * count} duplicates", processed == 2 * count, processed)

    def _sms_status(self, count: int) -> None:
        # One sender per message, so a low send rate limit (per sender) does not trip the simulation.
        sent = [
            self._send("sms", {"from": f"+1201666{i:04d}", "to": f"+1804555{i:04d}", "body": "Hi"})
            for i in range(count)
        ]
        messages = [m for m in sent if m is not None]
        callbacks: list[tuple[str, str, dict[str, str]]] = []
        for message in messages[:-1]:
            for status in ("queued", "sent", "delivered", "delivered"):  # one duplicate each
                callbacks.append((message["provider_message_id"], status, {}))
        undelivered = messages[-1] if messages else None
        if undelivered:
            callbacks.append((undelivered["provider_message_id"], "sent", {}))
            callbacks.append((undelivered["provider_message_id"], "undelivered", {"ErrorCode": "30003"}))
        callbacks.append((f"SM{uuid.uuid4().hex}", "delivered", {}))  # a message this service never sent
        self.random.shuffle(callbacks)
        for sid, status, extra in callbacks:
            answer = self._post_form(
                "/api/webhooks/sms/status",
                {"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC" + "0" * 32, **extra},
            )
            self._check(f"status {status} for {sid} answered 200", answer.status == 200, answer)
        for message in messages[:-1]:
            self._expect_status(message["id"], "delivered")
        if undelivered:
            final = self._expect_status(undelivered["id"], "failed")
            error = (final or {}).get("error") or {}
            self._check("undelivered keeps the carrier's error 30003", error.get("code") == "30003", error)

    def _email_events(self, count: int) -> None:
        sent = [
            self._send(
                "email", {"from": f"sender{i}@usehatchapp.com", "to": f"sim{i}@example.com", "body": "<p>Hi</p>"}
            )
            for i in range(count)
        ]
        messages = [m for m in sent if m is not None]
        events = []
        for message in messages:
            for name in ("processed", "delivered", "open", "click"):
                events.append(self._sendgrid_event(message, name))
        if events:
            events.append(dict(events[1]))  # SendGrid retried part of a batch: a duplicate
        events.append({"event": "delivered", "sg_message_id": "no-event-id"})  # malformed: no sg_event_id
        events.append(
            self._sendgrid_event({"provider_message_id": f"{uuid.uuid4().hex[:16]}.filter001.1.0"}, "delivered")
        )
        self.random.shuffle(events)
        answer = self._post_json("/api/webhooks/email/events", events)
        self._check("the event batch answered 200", answer.status == 200, answer)
        summary = answer.body if isinstance(answer.body, dict) else {}
        self._check("the malformed event alone was rejected", summary.get("rejected") == 1, summary)
        self._check("the duplicate was recognised", summary.get("duplicate") == (1 if messages else 0), summary)
        self._check("the unknown message's event was kept as an orphan", summary.get("orphan") == 1, summary)
        for message in messages:
            self._expect_status(message["id"], "delivered")

    def _meta_inbound(self, count: int) -> None:
        # Seed 004's gateway retries: twenty simultaneous deliveries of one event make one message.
        event = {
            "eventId": f"sim-{self.run_id}-evt",
            "channel": "whatsapp",
            "from": f"user-{self.run_id}",
            "text": "Simulated inbound WhatsApp",
            "timestamp": "2025-01-01T10:00:00Z",
        }
        with ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(lambda _: self._post_json("/api/webhooks/mock-meta", event), range(20)))
        self._check(
            "20 simultaneous deliveries of one event answered 200", all(a.status == 200 for a in answers), answers
        )
        processed = [a for a in answers if isinstance(a.body, dict) and a.body.get("status") == "processed"]
        self._check("exactly one of them stored the message", len(processed) == 1, len(processed))
        # Meta's own format: several messages in one delivery, one of them twice, and an Instagram message.
        texts = [self._whatsapp_text(f"wamid.sim-{self.run_id}-{index}", index) for index in range(count)]
        delivery = self._whatsapp_delivery(messages=[*texts, texts[0]])
        answer = self._post_json("/api/webhooks/meta", delivery)
        summary = answer.body if isinstance(answer.body, dict) else {}
        self._check(
            f"a WhatsApp delivery of {count + 1} messages stored {count} and one duplicate",
            answer.status == 200 and summary.get("processed") == count and summary.get("duplicate") == 1,
            summary,
        )
        instagram = {
            "object": "instagram",
            "entry": [
                {
                    "id": "17841400000000000",
                    "time": int(time.time() * 1000),
                    "messaging": [
                        {
                            "sender": {"id": f"ig-{self.run_id}"},
                            "recipient": {"id": "17841400000000000"},
                            "timestamp": int(time.time() * 1000),
                            "message": {"mid": f"m_sim-{self.run_id}", "text": "Simulated Instagram message"},
                        }
                    ],
                }
            ],
        }
        answer = self._post_json("/api/webhooks/meta", instagram)
        body = answer.body if isinstance(answer.body, dict) else {}
        self._check("an Instagram message was stored", body.get("processed") == 1, body)

    def _meta_status(self, count: int) -> None:
        whatsapp = [
            self._send_any({"channel": "whatsapp", "to": f"+1415555{i:04d}", "body": "Order shipped"})
            for i in range(count)
        ]
        instagram = [
            self._send_any({"channel": "instagram", "to": f"ig-{self.run_id}-{i}", "body": "Hi"}) for i in range(count)
        ]
        statuses = []
        for message in (m for m in whatsapp if m is not None):
            for status in ("sent", "delivered", "read", "delivered"):  # a duplicate, and read before it in the shuffle
                statuses.append(
                    {"id": message["provider_message_id"], "status": status, "timestamp": str(int(time.time()))}
                )
        statuses.append({"id": f"wamid.unknown-{self.run_id}", "status": "delivered", "timestamp": "1"})
        self.random.shuffle(statuses)
        for item in statuses:
            answer = self._post_json("/api/webhooks/meta", self._whatsapp_delivery(statuses=[item]))
            self._check(f"WhatsApp status {item['status']} answered 200", answer.status == 200, answer)
            if item["id"].startswith("wamid.unknown-"):
                summary = answer.body if isinstance(answer.body, dict) else {}
                self._check(
                    "a status for a message never sent is kept as an orphan", summary.get("orphan") == 1, summary
                )
        for message in (m for m in instagram if m is not None):
            read = {"sender": {"id": message["to"]}, "recipient": {"id": message["from"]}, "timestamp": 1}
            for event in ({**read, "read": {"mid": message["provider_message_id"]}},) * 2:
                self._post_json(
                    "/api/webhooks/meta", {"object": "instagram", "entry": [{"id": "1", "messaging": [event]}]}
                )
        for message in (m for m in whatsapp + instagram if m is not None):
            self._expect_status(message["id"], "read")

    # HTTP -----------------------------------------------------------------------------------------

    def _whatsapp_text(self, wamid: str, index: int) -> dict:
        return {
            "from": f"1415555{index:04d}",
            "id": wamid,
            "timestamp": str(int(time.time())),
            "type": "text",
            "text": {"body": f"Simulated WhatsApp message {index}"},
        }

    def _whatsapp_delivery(self, *, messages: list | None = None, statuses: list | None = None) -> dict:
        value = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": settings.WHATSAPP_PHONE_NUMBER.lstrip("+"), "phone_number_id": "1"},
            "messages": messages or [],
            "statuses": statuses or [],
        }
        change = {"field": "messages", "value": value}
        return {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [change]}]}

    def _send_any(self, body: dict) -> dict | None:
        answer = self._post_json("/api/messages", body)
        sent = answer.body if isinstance(answer.body, dict) else {}
        ok = answer.status == 201 and bool(sent.get("provider_message_id"))
        self._check(f"sent a {body['channel']} message (201)", ok, answer)
        return sent if ok else None

    def _sendgrid_event(self, message: dict, name: str) -> dict:
        return {
            "email": "contact@example.com",
            "timestamp": 1730469600,
            "event": name,
            "sg_event_id": uuid.uuid4().hex,
            "sg_message_id": message["provider_message_id"],
        }

    def _send(self, channel: str, body: dict) -> dict | None:
        answer = self._post_json(f"/api/messages/{channel}", body)
        body = answer.body if isinstance(answer.body, dict) else {}
        ok = answer.status == 201 and bool(body.get("provider_message_id"))
        self._check(f"sent a {channel} message (201)", ok, answer)
        return body if ok else None

    def _expect_status(self, message_id: int, expected: str) -> dict | None:
        answer = self._request("GET", f"/api/messages/{message_id}", None, None)
        actual = answer.body.get("status") if isinstance(answer.body, dict) else None
        self._check(f"message {message_id} ended {expected}", actual == expected, actual)
        return answer.body if isinstance(answer.body, dict) else None

    def _post_json(self, path: str, body: object) -> Answer:
        data = json.dumps(body).encode()
        headers = {}
        if path.startswith("/api/webhooks/sms") and self.twilio_token:
            # Twilio signs a JSON body through a bodySHA256 query parameter on the URL it calls.
            url = twilio.json_url(url=self.signed_base_url + path, body=data)
            path += url[url.index("?") :]
            headers[twilio.SIGNATURE_HEADER] = twilio.signature_for(url=url, params={}, token=self.twilio_token)
        elif path.startswith(("/api/webhooks/meta", "/api/webhooks/mock-meta")) and self.meta_secret:
            headers[meta.SIGNATURE_HEADER] = meta.signature_for(body=data, secret=self.meta_secret)
        elif path.startswith("/api/webhooks/email") and self.sendgrid_key:
            timestamp = str(int(time.time()))
            headers[sendgrid.TIMESTAMP_HEADER] = timestamp
            headers[sendgrid.SIGNATURE_HEADER] = sendgrid.hmac_signature(
                timestamp=timestamp, body=data, key=self.sendgrid_key
            )
        return self._request("POST", path, data, "application/json", headers)

    def _post_form(self, path: str, fields: dict) -> Answer:
        headers = {}
        if self.twilio_token:
            signature = twilio.signature_for(url=self.signed_base_url + path, params=fields, token=self.twilio_token)
            headers[twilio.SIGNATURE_HEADER] = signature
        return self._request("POST", path, urlencode(fields).encode(), "application/x-www-form-urlencoded", headers)

    def _request(
        self, method: str, path: str, data: bytes | None, content_type: str | None, headers: dict | None = None
    ) -> Answer:
        request = Request(self.base_url + path, data=data, method=method)
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        if content_type:
            request.add_header("Content-Type", content_type)
        if self.api_key:
            request.add_header("X-API-Key", self.api_key)
        try:
            with urlopen(request, timeout=30) as response:
                status, raw = response.status, response.read()
        except HTTPError as error:
            status, raw = error.code, error.read()
        except URLError as error:
            raise CommandError(f"Cannot reach {self.base_url}: {error.reason}") from None
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        return Answer(status=status, body=body)

    def _check(self, what: str, ok: bool, evidence: object) -> None:
        if ok:
            self.tally.passed += 1
            self.stdout.write(f"  ok    {what}")
        else:
            self.tally.failures.append(what)
            self.stdout.write(f"  FAIL  {what}: {evidence}")
