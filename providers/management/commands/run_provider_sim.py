"""manage.py run_provider_sim: serve the provider simulator (fake Twilio, SendGrid and Meta APIs).

It reads the same credential variables as the service (so a service and its simulator started from
one environment agree), never touches the database, and runs until interrupted.
docs/PROVIDER_SIMULATOR.md describes the endpoints, faults and callbacks.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from providers.simulator.app import Simulator
from providers.simulator.config import Behaviour, Credentials, SimulatorConfig, parse_range_ms, parse_rate
from providers.simulator.signing import check_private_key

#: Option -> the environment variable that gives its default (the service's own names for secrets).
CREDENTIAL_ENV = {
    "twilio_account_sid": "TWILIO_ACCOUNT_SID",
    "twilio_auth_token": "TWILIO_AUTH_TOKEN",
    "sendgrid_api_key": "SENDGRID_API_KEY",
    "meta_access_token": "META_ACCESS_TOKEN",
    "meta_app_secret": "META_APP_SECRET",
    "sendgrid_webhook_key": "SENDGRID_WEBHOOK_VERIFICATION_KEY",
    "sendgrid_webhook_private_key": "SENDGRID_WEBHOOK_PRIVATE_KEY",
    "whatsapp_phone_number_id": "WHATSAPP_PHONE_NUMBER_ID",
    "instagram_account_id": "INSTAGRAM_ACCOUNT_ID",
}


def _first(name: str) -> str | None:
    """The first value of a (possibly comma-separated, for rotation) variable, or None when unset."""
    values = [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]
    return values[0] if values else None


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def _arg(parse):
    def convert(value: str):
        try:
            return parse(value)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


class Command(BaseCommand):
    help = "Serves fake Twilio, SendGrid and Meta Graph APIs that call the service's webhooks back."
    requires_system_checks: list[str] = []
    requires_migrations_checks = False

    def add_arguments(self, parser):
        parser.add_argument("--host", default=_env("PROVIDER_SIM_HOST", "127.0.0.1"), help="Default 127.0.0.1.")
        parser.add_argument("--port", type=int, default=int(_env("PROVIDER_SIM_PORT", "4000")), help="Default 4000.")
        parser.add_argument(
            "--callback-base-url",
            default=_env("PROVIDER_SIM_CALLBACK_BASE_URL", "http://127.0.0.1:8080"),
            help="Where the service's webhooks are reached (default http://127.0.0.1:8080).",
        )
        parser.add_argument(
            "--signed-base-url",
            default=os.environ.get("PROVIDER_SIM_SIGNED_BASE_URL", ""),
            help="The service's PUBLIC_BASE_URL, when it differs from the callback base (Twilio signs it).",
        )
        parser.add_argument(
            "--failure-rate",
            type=_arg(parse_rate),
            default=parse_rate(_env("PROVIDER_SIM_FAILURE_RATE", "0")),
            help="Share of provider calls answered 503, 0-1 (default 0).",
        )
        parser.add_argument(
            "--latency-ms",
            type=_arg(parse_range_ms),
            default=parse_range_ms(_env("PROVIDER_SIM_LATENCY_MS", "0")),
            help="Latency of every provider call, e.g. 100-500 (default 0).",
        )
        parser.add_argument(
            "--callback-delay-ms",
            type=_arg(parse_range_ms),
            default=parse_range_ms(_env("PROVIDER_SIM_CALLBACK_DELAY_MS", "200-2000")),
            help="When a message's last status callback is due after acceptance (default 200-2000).",
        )
        for name, default, what in (
            ("duplicate-rate", "0.1", "status callbacks delivered twice"),
            ("out-of-order-rate", "0.1", "messages whose status callbacks arrive in reverse order"),
            ("undelivered-rate", "0", "messages that end undelivered instead of delivered"),
        ):
            variable = "PROVIDER_SIM_" + name.upper().replace("-", "_")
            parser.add_argument(
                f"--{name}",
                type=_arg(parse_rate),
                default=parse_rate(_env(variable, default)),
                help=f"Share of {what}, 0-1 (default {default}; env {variable}).",
            )
        parser.add_argument("--no-callbacks", action="store_true", help="Send no status callbacks.")
        parser.add_argument(
            "--timeout-seconds",
            type=float,
            default=float(_env("PROVIDER_SIM_TIMEOUT_SECONDS", "30")),
            help="How long a timeout fault holds the answer (default 30).",
        )
        for option, variable in CREDENTIAL_ENV.items():
            parser.add_argument(
                f"--{option.replace('_', '-')}",
                default=_first(variable),
                help=f"Default: {variable} (unset: accept any / do not sign).",
            )

    def handle(self, *args, **options):
        credentials = Credentials(**{option: options[option] for option in CREDENTIAL_ENV})
        if credentials.sendgrid_webhook_private_key:
            try:
                check_private_key(credentials.sendgrid_webhook_private_key)
            except ValueError as error:
                raise CommandError(str(error)) from None
        try:
            behaviour = Behaviour(
                failure_rate=options["failure_rate"],
                latency_ms=options["latency_ms"],
                callback_delay_ms=options["callback_delay_ms"],
                duplicate_rate=options["duplicate_rate"],
                out_of_order_rate=options["out_of_order_rate"],
                undelivered_rate=options["undelivered_rate"],
                callbacks=not options["no_callbacks"],
                timeout_seconds=options["timeout_seconds"],
            )
        except ValueError as error:
            raise CommandError(str(error)) from None
        config = SimulatorConfig(
            callback_base_url=options["callback_base_url"],
            signed_base_url=options["signed_base_url"],
            credentials=credentials,
            behaviour=behaviour,
        )
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
        simulator = Simulator(config)
        try:
            host, port = simulator.bind(options["host"], options["port"])
        except OSError as error:
            raise CommandError(f"Cannot listen on {options['host']}:{options['port']}: {error}") from None
        checked = [variable for option, variable in CREDENTIAL_ENV.items() if getattr(credentials, option)]
        self.stdout.write(
            f"Provider simulator on http://{host}:{port}, calling back {config.callback_base_url}; "
            f"credentials set: {', '.join(checked) or 'none (any accepted, callbacks unsigned)'}"
        )
        stop = threading.Event()

        def shut_down(signum, frame):
            stop.set()

        signal.signal(signal.SIGTERM, shut_down)
        signal.signal(signal.SIGINT, shut_down)
        server = threading.Thread(target=simulator.serve_forever, name="provider-sim", daemon=True)
        server.start()
        stop.wait()
        self.stdout.write("Provider simulator stopping.")
        simulator.stop()
