from django.urls import path

from . import account_views, payment_views, views

urlpatterns = [
    path("usage/", views.usage, name="usage"),
    path("usage.csv", views.usage_csv, name="usage-csv"),
    path("billing/", payment_views.billing, name="billing"),
    path("billing/topup/", payment_views.topup, name="billing-topup"),
    path("billing/topup/done/", payment_views.topup_done, name="billing-topup-done"),
    path("billing/topup/cancelled/", payment_views.topup_cancelled, name="billing-topup-cancelled"),
    path("billing/auto-recharge/", payment_views.auto_recharge, name="billing-auto-recharge"),
    path("statements/", account_views.statement_list, name="statements"),
    path("statements/<int:statement_id>.<str:fmt>", account_views.statement_download, name="statement-download"),
    path("alerts/", account_views.alert_list, name="alerts"),
    path("alerts/<int:rule_id>/delete/", account_views.alert_delete, name="alert-delete"),
]
