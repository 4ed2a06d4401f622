from django.db import models


class IdempotencyRecord(models.Model):
    """The first answer to a POST sent with an `Idempotency-Key`, replayed to its retries.

    Keyed by the credential that sent it and the client's key; `fingerprint` is a digest of the method,
    path and body, so the same key with another request is refused instead of replayed. The answer can
    hold a new key's secret, so it is stored encrypted (common.crypto) and dropped after
    MANAGEMENT_IDEMPOTENCY_HOURS.
    """

    credential = models.CharField(max_length=40, help_text="Kind and public id of the credential that sent it.")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    status = models.PositiveSmallIntegerField()
    response_encrypted = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["credential", "key"], name="idempotency_unique_key")]
