"""manage.py recount_conversations: page totals recounted after a bulk load that bypassed the service."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from messaging.inbox import conversation_recount


class Command(BaseCommand):
    help = (
        "Recounts every conversation's message_count from its messages and rebuilds the inbox tally "
        "(PostgreSQL) from the conversations, in one transaction that holds writers off while it counts. "
        "Needed only after rows were loaded behind the service's back (copied in directly, or with "
        "triggers disabled); the service and its triggers keep both exact otherwise."
    )

    def handle(self, *args, **options):
        recount = conversation_recount()
        tally = "rebuilt" if recount.tally_rebuilt else "not kept on this database (the inbox counts rows)"
        self.stdout.write(f"message_count corrected on {recount.message_counts_fixed} conversation(s); tally {tally}.")
