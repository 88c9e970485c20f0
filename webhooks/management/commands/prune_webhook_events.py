"""manage.py prune_webhook_events: retention for the raw webhook log, keeping what dedupe needs."""

from __future__ import annotations

import re
from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from webhooks.models import WebhookEvent, WebhookOutcome

_DURATION = re.compile(r"^(\d+)([dhm]?)$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes", "": "days"}


def _duration(value: str) -> timedelta:
    match = _DURATION.match(value.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(value)
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


class Command(BaseCommand):
    help = (
        "Deletes webhook events received before --older-than, except each event id's claim: a processed "
        "event keeps its row (provider, kind, event id, outcome, message) with its raw body and headers "
        "dropped, so a late redelivery is still recognised as a duplicate; orphans are kept whole (they "
        "are applied when their message appears). Duplicate, rejected and errored events are deleted."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            required=True,
            type=_duration,
            help="Age: 90d (days, the default unit), 12h or 30m.",
        )
        parser.add_argument("--dry-run", action="store_true", help="Count what would change; change nothing.")
        parser.add_argument("--batch-size", type=int, default=1000, help="Rows per statement (default 1000).")

    def handle(self, *args, older_than, dry_run, batch_size, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        cutoff = timezone.now() - older_than
        old = WebhookEvent.objects.filter(received_at__lt=cutoff)
        deletable = old.exclude(outcome__in=[WebhookOutcome.PROCESSED, WebhookOutcome.ORPHAN])
        strippable = old.filter(outcome=WebhookOutcome.PROCESSED).exclude(body="", headers={})
        if dry_run:
            self.stdout.write(
                f"Would delete {deletable.count()} event(s) and drop the raw body of {strippable.count()} "
                f"processed event(s) received before {cutoff:%Y-%m-%d %H:%M} UTC (dry run, nothing changed)."
            )
            return
        deleted = self._in_batches(
            deletable, batch_size, lambda ids: WebhookEvent.objects.filter(pk__in=ids).delete()[0]
        )
        stripped = self._in_batches(
            strippable,
            batch_size,
            # body_exact=False: a stripped event can never be replayed (there is nothing left to replay).
            lambda ids: WebhookEvent.objects.filter(pk__in=ids).update(body="", headers={}, body_exact=False),
        )
        self.stdout.write(
            f"Deleted {deleted} event(s) and dropped the raw body of {stripped} processed event(s) received "
            f"before {cutoff:%Y-%m-%d %H:%M} UTC; every event id's claim is kept."
        )

    @staticmethod
    def _in_batches(queryset, batch_size: int, apply) -> int:
        # Short statements, each in its own transaction: well inside DB_STATEMENT_TIMEOUT, no long locks.
        total = 0
        last_id = 0
        while True:
            ids = list(queryset.filter(pk__gt=last_id).order_by("pk").values_list("pk", flat=True)[:batch_size])
            if not ids:
                return total
            with transaction.atomic():
                total += apply(ids)
            last_id = ids[-1]
