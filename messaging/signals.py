"""Signals other apps listen to, so that messaging never imports them."""

from dataclasses import dataclass

from django.dispatch import Signal


@dataclass(frozen=True)
class ProviderIdAssignment:
    message_id: int
    provider: str
    provider_message_id: str


#: Sent after sends' provider ids are committed, with ``assignments`` (a list of
#: ``ProviderIdAssignment``). Webhooks apply the status events that arrived before them (orphans).
provider_message_ids_assigned = Signal()
