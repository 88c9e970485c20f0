"""Signals other apps listen to, so that messaging never imports them."""

from django.dispatch import Signal

#: Sent after a send's provider id is committed, with ``message_id``, ``provider`` and
#: ``provider_message_id``. Webhooks apply the status events that arrived before it (orphans).
provider_message_id_assigned = Signal()
