"""Access to the self-serve dashboard: who is signed in, in which tenant, with which role.

Every dashboard view is wrapped by `dashboard_view`: it requires a signed-in user, resolves the tenant
they are working in (the session's choice among their memberships, else their first), and refuses a
role below the view's minimum with a 403, whatever URL was typed. Views then query through
`request.tenant` only, so one tenant's rows never reach another's pages.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect

from common.hooks import Provider

from .models import ApiKey, Membership

SESSION_TENANT = "dashboard_tenant_id"
# key_budget_states(keys) -> {key id: BudgetState} for the keys pages' budget bars: spend is billing's
# (billing.selectors, provided in billing.apps).
key_budget_states = Provider("accounts.dashboard.key_budget_states")
_RANK = {Membership.Role.MEMBER: 0, Membership.Role.ADMIN: 1, Membership.Role.OWNER: 2}


def memberships_of(user) -> list[Membership]:
    return list(Membership.objects.filter(user=user).select_related("tenant").order_by("created_at"))


def membership_of(user, chosen_tenant_id: int | None, memberships: list[Membership] | None = None) -> Membership | None:
    """The user's membership in the tenant they chose (the session's), else their first one."""
    memberships = memberships_of(user) if memberships is None else memberships
    chosen = next((m for m in memberships if m.tenant_id == chosen_tenant_id), None)
    return chosen or (memberships[0] if memberships else None)


def membership_for(request) -> Membership | None:
    return membership_of(request.user, request.session.get(SESSION_TENANT))


def dashboard_view(min_role: str = Membership.Role.MEMBER) -> Callable:
    def decorate(view: Callable) -> Callable:
        @login_required
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            # One query for the page: the navigation lists the same memberships.
            membership = attach_membership(request)
            if membership is None:
                return redirect("dashboard-no-tenant")
            if _RANK[membership.role] < _RANK[min_role]:
                raise PermissionDenied(f"This page needs the {min_role} role.")
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


def is_manager(membership: Membership) -> bool:
    """Owners and admins see every key, the team and billing; members see their own keys."""
    return _RANK[membership.role] >= _RANK[Membership.Role.ADMIN]


def visible_keys(request):
    """The tenant's keys this member may see: all of them for managers, their own for members."""
    keys = ApiKey.objects.filter(tenant=request.tenant)
    return keys if is_manager(request.membership) else keys.filter(created_by=request.user)


def navigation(request) -> dict:
    """Template context: the signed-in user's tenants and role, for the navigation (the banner saying why
    requests fail comes from billing.dashboard.alerts)."""
    membership = getattr(request, "membership", None)
    if membership is None:
        return {}
    return {"membership": membership, "is_manager": is_manager(membership), "memberships": request.memberships}


def attach_membership(request) -> Membership | None:
    """Resolve the signed-in user's current membership onto the request, as dashboard_view does; for pages
    outside it (the error pages) that still show the navigation."""
    if not request.user.is_authenticated:
        return None
    request.memberships = memberships_of(request.user)
    membership = membership_of(request.user, request.session.get(SESSION_TENANT), request.memberships)
    if membership is not None:
        request.membership, request.tenant = membership, membership.tenant
    return membership
