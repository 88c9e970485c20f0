from django.db import models


class ApiKey(models.Model):
    """A credential for the REST API. Only the SHA-256 of the key is stored; the key itself is shown once."""

    name = models.CharField(max_length=100, help_text="Who or what uses this key, e.g. the client's name.")
    prefix = models.CharField(max_length=16, editable=False, help_text="The key's first characters, to recognise it.")
    key_hash = models.CharField(max_length=64, editable=False, help_text="SHA-256 (hex) of the whole key.")
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Updated at most once a minute."
    )
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["key_hash"], name="api_key_hash_unique"),
            # A SHA-256 hex digest and nothing else: a key can never be saved here in plaintext.
            models.CheckConstraint(
                condition=models.Q(key_hash__regex=r"^[0-9a-f]{64}$"), name="api_key_hash_is_sha256"
            ),
        ]
        indexes = [models.Index(fields=["prefix"], name="api_key_prefix_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
