from django.core.management.base import BaseCommand, CommandError

from apikeys.services import api_key_create
from core.errors import ValidationFailed


class Command(BaseCommand):
    help = "Create an API key for the REST API and print it once, as the last word of the last line."

    def add_arguments(self, parser):
        parser.add_argument("name", help="Who or what will use the key, e.g. the client's name.")

    def handle(self, *args, name: str, **options):
        try:
            api_key, key = api_key_create(name=name)
        except ValidationFailed as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(
            f'Created API key "{api_key.name}" (prefix {api_key.prefix}). Store it now; it cannot be shown again: {key}'
        )
