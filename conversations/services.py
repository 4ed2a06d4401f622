"""Conversation history: begin a turn (lease + history), write it after the answer, expire old ones.

Concurrency rule: one turn at a time per conversation. `conversation_begin` takes a lease on the
conversation (a conditional UPDATE of `busy_until`); a second turn arriving meanwhile gets 409
`conversation_busy` with `retry-after: 1` (the openai SDK retries 409s by itself), so turns never
interleave and none is lost. The lease ends when the turn is written or released, or after
LEASE_SECONDS if the process died mid-turn.

Turns are written after the answer, in the same transaction as the request's usage row
(gateway.metering.writes.usage_events_write), so a client that sends its next turn right after the
answer always finds the previous one.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.db import transaction
from django.db.models import F, Max, Q
from django.utils import timezone

from accounts.audit import audit_record
from accounts.models import Tenant
from common.db import insert_sql
from common.partitions import is_partitioned, month_add, month_floor, partition_drop, partitions, partitions_ensure
from common.errors import Conflict, Invalid, NotFound

from .models import Conversation, ConversationImage, Message, RequestLog, StoredResponse

logger = logging.getLogger(__name__)

LEASE_SECONDS = 660  # longer than the upstream timeout of a turn (600 s)
EXPIRY_BATCH = 500


REQUEST_LOG_TABLE = RequestLog._meta.db_table


def new_conversation_id() -> str:
    return "conv_" + secrets.token_hex(16)


def _not_found(conversation_id: str) -> NotFound:
    return NotFound(f"No conversation found with id '{conversation_id}'. It may have expired.",
                    code="conversation_not_found", param="conversation_id")


@dataclass(slots=True)
class History:
    system: str | None
    messages: list[dict[str, Any]]  # Anthropic messages, oldest first
    next_seq: int


def conversation_begin(*, tenant_id: int, conversation_id: str, lease: bool, now: datetime) -> History:
    """The stored history of a tenant's conversation, leased for one turn when `lease`.

    404 for an unknown, expired or other tenant's id; 409 while another turn holds it.
    """
    conversations = Conversation.objects.filter(pk=conversation_id, tenant_id=tenant_id)
    if lease:
        free = Q(busy_until__isnull=True) | Q(busy_until__lt=now)
        if not conversations.filter(free).update(busy_until=now + timedelta(seconds=LEASE_SECONDS)):
            if not conversations.exists():
                raise _not_found(conversation_id)
            raise Conflict("Another request is adding a turn to this conversation; retry when it is done.",
                           code="conversation_busy", param="conversation_id", retry_after=1)
    rows = list(Message.objects.filter(conversation__in=conversations).order_by("seq")
                .values_list("seq", "role", "content"))
    images_expand(conversation_id, [content for _, _, content in rows])
    if not rows and not lease and not conversations.exists():
        raise _not_found(conversation_id)
    system, messages = None, []
    for _, role, content in rows:
        if role == Message.Role.SYSTEM:
            system = "".join(block.get("text", "") for block in content)  # the latest system prompt applies
        else:
            messages.append({"role": role, "content": content})
    return History(system=system, messages=messages, next_seq=(rows[-1][0] + 1) if rows else 0)


@dataclass(slots=True)
class TurnRecord:
    """What one request adds to a conversation, written with its usage row."""

    conversation_id: str
    tenant_id: int
    api_key_id: int
    request_id: str
    created: bool  # a new conversation
    next_seq: int
    system: str | None = None  # a system prompt this turn sets
    messages: list[dict[str, Any]] = field(default_factory=list)  # the request's new messages, then the answer
    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    release_only: bool = False  # the turn failed: only end the lease
    response_body: dict | None = None  # a Responses API answer to keep (set once it is rendered)
    input_items: list = field(default_factory=list)
    previous_response_id: str = ""


def turns_write(turns: list[TurnRecord], now: datetime) -> None:
    """Write turns: new conversations, messages, responses, counters, leases released; atomically.

    One multi-row INSERT per table for the whole batch and one UPDATE per continued conversation. On
    PostgreSQL they are one statement (data-modifying CTEs), so one round trip and no BEGIN/COMMIT; on
    SQLite one transaction.
    """
    conversations, rows, responses, statements, images = [], [], [], [], {}
    for turn in turns:
        if turn.release_only:
            statements.append(_update_sql(turn.conversation_id, now, added=0, touch=False))
            continue
        items = ([{"role": Message.Role.SYSTEM, "content": [{"type": "text", "text": turn.system}]}]
                 if turn.system else []) + turn.messages
        last = len(items) - 1
        for offset, item in enumerate(items):
            content = _by_reference(turn.conversation_id, item["content"], images)
            rows.append((turn.conversation_id, turn.next_seq + offset, item["role"], content,
                         turn.model if offset == last else "", turn.input_tokens if offset == last else 0,
                         turn.output_tokens if offset == last else 0, turn.request_id, now))
        if turn.response_body is not None:
            responses.append((turn.response_body["id"], turn.tenant_id, turn.conversation_id, turn.next_seq + last,
                              turn.previous_response_id, turn.response_body, turn.input_items, now))
        if turn.created:
            conversations.append((turn.conversation_id, turn.tenant_id, turn.api_key_id, {}, now, now, len(items)))
        else:
            statements.append(_update_sql(turn.conversation_id, now, added=len(items), touch=True))
    statements += [
        insert_sql(Conversation, ("id", "tenant", "api_key", "metadata", "created_at", "last_activity_at",
                                   "message_count"), conversations),
        insert_sql(Message, ("conversation", "seq", "role", "content", "model", "input_tokens", "output_tokens",
                              "request_id", "created_at"), rows),
        insert_sql(StoredResponse, ("id", "tenant", "conversation", "last_seq", "previous_response_id", "body",
                                     "input_items", "created_at"), responses),
        insert_sql(ConversationImage, ("conversation", "sha256", "media_type", "data"), list(images.values()),
                    ignore_conflicts=True),
    ]
    statements = [statement for statement in statements if statement is not None]
    connection = transaction.get_connection()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql" and len(statements) > 1:
            head = ", ".join(f"s{n} AS ({sql})" for n, (sql, _) in enumerate(statements[:-1]))
            cursor.execute(f"WITH {head} {statements[-1][0]}", [p for _, params in statements for p in params])
            return
        with transaction.atomic():
            for sql, params in statements:
                cursor.execute(sql, params)


def turns_replay(turns: list[TurnRecord], now: datetime) -> None:
    """Write the turns from the spool (gateway/metering/spool.py) that are not written yet.

    A turn's first message seq was free when its lease was taken and the lease is still held (it ends
    only when the turn is written), so a message at that seq means this very turn was written already.
    Two replays of one turn at once (rare: the spool has one replayer per entry) collide on the
    (conversation, seq) key, and the caller's row-by-row retry finds it written.
    """
    written = set(Message.objects.filter(conversation_id__in={turn.conversation_id for turn in turns},
                                         seq__in={turn.next_seq for turn in turns})
                  .values_list("conversation_id", "seq"))
    turns_write([turn for turn in turns if turn.release_only or (turn.conversation_id, turn.next_seq) not in written],
                now)


def request_logs_write(logs: list[dict], now: datetime) -> None:
    """Insert request logs (`request_id`, `tenant_id`, `request`, `response`), one statement."""
    statement = insert_sql(RequestLog, ("request_id", "tenant_id", "created_at", "request", "response"),
                           [(log["request_id"], log["tenant_id"], now, _without_media(log["request"]),
                             log["response"]) for log in logs], ignore_conflicts=True)
    if statement is not None:
        with transaction.get_connection().cursor() as cursor:
            cursor.execute(*statement)


def _without_media(value: Any) -> Any:
    """A copy with base64 payloads replaced by their size: a log is for reading, not for replaying."""
    if isinstance(value, list):
        return [_without_media(item) for item in value]
    if isinstance(value, dict):
        if value.get("type") == "base64" and isinstance(value.get("data"), str):
            return {**value, "data": f"<{len(value['data'])} base64 characters>"}
        return {key: _without_media(item) for key, item in value.items()}
    return value


def _by_reference(conversation_id: str, content: list[dict], images: dict) -> list[dict]:
    """`content` with inline base64 media replaced by references to ConversationImage rows (collected),
    and thinking without a signature (from providers that cannot sign it) left out: Anthropic would
    refuse the history."""
    out = []
    for block in content:
        if isinstance(block, dict) and block.get("type") == "thinking" and not block.get("signature"):
            continue
        source = block.get("source") if isinstance(block, dict) else None
        if isinstance(source, dict) and source.get("type") == "base64" and isinstance(source.get("data"), str):
            digest = hashlib.sha256(source["data"].encode()).hexdigest()
            images[(conversation_id, digest)] = (conversation_id, digest, source.get("media_type", ""), source["data"])
            block = {**block, "source": {"type": "stored", "sha256": digest, "media_type": source.get("media_type")}}
        out.append(block)
    return out


def images_expand(conversation_id: str, contents: list[list[dict]]) -> None:
    """Put stored media back into message contents, in place (one query, only when there are any)."""
    stored = [block["source"] for content in contents for block in content
              if isinstance(block.get("source"), dict) and block["source"].get("type") == "stored"]
    if not stored:
        return
    data = dict(ConversationImage.objects.filter(conversation_id=conversation_id,
                                                 sha256__in={s["sha256"] for s in stored})
                .values_list("sha256", "data"))
    for source in stored:
        digest = source.pop("sha256")
        source.update(type="base64", data=data.get(digest, ""))


def _update_sql(conversation_id: str, now: datetime, *, added: int, touch: bool) -> tuple[str, list]:
    """Release the conversation's lease (and count the turn's messages, when it was written)."""
    connection = transaction.get_connection()
    table = connection.ops.quote_name(Conversation._meta.db_table)
    if not touch:
        return f"UPDATE {table} SET busy_until = NULL WHERE id = %s", [conversation_id]
    field = Conversation._meta.get_field("last_activity_at")
    return (f"UPDATE {table} SET busy_until = NULL, last_activity_at = %s, message_count = message_count + %s "
            f"WHERE id = %s", [field.get_db_prep_save(now, connection), added, conversation_id])


def response_begin(*, tenant_id: int, api_key_id: int, response_id: str, lease: bool,
                   now: datetime) -> tuple[str, History]:
    """Continue from a stored response: (the conversation to add to, its history up to that response).

    When the response is the last turn of its conversation, that conversation continues (leased like
    `conversation_begin`). When later turns followed it (the client branches from an older answer),
    the history up to it is copied into a new conversation, so branches never see each other's turns.
    """
    stored = (StoredResponse.objects.filter(pk=response_id, tenant_id=tenant_id)
              .values_list("conversation_id", "last_seq", "conversation__message_count").first())
    if stored is None:
        raise NotFound(f"No response found with id '{response_id}'. It may have expired or been deleted.",
                       code="response_not_found", param="previous_response_id")
    conversation_id, last_seq, count = stored
    if last_seq + 1 < count and lease:
        conversation_id = _fork(conversation_id, last_seq, tenant_id, api_key_id, now)
    history = conversation_begin(tenant_id=tenant_id, conversation_id=conversation_id, lease=lease, now=now)
    if not lease:  # a read-only continuation of an older answer: only the history up to it
        history.messages = history.messages[:_messages_upto(conversation_id, last_seq)]
    return conversation_id, history


def _messages_upto(conversation_id: str, last_seq: int) -> int:
    return Message.objects.filter(conversation_id=conversation_id, seq__lte=last_seq).exclude(
        role=Message.Role.SYSTEM).count()


@transaction.atomic
def _fork(conversation_id: str, last_seq: int, tenant_id: int, api_key_id: int, now: datetime) -> str:
    fork_id = new_conversation_id()
    rows = list(Message.objects.filter(conversation_id=conversation_id, seq__lte=last_seq).order_by("seq"))
    Conversation.objects.create(id=fork_id, tenant_id=tenant_id, api_key_id=api_key_id, created_at=now,
                                last_activity_at=now, message_count=len(rows))
    images = list(ConversationImage.objects.filter(conversation_id=conversation_id))
    for row in rows + images:
        row.pk, row.conversation_id = None, fork_id
    Message.objects.bulk_create(rows)
    ConversationImage.objects.bulk_create(images)
    return fork_id


def response_get(*, tenant_id: int, response_id: str) -> StoredResponse:
    stored = StoredResponse.objects.filter(pk=response_id, tenant_id=tenant_id).first()
    if stored is None:
        raise NotFound(f"No response found with id '{response_id}'.", code="response_not_found")
    return stored


def response_delete(*, tenant_id: int, response_id: str) -> None:
    """Forget a stored response (its turn stays in the conversation's history)."""
    if not StoredResponse.objects.filter(pk=response_id, tenant_id=tenant_id).delete()[0]:
        raise NotFound(f"No response found with id '{response_id}'.", code="response_not_found")


def conversation_release(*, conversation_id: str) -> None:
    """End a turn's lease without writing it (the turn never reached the upstream)."""
    Conversation.objects.filter(pk=conversation_id).update(busy_until=None)


def conversations_expire(*, now: datetime | None = None, batch_size: int = EXPIRY_BATCH) -> int:
    """Delete conversations idle for longer than their tenant's retention, in small batches.

    Each batch is its own short transaction (ids first, then a DELETE by primary key), so no lock is
    held for long and a crash or a second run only leaves less to do. Returns how many were deleted.
    """
    now = now or timezone.now()
    deleted = 0
    for days in Tenant.objects.values_list("conversation_retention_days", flat=True).distinct():
        expired = Conversation.objects.filter(tenant__conversation_retention_days=days,
                                              last_activity_at__lt=now - timedelta(days=days))
        while ids := list(expired.values_list("pk", flat=True)[:batch_size]):
            with transaction.atomic():
                Message.objects.filter(conversation_id__in=ids).delete()
                deleted += Conversation.objects.filter(pk__in=ids).delete()[1].get("conversations.Conversation", 0)
        logs = RequestLog.objects.filter(tenant__conversation_retention_days=days,
                                         created_at__lt=now - timedelta(days=days))
        while ids := list(logs.values_list("pk", flat=True)[:batch_size]):
            RequestLog.objects.filter(pk__in=ids).delete()
    return deleted


def request_log_partitions_maintain(*, now: datetime | None = None) -> dict:
    """Request logs' monthly partitions on PostgreSQL (conversations migration 0006): months ahead created,
    and whole months dropped once they end before the longest retention of any tenant, where every log in
    them has expired. `conversations_expire` deletes the expired logs of younger months row by row, by
    each tenant's own retention; this only takes the bulk of the history away in one statement."""
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        return {}
    now = now or timezone.now()
    this_month = month_floor(now)
    longest = Tenant.objects.aggregate(days=Max("conversation_retention_days"))["days"] or 0
    horizon = (now - timedelta(days=longest)).astimezone(UTC).date()
    dropped = []
    with transaction.atomic(), connection.cursor() as cursor:
        if not is_partitioned(cursor, REQUEST_LOG_TABLE):
            return {}
        created = partitions_ensure(cursor, REQUEST_LOG_TABLE, first=this_month,
                                    last=month_add(this_month, settings.USAGE_PARTITIONS_AHEAD))
        cursor.execute("SET LOCAL lock_timeout = '2s'")
        for partition in partitions(cursor, REQUEST_LOG_TABLE):
            if partition.month is not None and partition.end <= horizon:
                partition_drop(cursor, REQUEST_LOG_TABLE, partition)
                dropped.append(partition.name)
    return {"created": created, "dropped": dropped}


def tenant_conversations_delete(*, tenant: Tenant, actor=None, via: str = "system") -> int:
    """Delete all of a tenant's stored conversations (an operator's data deletion), in batches."""
    deleted = 0
    while ids := list(Conversation.objects.filter(tenant=tenant).values_list("pk", flat=True)[:EXPIRY_BATCH]):
        with transaction.atomic():
            Message.objects.filter(conversation_id__in=ids).delete()
            deleted += Conversation.objects.filter(pk__in=ids).delete()[1].get("conversations.Conversation", 0)
    while ids := list(RequestLog.objects.filter(tenant=tenant).values_list("pk", flat=True)[:EXPIRY_BATCH]):
        RequestLog.objects.filter(pk__in=ids).delete()
    audit_record(action="conversations.delete", via=via, actor=actor, tenant=tenant, details={"deleted": deleted})
    return deleted


# --- The Conversations API (items are converted by gateway/api/conversations.py) ----------------------

METADATA_MAX_KEYS = 16


def metadata_validate(metadata: Any) -> dict:
    """OpenAI's metadata rules: at most 16 string keys (64 chars) with string values (512 chars)."""
    if metadata is None:
        return {}
    if (not isinstance(metadata, dict) or len(metadata) > METADATA_MAX_KEYS
            or not all(isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512
                       for k, v in metadata.items())):
        raise Invalid("Invalid 'metadata': at most 16 string keys (up to 64 characters) with string values (up to "
                      "512 characters).", param="metadata")
    return metadata


def conversation_get(*, tenant_id: int, conversation_id: str) -> Conversation:
    conversation = Conversation.objects.filter(pk=conversation_id, tenant_id=tenant_id).first()
    if conversation is None:
        raise _not_found(conversation_id)
    return conversation


@transaction.atomic
def conversation_create(*, tenant_id: int, api_key_id: int, messages: list[dict], system: str | None,
                        metadata: dict, now: datetime) -> Conversation:
    conversation = Conversation.objects.create(id=new_conversation_id(), tenant_id=tenant_id, api_key_id=api_key_id,
                                               metadata=metadata, created_at=now, last_activity_at=now)
    if messages or system:
        turns_write([TurnRecord(conversation_id=conversation.pk, tenant_id=tenant_id, api_key_id=api_key_id,
                                request_id="", created=False, next_seq=0, system=system, messages=messages)], now)
        conversation.refresh_from_db()
    return conversation


def conversation_update(*, tenant_id: int, conversation_id: str, metadata: dict) -> Conversation:
    conversation = conversation_get(tenant_id=tenant_id, conversation_id=conversation_id)
    conversation.metadata = metadata
    conversation.save(update_fields=["metadata"])
    return conversation


def conversation_delete(*, tenant_id: int, conversation_id: str) -> None:
    with transaction.atomic():
        conversation = conversation_get(tenant_id=tenant_id, conversation_id=conversation_id)
        Message.objects.filter(conversation=conversation).delete()
        conversation.delete()


def conversation_messages(*, tenant_id: int, conversation_id: str) -> list[Message]:
    conversation = conversation_get(tenant_id=tenant_id, conversation_id=conversation_id)
    messages = list(Message.objects.filter(conversation=conversation).order_by("seq"))
    images_expand(conversation_id, [message.content for message in messages])
    return messages


def conversation_append(*, tenant_id: int, api_key_id: int, conversation_id: str, messages: list[dict],
                        system: str | None, now: datetime) -> int:
    """Add messages as one turn (leased like any turn); returns the seq of the first one added."""
    history = conversation_begin(tenant_id=tenant_id, conversation_id=conversation_id, lease=True, now=now)
    turns_write([TurnRecord(conversation_id=conversation_id, tenant_id=tenant_id, api_key_id=api_key_id,
                            request_id="", created=False, next_seq=history.next_seq, system=system,
                            messages=messages)], now)
    return history.next_seq


def conversation_message_delete(*, tenant_id: int, conversation_id: str, seq: int) -> Conversation:
    with transaction.atomic():
        conversation = conversation_get(tenant_id=tenant_id, conversation_id=conversation_id)
        if not Message.objects.filter(conversation=conversation, seq=seq).delete()[0]:
            raise NotFound("No such item in this conversation.", code="item_not_found")
        Conversation.objects.filter(pk=conversation.pk).update(message_count=F("message_count") - 1)
    conversation.refresh_from_db()
    return conversation
