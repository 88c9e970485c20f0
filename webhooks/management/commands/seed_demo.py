"""manage.py seed_demo: a living inbox for a newcomer, in any database."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from core.cli import positive_int
from webhooks.demo import channels, seed_demo

BAR_WIDTH = 30


class Command(BaseCommand):
    help = (
        "Fills the database with demo conversations on every channel: customers writing in, replies, "
        "delivered, failed and pending messages, HTML e-mail (hostile HTML included), status and rejected "
        "webhook events. Idempotent: conversation N is the same on every run, and existing ones are skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument("--conversations", type=positive_int, default=60, help="How many (default 60).")

    def handle(self, *args, conversations: int, **options):
        self.stdout.write(f"Seeding {conversations} demo conversation(s) on {', '.join(channels())}")
        made = seed_demo(conversations=conversations, progress=self._progress)
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"Made {made} conversation(s); {conversations - made} already existed."))

    def _progress(self, done: int, total: int) -> None:
        if done != total and done % max(1, total // 100):
            return  # redraw at most a hundred times
        filled = BAR_WIDTH * done // total
        self.stdout.write(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total}", ending="")
        self.stdout.flush()
