import os

from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.development")

application = get_wsgi_application()

# A process with a configuration error (webhook secrets required but unset, a key that does not
# parse, ...) stops here instead of serving; bin/start.sh's migrate runs the same checks first.
_errors = [message for message in checks.run_checks() if message.is_serious()]
if _errors:
    raise ImproperlyConfigured("; ".join(f"{error.id}: {error.msg}" for error in _errors))
