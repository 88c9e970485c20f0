"""Which type a message is, from what the payload says and carries."""

from conversations.models import Channel
from messaging.models import MessageType


def infer_message_type(*, requested_type: str | None, from_address: str, to_address: str, attachments: list) -> str:
    """email if asked for or an address has ``@``; mms if asked for or attachments are present; else sms."""
    if requested_type == MessageType.EMAIL or "@" in from_address or "@" in to_address:
        return MessageType.EMAIL
    if requested_type == MessageType.MMS or attachments:
        return MessageType.MMS
    return MessageType.SMS


def channel_for_type(message_type: str) -> str:
    return Channel.EMAIL if message_type == MessageType.EMAIL else Channel.SMS
