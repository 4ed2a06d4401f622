"""Serializers of the management API: they validate input and shape output; they never write."""

from __future__ import annotations

from rest_framework import serializers


class PrincipalOut(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["operator", "admin"])
    credential = serializers.CharField(source="credential.display")
    name = serializers.CharField(source="credential.name")
    read_only = serializers.BooleanField()
    tenant = serializers.SlugField(source="tenant.slug", allow_null=True, default=None)
    role = serializers.CharField(allow_null=True)
