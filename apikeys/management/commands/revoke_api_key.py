from django.core.management.base import BaseCommand, CommandError

from apikeys.selectors import api_key_find
from apikeys.services import api_key_revoke


class Command(BaseCommand):
    help = "Revoke an API key, named by its prefix (e.g. ms_ab12cd34) or, if that matches none, by its name."

    def add_arguments(self, parser):
        parser.add_argument("identifier", help="The key's prefix as listed in the admin, or its name.")

    def handle(self, *args, identifier: str, **options):
        found = api_key_find(identifier=identifier)
        active = [api_key for api_key in found if api_key.is_active]
        if not found:
            raise CommandError(f"No API key has the prefix or name {identifier!r}.")
        if not active:
            raise CommandError(f"{found[0]} was already revoked at {found[0].revoked_at:%Y-%m-%d %H:%M:%S} UTC.")
        if len(active) > 1:
            listed = ", ".join(api_key.prefix for api_key in active)
            raise CommandError(f"{len(active)} active keys match {identifier!r} ({listed}); revoke one by its prefix.")
        (api_key,) = active
        api_key_revoke(api_key=api_key)
        self.stdout.write(f'Revoked API key "{api_key.name}" (prefix {api_key.prefix}).')
