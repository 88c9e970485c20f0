"""A second SMS provider for failover tests: Twilio's API under another name and base URL (as a second
Twilio account or region would be), so two simulators can stand for the primary and the backup."""

from providers.twilio import TwilioProvider


class BackupTwilio(TwilioProvider):
    name = "twilio-backup"
    base_url_setting = "BACKUP_TWILIO_BASE_URL"
