from django.contrib import admin
from django.urls import include, path

from accounts.views import admin_login
from billing.payment_views import stripe_webhook
from gateway.api import registry
from gateway.api.ops import health, health_live, health_ready, metrics_view
from gateway.views import index, public_prices

urlpatterns = [
    path("", index, name="index"),
    path("health", health, name="health"),
    path("health/live", health_live, name="health-live"),
    path("health/ready", health_ready, name="health-ready"),
    path("pricing/", public_prices, name="public-prices"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/login/", admin_login),  # before the admin's own: the same page, throttled
    path("admin/", admin.site.urls),
    # The management API (Django REST framework) and its OpenAPI schema and docs, on the full handler.
    path("api/", include("management.urls")),
    path("billing/stripe/webhook", stripe_webhook, name="stripe-webhook"),
    # The self-serve dashboard: each domain app serves its own pages.
    path("", include("accounts.urls")),
    path("dashboard/", include("billing.urls")),
    path("dashboard/", include("conversations.urls")),
    path("dashboard/", include("gateway.urls")),
    # Every protocol's APIs (gateway/api/registry.py), in the order that keeps a catch-all from answering
    # for the mounts under it.
    *registry.urlpatterns(),
]

# Styled error pages with the dashboard's navigation (templates/403.html, 404.html, 500.html).
handler403 = "accounts.views.permission_denied"
handler404 = "accounts.views.page_not_found"
