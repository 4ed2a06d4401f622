"""Auto-recharge from the request path: after usage rows are committed, a tenant with auto-recharge on
whose available balance fell below its threshold gets an `auto_recharge` task (billing/tasks.py).

Off the request path and cheap: the tenants with auto-recharge on (and their thresholds) are read once
every PROFILES_TTL per process, and a tenant's balance is checked at most once per CHECK_DELAY. Which
of the many processes and requests noticing the low balance charges the card is decided by the claim
in billing/payments.py (auto_recharge_run), not here: this only has to notice.
"""

from __future__ import annotations

import logging
import time

from asgiref.sync import sync_to_async

from common.db import UNREACHABLE, refresh_connections
from common.outage import db_unavailable

from .live import PerTenantDebounce
from .models import BillingProfile
from .selectors import tenant_available_nano
from .tasks import auto_recharge

logger = logging.getLogger(__name__)
CHECK_DELAY = 0.5
PROFILES_TTL = 5.0


def _enabled_thresholds() -> dict[int, int]:
    refresh_connections()
    return dict(BillingProfile.objects.filter(auto_recharge_enabled=True).exclude(payment_method_id="")
                .values_list("tenant_id", "auto_recharge_threshold_nano"))


def _check(tenant_id: int, threshold: int) -> None:
    refresh_connections()
    if tenant_available_nano(tenant_id) < threshold:
        auto_recharge.delay(tenant_id)  # eager in the embedded mode: runs here, on this worker thread


class RechargeWatcher(PerTenantDebounce):
    delay = CHECK_DELAY

    def __init__(self) -> None:
        super().__init__()
        self._thresholds: dict[int, int] = {}
        self._read_at = float("-inf")

    async def run(self, tenant_id: int) -> None:
        try:
            if time.monotonic() - self._read_at > PROFILES_TTL:
                self._read_at = time.monotonic()
                self._thresholds = await sync_to_async(_enabled_thresholds, thread_sensitive=False)()
            threshold = self._thresholds.get(tenant_id)
            if threshold is not None:
                # Not the request path's thread: an eager recharge calls Stripe and must not hold usage writes.
                await sync_to_async(_check, thread_sensitive=False)(tenant_id, threshold)
        except UNREACHABLE as exc:  # an outage: its one line per interval, and the minute sweep catches up
            db_unavailable.failed(exc)
        except Exception:  # the minute sweep (auto-recharge-sweep) catches what this misses
            logger.warning("auto-recharge check failed for tenant %s", tenant_id, exc_info=True)


recharge_watcher = RechargeWatcher()
