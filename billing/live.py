"""Live usage for open dashboards: after usage rows are committed, each tenant's open usage pages get a
"new usage" message over the channel layer (Redis, or in memory in the embedded mode) and fetch
their figures again (billing/consumers.py, the usage page's script).

Sent off the request path and coalesced: at most one message per tenant per NOTIFY_DELAY per process,
so a busy tenant costs one group_send every half second, not one per request.
"""

from __future__ import annotations

import asyncio
import logging

from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)
NOTIFY_DELAY = 0.5


def usage_group(tenant_id: int) -> str:
    return f"usage-{tenant_id}"


class PerTenantDebounce:
    """`run(tenant_id)` on the event loop `delay` seconds after a tenant is notified, once however many
    notifications came meanwhile (per process)."""

    delay: float

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: set[int] = set()

    def notify(self, tenant_ids: set[int]) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (tests): timers of the old one never fire
            self._loop, self._pending = loop, set()
        for tenant_id in tenant_ids - self._pending:
            self._pending.add(tenant_id)
            loop.call_later(self.delay, lambda t=tenant_id: loop.create_task(self._fire(t)))

    async def _fire(self, tenant_id: int) -> None:
        self._pending.discard(tenant_id)
        await self.run(tenant_id)

    async def run(self, tenant_id: int) -> None:
        raise NotImplementedError


class UsageNotifier(PerTenantDebounce):
    delay = NOTIFY_DELAY

    async def run(self, tenant_id: int) -> None:
        try:
            await get_channel_layer().group_send(usage_group(tenant_id), {"type": "usage.new"})
        except Exception:  # a dashboard missing an update is not worth failing anything for
            logger.warning("live usage notification failed for tenant %s", tenant_id, exc_info=True)


usage_notifier = UsageNotifier()
