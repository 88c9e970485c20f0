"""Request bodies as the scaffold sends them; keyword arguments override fields."""

import itertools

_ids = itertools.count(1)


def sms(**overrides):
    return {
        "from": "+12016661234",
        "to": "+18045551234",
        "type": "sms",
        "body": "Hello! This is a test SMS message.",
        "attachments": None,
        "timestamp": "2024-11-01T14:00:00Z",
        **overrides,
    }


def mms(**overrides):
    return sms(type="mms", attachments=["https://example.com/image.jpg"], **overrides)


def email(**overrides):
    return {
        "from": "user@usehatchapp.com",
        "to": "contact@gmail.com",
        "body": "Hello! This is a test email message with <b>HTML</b> formatting.",
        "attachments": ["https://example.com/document.pdf"],
        "timestamp": "2024-11-01T14:00:00Z",
        **overrides,
    }


def inbound_sms(**overrides):
    return {
        "from": "+18045551234",
        "to": "+12016661234",
        "type": "sms",
        "messaging_provider_id": f"message-{next(_ids)}",
        "body": "This is an incoming SMS message",
        "attachments": None,
        "timestamp": "2024-11-01T14:00:00Z",
        **overrides,
    }


def inbound_email(**overrides):
    return {
        "from": "contact@gmail.com",
        "to": "user@usehatchapp.com",
        "xillio_id": f"email-{next(_ids)}",
        "body": "<html><body>This is an incoming email with <b>HTML</b> content</body></html>",
        "attachments": ["https://example.com/received-document.pdf"],
        "timestamp": "2024-11-01T14:00:00Z",
        **overrides,
    }


def twilio_status(sid, status, **extra):
    """A Twilio status callback's fields, as Twilio posts them (form-encoded)."""
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": status,
        "SmsStatus": status,
        "AccountSid": "AC" + "0" * 32,
        "From": "+12016661234",
        "To": "+18045551234",
        "ApiVersion": "2010-04-01",
        **extra,
    }


def sendgrid_event(sg_message_id, event, **extra):
    return {
        "email": "contact@gmail.com",
        "timestamp": 1730469600,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": event,
        "sg_event_id": f"evt-{next(_ids)}",
        "sg_message_id": sg_message_id,
        **extra,
    }
