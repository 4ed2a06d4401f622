"""Batches and the files they read and write.

A batch is a list of items run one by one through the same request path as a live request
(gateway/batches/executor.py); each item that reached the upstream has its own usage row, carrying the
batch's id. Results go to files in Django storage (gateway/batches/storage.py) when the batch ends.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class BatchFile(models.Model):
    """A file of the OpenAI Files API (`file-...`): an uploaded batch input or a batch's output or error
    file; its content is in storage under `storage_name`."""

    class Purpose(models.TextChoices):
        BATCH = "batch"
        BATCH_OUTPUT = "batch_output"

    public_id = models.CharField(max_length=40, unique=True)
    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="+")
    api_key = models.ForeignKey("accounts.ApiKey", on_delete=models.CASCADE, related_name="+")
    purpose = models.CharField(max_length=16, choices=Purpose.choices)
    filename = models.CharField(max_length=255)
    bytes = models.PositiveBigIntegerField()
    storage_name = models.CharField(max_length=255)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "-created_at"]),
                   models.Index(fields=["expires_at"], condition=Q(expires_at__isnull=False), name="file_expiry")]

    def __str__(self) -> str:
        return self.public_id


class Batch(models.Model):
    """One batch of either vendor. `status` follows OpenAI's lifecycle; Anthropic's processing_status is
    derived from it (in_progress, canceling, ended)."""

    class Vendor(models.TextChoices):
        OPENAI = "openai"
        ANTHROPIC = "anthropic"

    class Status(models.TextChoices):
        IN_PROGRESS = "in_progress"
        CANCELLING = "cancelling"
        FINALIZING = "finalizing"
        COMPLETED = "completed"
        CANCELLED = "cancelled"
        FAILED = "failed"  # refused as a whole at validation (OpenAI); nothing ran
        EXPIRED = "expired"

    ENDED = (Status.COMPLETED, Status.CANCELLED, Status.FAILED, Status.EXPIRED)

    public_id = models.CharField(max_length=40, unique=True)
    vendor = models.CharField(max_length=16, choices=Vendor.choices)
    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="+")
    api_key = models.ForeignKey("accounts.ApiKey", on_delete=models.CASCADE, related_name="+")
    endpoint = models.CharField(max_length=40)
    status = models.CharField(max_length=16, choices=Status.choices)
    input_file = models.ForeignKey(BatchFile, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    input_file_public_id = models.CharField(max_length=40, blank=True)  # kept after the file is deleted
    output_file = models.ForeignKey(BatchFile, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    error_file = models.ForeignKey(BatchFile, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    results_name = models.CharField(max_length=255, blank=True, help_text="Anthropic results JSONL in storage.")
    metadata = models.JSONField(null=True, blank=True)
    errors = models.JSONField(default=list, blank=True)
    total = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    errored = models.PositiveIntegerField(default=0)
    canceled = models.PositiveIntegerField(default=0)
    expired = models.PositiveIntegerField(default=0)
    # OpenAI's output_expires_after: how long the output and error files are kept (None: the retention).
    output_expires_seconds = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    in_progress_at = models.DateTimeField(null=True, blank=True)
    cancelling_at = models.DateTimeField(null=True, blank=True)
    finalizing_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    # A runner holds the batch while this is in the future (renewed as it runs): one runner at a time.
    lease_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "batches"
        indexes = [models.Index(fields=["tenant", "vendor", "-created_at"]),
                   models.Index(fields=["status"], condition=Q(status__in=["in_progress", "cancelling"]),
                                name="batch_running")]

    def __str__(self) -> str:
        return self.public_id


class BatchItem(models.Model):
    """One request of a batch. `body` is null for a line that could not be read (its `result` says why)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        ERRORED = "errored"
        CANCELED = "canceled"
        EXPIRED = "expired"

    batch = models.ForeignKey(Batch, on_delete=models.CASCADE, related_name="items")
    line = models.PositiveIntegerField()
    custom_id = models.CharField(max_length=512, null=True, blank=True)
    body = models.JSONField(null=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    request_id = models.CharField(max_length=40, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["batch", "line"], name="batch_item_line_unique"),
                       models.UniqueConstraint(fields=["batch", "custom_id"], name="batch_item_custom_id_unique")]
        indexes = [models.Index(fields=["batch", "status", "line"])]
