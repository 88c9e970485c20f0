"""A second Twilio account for failover tests (as a backup account or region would be configured):
the same provider, so the same ``name`` (its status callbacks come to Twilio's webhook and match the
message), another ``key`` (its own breaker and connections) and its own base URL setting, so two
simulators can stand for the primary and the backup."""

from providers.twilio import TwilioProvider


class BackupTwilio(TwilioProvider):
    key = "twilio-backup"
    base_url_setting = "BACKUP_TWILIO_BASE_URL"
