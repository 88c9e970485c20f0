"""manage.py retry_failed: put failed outbound messages back in the outbox."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from conversations.channels import channel_names
from core.cli import moment, positive_int
from messaging.models import Direction, Message, MessageStatus
from messaging.services import message_requeue


class Command(BaseCommand):
    help = (
        "Re-queues failed outbound messages (by id or filter) for the outbox worker, due now, each with "
        "MAX_ATTEMPTS more attempts. A message the provider had accepted is sent as a new provider message."
    )

    def add_arguments(self, parser):
        parser.add_argument("ids", nargs="*", type=positive_int, help="Message ids.")
        parser.add_argument("--channel", choices=channel_names())
        parser.add_argument("--error-code", help="Only messages whose last error has this code (e.g. 503, 30003).")
        parser.add_argument("--since", type=moment, help="Created at or after (ISO-8601; naive means UTC).")
        parser.add_argument("--until", type=moment, help="Created before (ISO-8601; naive means UTC).")
        parser.add_argument(
            "--all", dest="every", action="store_true", help="Every failed outbound message (no other filter)."
        )
        parser.add_argument("--limit", type=positive_int, default=1000, help="At most this many (default 1000).")
        parser.add_argument("--dry-run", action="store_true", help="List what would be re-queued; change nothing.")

    def handle(self, *args, ids, channel, error_code, since, until, every, limit, dry_run, **options):
        if not (ids or channel or error_code or since or until or every):
            raise CommandError(
                "Say which messages: ids, a filter (--channel, --error-code, --since, --until) or --all."
            )
        failed = Message.objects.filter(direction=Direction.OUTBOUND, status=MessageStatus.FAILED)
        if ids:
            failed = failed.filter(pk__in=ids)
        if channel:
            failed = failed.filter(channel=channel)
        if error_code:
            # The code is stored as the provider gave it: a number (503) or a string ("30003").
            codes = [error_code, int(error_code)] if error_code.isascii() and error_code.isdecimal() else [error_code]
            failed = failed.filter(last_error__code__in=codes)
        if since:
            failed = failed.filter(created_at__gte=since)
        if until:
            failed = failed.filter(created_at__lt=until)
        selected = list(failed.order_by("id").values_list("pk", "last_error")[:limit])
        if ids:
            skipped = set(ids) - {pk for pk, _ in selected}
            if skipped:
                self.stderr.write(f"Not failed outbound messages, skipped: {', '.join(map(str, sorted(skipped)))}")
        if dry_run:
            for pk, error in selected:
                self.stdout.write(f"would re-queue #{pk} (last error: {error})")
            self.stdout.write(f"Dry run: {len(selected)} message(s) selected, nothing changed.")
            return
        requeued = message_requeue(message_ids=[pk for pk, _ in selected])
        self.stdout.write(f"Re-queued {len(requeued)} message(s) for the outbox worker: {requeued}")
