"""The dashboard's banner saying why the tenant's requests are refused, or soon will be: a template
context processor (config/settings.py) beside accounts.dashboard.navigation, since balances and budgets
are billing's."""

from __future__ import annotations

from django.conf import settings

from accounts.dashboard import is_manager, visible_keys
from common.money import format_usd

from .selectors import key_budget_states, tenant_available_nano


def alerts(request) -> dict:
    """Template context: `alerts` for the signed-in user's current tenant (none outside the dashboard)."""
    if getattr(request, "membership", None) is None:
        return {}
    return {"alerts": account_alerts(request)}


def account_alerts(request) -> list[dict]:
    """Why the tenant's requests are refused, or soon will be: [{"level", "code", "text"}], worst first.

    Everyone sees the state (members too: their requests fail the same way); only managers see amounts.
    """
    tenant, manager = request.tenant, is_manager(request.membership)
    alerts = []
    if tenant.status != tenant.Status.ACTIVE:
        alerts.append({"level": "error", "code": "suspended", "text":
                       "This workspace is suspended: every request with its keys is refused (403 account_suspended), "
                       "the Playground too. Contact your operator."})
    if tenant.credit_limit_nano is not None:
        headroom = tenant_available_nano(tenant.pk) + tenant.credit_limit_nano
        amount = f" ({format_usd(headroom - tenant.credit_limit_nano)} available)" if manager else ""
        if headroom <= 0:
            alerts.append({"level": "error", "code": "balance-exhausted", "text":
                           f"The workspace's balance is used up{amount}: requests are refused (429 "
                           "insufficient_quota) until credit is added."})
        elif headroom < settings.DASHBOARD_LOW_BALANCE_NANO:
            alerts.append({"level": "warning", "code": "balance-low", "text":
                           f"The workspace's balance is low{amount}: requests will be refused once it is used up."})
    keys = list(visible_keys(request).filter(budget_nano__isnull=False, revoked_at__isnull=True))
    states = key_budget_states(keys)
    over = [key.name or key.display for key in keys if states[key.pk].over]
    if over:
        alerts.append({"level": "error", "code": "budget-reached", "text":
                       f"Budget reached for {', '.join(over)}: {'its' if len(over) == 1 else 'their'} requests are "
                       "refused (429) until the budget period resets or the budget is raised on the Keys page."})
    return alerts
