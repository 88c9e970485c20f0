"""manage.py replay_webhooks: process stored provider requests again."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from core.cli import moment, positive_int
from providers.registry import providers_all
from webhooks.models import WebhookEvent, WebhookKind, WebhookOutcome
from webhooks.services import REPLAYABLE_OUTCOMES, webhook_replay


class Command(BaseCommand):
    help = (
        "Re-runs processing of stored webhook events, by id or by filter. Idempotent: events already "
        "processed (or duplicates) are left alone, so running it twice changes nothing the second time. "
        "Without ids or --outcome it takes the events a replay can change: orphan, rejected and error."
    )

    def add_arguments(self, parser):
        parser.add_argument("ids", nargs="*", type=positive_int, help="WebhookEvent ids.")
        parser.add_argument("--provider", choices=[provider.name for provider in providers_all()])
        parser.add_argument("--kind", choices=WebhookKind.values)
        parser.add_argument("--outcome", action="append", choices=WebhookOutcome.values, help="Repeatable.")
        parser.add_argument("--since", type=moment, help="Received at or after (ISO-8601; naive means UTC).")
        parser.add_argument("--until", type=moment, help="Received before (ISO-8601; naive means UTC).")
        parser.add_argument("--limit", type=positive_int, default=1000, help="At most this many (default 1000).")
        parser.add_argument("--dry-run", action="store_true", help="List what would be replayed; change nothing.")

    def handle(self, *args, ids, provider, kind, outcome, since, until, limit, dry_run, **options):
        events = WebhookEvent.objects.all()
        if ids:
            events = events.filter(pk__in=ids)
            missing = set(ids) - set(events.values_list("pk", flat=True))
            if missing:
                raise CommandError(f"No webhook event with id {', '.join(map(str, sorted(missing)))}.")
        else:
            events = events.filter(outcome__in=outcome or REPLAYABLE_OUTCOMES)
        if outcome and ids:
            events = events.filter(outcome__in=outcome)
        if provider:
            events = events.filter(provider=provider)
        if kind:
            events = events.filter(kind=kind)
        if since:
            events = events.filter(received_at__gte=since)
        if until:
            events = events.filter(received_at__lt=until)
        selected = list(events.order_by("received_at", "id")[:limit])
        if dry_run:
            for event in selected:
                self.stdout.write(
                    f"would replay #{event.pk} {event.provider} {event.kind} {event.event_id or '-'} ({event.outcome})"
                )
            self.stdout.write(f"Dry run: {len(selected)} event(s) selected, nothing changed.")
            return
        changed = 0
        for event in selected:
            result = webhook_replay(event=event)
            changed += result.changed
            arrow = f"{result.before} -> {result.after}" if result.changed else f"{result.before}, unchanged"
            self.stdout.write(
                f"#{event.pk} {event.provider} {event.kind} {event.event_id or '-'}: {arrow} ({result.detail})"
            )
        self.stdout.write(f"Replayed {len(selected)} event(s): {changed} changed, {len(selected) - changed} unchanged.")
