"""OpenAPI: how drf-spectacular describes the management credentials (imported by ManagementConfig.ready)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ManagementCredentialScheme(OpenApiAuthenticationExtension):
    target_class = "management.authentication.ManagementCredentialAuthentication"
    name = "managementCredential"
    match_subclasses = True

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "An operator token (sk_cdx_op_...) or a tenant admin key (sk_cdx_admin_...). "
                               "API keys (sk_cdx_...) are refused."}
