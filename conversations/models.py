"""Server-side conversation history: a conversation and its ordered messages, per tenant.

Message content is canonical: Anthropic content blocks (text, images by reference, tool_use and
tool_result, thinking with its signature), so any turn can be replayed upstream as stored.
"""

from django.db import models


class Conversation(models.Model):
    id = models.CharField(primary_key=True, max_length=40, editable=False)  # conv_<hex>
    # Every index costs each stored turn a write; the composite indexes below serve these lookups too.
    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="conversations",
                               db_index=False)
    api_key = models.ForeignKey("accounts.ApiKey", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="+")
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()
    last_activity_at = models.DateTimeField()
    message_count = models.PositiveIntegerField(default=0)
    # A turn in progress holds the conversation until it is written or this passes (a crashed turn).
    busy_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "last_activity_at"])]

    def __str__(self) -> str:
        return self.id


class Message(models.Model):
    class Role(models.TextChoices):
        SYSTEM = "system"
        USER = "user"
        ASSISTANT = "assistant"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages",
                                     db_index=False)  # the (conversation, seq) unique index serves
    seq = models.PositiveIntegerField()
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.JSONField(help_text="Anthropic content blocks.")
    model = models.CharField(max_length=128, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    request_id = models.CharField(max_length=40, blank=True, help_text="The request that added it.")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["conversation", "seq"]
        constraints = [models.UniqueConstraint(fields=["conversation", "seq"], name="message_unique_seq")]

    def __str__(self) -> str:
        return f"{self.conversation_id}#{self.seq} {self.role}"


class StoredResponse(models.Model):
    """A Responses API answer kept for `GET /v1/responses/{id}` and `previous_response_id`.

    Its turn's messages live in `conversation` (up to `last_seq`), so continuing from it replays that
    conversation; deleting the conversation deletes its responses.
    """

    id = models.CharField(primary_key=True, max_length=40, editable=False)  # resp_<hex>
    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="+", db_index=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="responses")
    last_seq = models.PositiveIntegerField()
    previous_response_id = models.CharField(max_length=40, blank=True)
    body = models.JSONField(help_text="The Response object as returned.")
    input_items = models.JSONField(default=list)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["tenant", "created_at"])]

    def __str__(self) -> str:
        return self.id


class ConversationImage(models.Model):
    """An image or document sent inline (base64), kept once per conversation and referenced by its
    SHA-256 from message content (`{"type": "stored", "sha256": ...}`), so history rows stay small."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="images",
                                     db_index=False)  # the (conversation, sha256) unique index serves
    sha256 = models.CharField(max_length=64)
    media_type = models.CharField(max_length=100)
    data = models.TextField(help_text="Base64, as sent.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["conversation", "sha256"], name="image_unique_per_conversation")]

    def __str__(self) -> str:
        return f"{self.conversation_id} {self.sha256[:12]}"


class RequestLog(models.Model):
    """A request's prompt and answer, kept only for tenants that turned request logging on, to show in
    their traces; expires with the tenant's conversation retention. Inline media is not kept."""

    request_id = models.CharField(primary_key=True, max_length=40)
    tenant = models.ForeignKey("accounts.Tenant", on_delete=models.CASCADE, related_name="+", db_index=False)
    created_at = models.DateTimeField()
    request = models.JSONField()  # the upstream request (Anthropic Messages shape) without model and stream
    response = models.JSONField()  # the answer's content blocks; [] for a failed request

    class Meta:
        indexes = [models.Index(fields=["tenant", "created_at"])]
