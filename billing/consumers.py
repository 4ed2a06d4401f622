"""`/ws/usage/`: a signed-in dashboard user's usage page listens here for "new usage" of their tenant."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from accounts.dashboard import SESSION_TENANT, membership_of

from .live import usage_group


class UsageConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        membership = await database_sync_to_async(membership_of)(user, self.scope["session"].get(SESSION_TENANT))
        if membership is None:
            await self.close(code=4403)
            return
        self.group = usage_group(membership.tenant_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def usage_new(self, event: dict) -> None:
        # The page fetches its own figures, scoped to the member's role: nothing tenant-wide goes out here.
        await self.send_json({"type": "usage"})
