"""/api/: the management API (v1), its OpenAPI schema and its docs page (Swagger UI, served from here)."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from . import views as v

TENANT = "v1/tenants/<slug:slug>"

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema", authentication_classes=[],
                                                 permission_classes=[]), name="api-docs"),
    path("v1/whoami", v.WhoAmI.as_view(), name="api-whoami"),
    path("v1/tenants", v.TenantList.as_view(), name="api-tenants"),
    path(TENANT, v.TenantDetail.as_view(), name="api-tenant"),
    path(f"{TENANT}/suspend", v.TenantSuspend.as_view(), name="api-tenant-suspend"),
    path(f"{TENANT}/resume", v.TenantResume.as_view(), name="api-tenant-resume"),
    path(f"{TENANT}/balance", v.TenantBalance.as_view(), name="api-tenant-balance"),
    path(f"{TENANT}/credits", v.TenantCredits.as_view(), name="api-tenant-credits"),
    path(f"{TENANT}/adjustments", v.TenantAdjustments.as_view(), name="api-tenant-adjustments"),
    path(f"{TENANT}/ledger", v.TenantLedger.as_view(), name="api-tenant-ledger"),
    path(f"{TENANT}/usage", v.TenantUsage.as_view(), name="api-tenant-usage"),
    path(f"{TENANT}/budgets", v.Budgets.as_view(), name="api-tenant-budgets"),
    path(f"{TENANT}/keys", v.KeyList.as_view(), name="api-keys"),
    path(f"{TENANT}/keys/<str:key_id>", v.KeyDetail.as_view(), name="api-key"),
    path(f"{TENANT}/keys/<str:key_id>/rotate", v.KeyRotate.as_view(), name="api-key-rotate"),
    path(f"{TENANT}/keys/<str:key_id>/revoke", v.KeyRevoke.as_view(), name="api-key-revoke"),
    path(f"{TENANT}/members", v.MemberList.as_view(), name="api-members"),
    path(f"{TENANT}/members/<int:member_id>", v.MemberDetail.as_view(), name="api-member"),
    path(f"{TENANT}/invitations", v.Invitations.as_view(), name="api-invitations"),
    path(f"{TENANT}/alert-rules", v.AlertRuleList.as_view(), name="api-alert-rules"),
    path(f"{TENANT}/alert-rules/<int:rule_id>", v.AlertRuleDetail.as_view(), name="api-alert-rule"),
    path("v1/ledger", v.Ledger.as_view(), name="api-ledger"),
    path("v1/usage", v.Usage.as_view(), name="api-usage"),
    path("v1/audit", v.Audit.as_view(), name="api-audit"),
    path("v1/models", v.ModelList.as_view(), name="api-models"),
    path("v1/models/<path:name>/prices", v.PriceList.as_view(), name="api-prices"),
    path("v1/models/<path:key>", v.ModelDetail.as_view(), name="api-model"),
    path("v1/providers", v.ProviderList.as_view(), name="api-providers"),
    path("v1/providers/<str:key>", v.ProviderDetail.as_view(), name="api-provider"),
    path("v1/providers/<str:name>/credentials", v.CredentialList.as_view(), name="api-credentials"),
    path("v1/providers/<str:name>/credentials/<int:credential_id>", v.CredentialDetail.as_view(),
         name="api-credential"),
    path("v1/deployments", v.DeploymentList.as_view(), name="api-deployments"),
    path("v1/deployments/<int:key>", v.DeploymentDetail.as_view(), name="api-deployment"),
]
