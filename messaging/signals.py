"""Signals other apps listen to, so that messaging never imports them."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.dispatch import Signal


@dataclass(frozen=True)
class ProviderIdAssignment:
    message_id: int
    provider: str
    provider_message_id: str


#: Sent after sends' provider ids are committed, with ``assignments`` (a list of
#: ``ProviderIdAssignment``) and ``looked_up`` (below). Webhooks apply the status events that arrived
#: before them (orphans).
provider_message_ids_assigned = Signal()

#: What a receiver of ``provider_message_ids_assigned`` would look up for an assignment, as a boolean
#: SQL expression with ``%s`` placeholders and their values. The sender evaluates it in the statement
#: that records the assignment (the outcome UPDATE of a single accepted send, on PostgreSQL; the
#: receiver's app makes it safe against concurrent transactions) and sends the answers as
#: ``looked_up``, by message id. An assignment missing there was not looked up (a batch of several
#: sends, or the expression answered NULL or could not run): its receivers look after the commit.
AssignmentLookup = Callable[[ProviderIdAssignment], tuple[str, list[Any]]]

_assignment_lookup: AssignmentLookup | None = None


def register_assignment_lookup(lookup: AssignmentLookup | None) -> None:
    """Sets the lookup made for each assignment (the webhooks app's: whether orphans wait for it)."""
    global _assignment_lookup
    _assignment_lookup = lookup


def assignment_lookup() -> AssignmentLookup | None:
    return _assignment_lookup
