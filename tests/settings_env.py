"""Starting the project's settings in a process of their own, with an environment we choose."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: An environment the production settings start with; each test changes or removes what it checks.
PRODUCTION_ENV = {
    "DJANGO_SECRET_KEY": "x" * 60 + "abcdef",
    "ALLOWED_HOSTS": "api.example.com",
    "TWILIO_AUTH_TOKEN": "twilio-token",
    "SENDGRID_WEBHOOK_VERIFICATION_KEY": "sendgrid-key",
    "META_APP_SECRET": "meta-secret",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}


def run_with_settings(module: str, env: dict[str, str], *command: str) -> subprocess.CompletedProcess:
    """``command`` (default: load the WSGI application as gunicorn does, start-up checks included)
    under ``module`` with only ``env`` set."""
    argv = [sys.executable, *(command or ("-c", "import config.wsgi"))]
    environment = {"DJANGO_SETTINGS_MODULE": module, "PATH": "/usr/bin:/bin", **env}
    # A hung start-up fails the test (TimeoutExpired) instead of hanging the suite.
    return subprocess.run(argv, cwd=ROOT, env=environment, capture_output=True, text=True, check=False, timeout=120)
