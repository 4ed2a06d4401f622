from django.db import models


class UsageEvent(models.Model):
    """One row per request that reached the upstream, with tokens exactly as the upstream reported them.

    Append-only; `request_id` is unique, so recording the same request twice cannot bill it twice.
    """

    class Status(models.TextChoices):
        OK = "ok"
        PARTIAL = "partial"  # stream cut by the client: input plus output generated so far
        ERROR = "error"

    request_id = models.CharField(max_length=40, unique=True)
    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.PROTECT, related_name="usage_events")
    api_key = models.ForeignKey("accounts.ApiKey", on_delete=models.PROTECT, related_name="usage_events")
    endpoint = models.CharField(max_length=40)
    requested_model = models.CharField(max_length=128)
    model = models.CharField(max_length=128, help_text="Catalog model that served the request.")
    upstream_model = models.CharField(max_length=128)
    stream = models.BooleanField()
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    cache_creation_input_tokens = models.PositiveBigIntegerField(default=0)
    cache_read_input_tokens = models.PositiveBigIntegerField(default=0)
    status = models.CharField(max_length=8, choices=Status.choices)
    http_status = models.PositiveSmallIntegerField()
    error_type = models.CharField(max_length=64, blank=True)
    latency_ms = models.PositiveIntegerField()
    ttft_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Time to first token (streams).")
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "created_at"]),
            models.Index(fields=["api_key", "created_at"]),
        ]

    def __str__(self) -> str:
        return self.request_id
