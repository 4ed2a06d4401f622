"""What one model call cost and produced: the Meter collects it from the events and records the usage row,
the conversation turn and the request log (gateway/metering/recorder.py), then settles the admission
reservation to the real cost."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from accounts.selectors import KeyPrincipal
from billing.models import UsageEvent
from common import metrics
from conversations.services import TurnRecord

from .. import observability, shutdown, tracing
from ..admission import Ticket, admission
from ..core import InternalRequest, MessageAccumulator, Usage, estimate_input_tokens, estimate_tokens
from ..selectors import DeploymentEntry, ModelEntry
from .recorder import usage_recorder
from .writes import UsageRecord

CLIENT_LEFT = "client_left"
CLIENT_LEFT_STATUS = 499  # nginx's "client closed request": the client never got an answer


class Meter:
    """Collects what one request cost and produced, and writes its UsageEvent row and conversation turn."""

    def __init__(self, *, request_id: str, principal: KeyPrincipal, endpoint: str, ireq: InternalRequest,
                 model: ModelEntry, ticket: Ticket, turn: TurnRecord | None, started: float,
                 trace: dict[str, str], batch_id: str = "") -> None:
        self.request_id = request_id
        self.batch_id = batch_id  # an item of this batch: billed at the batch price
        self.trace = trace
        self.deployment: DeploymentEntry | None = None  # the one that answered
        self.ticket = ticket
        self.turn = turn
        keeps_answer = turn is not None or principal.log_requests
        self.answer = MessageAccumulator() if keeps_answer and ireq.stream else None
        self.principal = principal
        self.endpoint = endpoint
        self.ireq = ireq
        self.model = model
        self.started = started
        self.usage = Usage()
        self.generated_chars = 0  # streamed text we saw, to estimate output of a cut stream
        self.first_token_at: float | None = None
        observability.metered()
        metrics.request_started(endpoint)

    def observe(self, event: dict[str, Any]) -> None:
        if self.answer is not None:
            self.answer.feed(event)
        kind = event.get("type")
        if kind == "content_block_delta":
            if self.first_token_at is None:
                self.first_token_at = time.perf_counter()
            delta = event.get("delta") or {}
            piece = delta.get("text") or delta.get("partial_json") or delta.get("thinking") or ""
            self.generated_chars += len(piece)
        elif kind == "message_start":
            self.usage.update((event.get("message") or {}).get("usage"))
        elif kind == "message_delta":
            self.usage.update(event.get("usage"))

    async def finish(self, status: str, http_status: int, error_type: str = "",
                     content: list[dict[str, Any]] | None = None) -> None:
        """Record the request: its usage row, for a completed answer its conversation turn (`content`: the
        answer's blocks; a stream's are accumulated here), and its log if the tenant keeps them."""
        turn = self.turn
        if turn is not None and not turn.created:
            metrics.lease_ended()  # written or released with the usage row
        answer = content if content is not None else self.answer.content() if self.answer else []
        if turn is not None:
            if status == UsageEvent.Status.OK:
                turn.messages.append({"role": "assistant", "content": answer})
                turn.model = self.model.name
                turn.input_tokens, turn.output_tokens = self.usage.prompt_tokens, self.usage.output_tokens
            elif turn.created:
                turn = None  # a failed first turn leaves nothing behind
            else:
                turn.release_only = True  # a failed turn only gives the conversation back
        if status != UsageEvent.Status.OK:
            # The upstream billed what it generated before the stream ended; it never told us how
            # much, so estimate from the text we relayed (never below what it did report).
            self.usage.output_tokens = max(self.usage.output_tokens, estimate_tokens(self.generated_chars))
        if error_type in (CLIENT_LEFT, shutdown.SERVER_SHUTDOWN) and not self.usage.input_tokens:
            self.usage.input_tokens = estimate_input_tokens(self.ireq.params)  # the upstream had the prompt
        now = time.perf_counter()
        created_at = datetime.now(UTC)
        usage = self.usage
        price = self.model.price_at(created_at.timestamp())
        cost = 0 if price is None else price.cost_nano(
            input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
            cache_write_tokens=usage.cache_creation_input_tokens, cache_read_tokens=usage.cache_read_input_tokens,
            web_searches=usage.web_search_requests, batch=bool(self.batch_id))
        record = UsageRecord(
            request_id=self.request_id,
            tenant_id=self.principal.tenant_id,
            api_key_id=self.principal.key_id,
            endpoint=self.endpoint,
            requested_model=self.ireq.model[:128],
            model=self.model.name,
            upstream_model=self.deployment.upstream_model if self.deployment else "",
            provider=self.deployment.provider if self.deployment else "",
            stream=self.ireq.stream,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_creation_input_tokens=usage.cache_creation_input_tokens,
            cache_read_input_tokens=usage.cache_read_input_tokens,
            web_search_requests=usage.web_search_requests,
            cost_nano=cost,
            price_id=None if price is None else price.id,
            status=status,
            http_status=http_status,
            error_type=error_type[:64],
            latency_ms=round((now - self.started) * 1000),
            ttft_ms=None if self.first_token_at is None else round((self.first_token_at - self.started) * 1000),
            created_at=created_at,
            batch_id=self.batch_id,
            end_user=self.ireq.end_user,
            tags=",".join(self.ireq.tags),
            **self.trace,
        )
        metrics.request_finished(self, status, now, cost)
        row = usage_recorder.record(
            record, turn,
            {"request_id": self.request_id, "tenant_id": self.principal.tenant_id, "request": self.ireq.params,
             "response": answer} if self.principal.log_requests else None,
        )
        observability.model_call_finished(self, record)
        # Shielded as one: a client leaving while the row is written must not skip settling the reservation.
        await asyncio.shield(self._settle_after(row, tokens=usage.prompt_tokens + usage.output_tokens, cost=cost))

    async def _settle_after(self, row, *, tokens: int, cost: int) -> None:
        with tracing.span("gateway.usage_write"):
            await row
        await admission.settle(self.ticket, tokens=tokens, cost_nano=cost)
