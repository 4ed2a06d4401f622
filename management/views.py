"""The management API's views: parse with a serializer, call one service, render.

Rules live in accounts/billing/gateway services; a view only scopes what the caller may see (another
tenant is a 404) and maps the services' ValidationError to DRF's 400 naming the field.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from . import serializers
from .permissions import IsOperatorOrTenantAdmin


class WhoAmI(APIView):
    """The credential making the request: its kind, and for an admin key its tenant and role."""

    permission_classes = [IsOperatorOrTenantAdmin]

    @extend_schema(responses=serializers.PrincipalOut, operation_id="whoami")
    def get(self, request):
        return Response(serializers.PrincipalOut(request.user).data)
