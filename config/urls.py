from django.contrib import admin
from django.urls import include, path

from accounts.views import admin_login
from billing.payment_views import stripe_webhook
from gateway.api.anthropic import anthropic_admin_alias_api, anthropic_admin_api, anthropic_api, anthropic_root_api
from gateway.api.gemini import gemini_api, gemini_v1_api
from gateway.api.jina import jina_api
from gateway.api.openai import api, openai_admin_alias_api, openai_admin_api, openai_alias_api
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
    # The admin usage APIs and the Anthropic SDK's message routes at the root come before the OpenAI API
    # and its catch-all (and /anthropic/v1/organizations before the Anthropic API's).
    path("v1/organization/", openai_admin_api.urls),
    path("openai/v1/organization/", openai_admin_alias_api.urls),
    path("v1/organizations/", anthropic_admin_api.urls),
    path("anthropic/v1/organizations/", anthropic_admin_alias_api.urls),
    path("v1/", anthropic_root_api.urls),
    path("v1/", api.urls),
    path("openai/v1/", openai_alias_api.urls),
    path("anthropic/v1/", anthropic_api.urls),
    path("gemini/v1beta/", gemini_api.urls),
    path("gemini/v1/", gemini_v1_api.urls),
    path("jina/v1/", jina_api.urls),
]

# Styled error pages with the dashboard's navigation (templates/403.html, 404.html, 500.html).
handler403 = "accounts.views.permission_denied"
handler404 = "accounts.views.page_not_found"
