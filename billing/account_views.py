"""The dashboard's statements and alerts pages (owners and admins)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts.dashboard import dashboard_view
from accounts.models import Membership

from .alert_forms import AlertRuleForm
from .alerts import alert_rule_create, alert_rule_delete
from .models import AlertDelivery, AlertRule, Statement

SESSION_ALERT_SECRET = "dashboard_alert_secret"
MANAGERS = Membership.Role.ADMIN


@dashboard_view(MANAGERS)
def statement_list(request):
    statements = Statement.objects.filter(tenant=request.tenant).defer("pdf", "csv")
    return render(request, "dashboard/statements.html", {"section": "statements", "statements": statements})


@dashboard_view(MANAGERS)
def statement_download(request, statement_id: int, fmt: str):
    statement = get_object_or_404(Statement, pk=statement_id, tenant=request.tenant)
    if fmt == "pdf":
        response = HttpResponse(bytes(statement.pdf), content_type="application/pdf")
    elif fmt == "csv":
        response = HttpResponse(statement.csv, content_type="text/csv; charset=utf-8")
    else:
        raise Http404("No such format.")
    response["Content-Disposition"] = (f'attachment; filename="statement-{statement.month:%Y-%m}-'
                                       f'{request.tenant.slug}.{fmt}"')
    return response


@dashboard_view(MANAGERS)
def alert_list(request):
    form = AlertRuleForm(request.POST or None, tenant=request.tenant)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            rule, secret = alert_rule_create(
                tenant=request.tenant, kind=data["kind"], threshold_nano=data["amount"], percent=data["percent"],
                api_key=data["api_key"], notify_email=data["notify_email"], webhook_url=data["webhook_url"],
                actor=request.user)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items() if hasattr(exc, "error_dict") else [(None, exc.messages)]:
                for error in errors:
                    form.add_error(field if field in form.fields else None, error)
        else:
            if secret:
                request.session[SESSION_ALERT_SECRET] = {"rule_id": rule.pk, "secret": secret}
            messages.success(request, "Alert created.")
            return redirect("alerts")
    rules = AlertRule.objects.filter(tenant=request.tenant).select_related("api_key")
    deliveries = (AlertDelivery.objects.filter(firing__rule__tenant=request.tenant)
                  .select_related("firing__rule").order_by("-created_at")[:50])
    return render(request, "dashboard/alerts.html", {
        "section": "alerts", "form": form, "rules": rules, "deliveries": deliveries,
        "new_secret": request.session.pop(SESSION_ALERT_SECRET, None)}, status=400 if form.errors else 200)


@dashboard_view(MANAGERS)
@require_POST
def alert_delete(request, rule_id: int):
    alert_rule_delete(rule=get_object_or_404(AlertRule, pk=rule_id, tenant=request.tenant), actor=request.user)
    messages.success(request, "Alert deleted.")
    return redirect("alerts")
