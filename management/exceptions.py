"""Errors in DRF's shape: a service's django ValidationError becomes a 400 naming the field."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .services import IdempotencyKeyReused


def exception_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        exc = exceptions.ValidationError(detail)
    elif isinstance(exc, IdempotencyKeyReused):
        return Response({"detail": "This Idempotency-Key was already used for a different request. Use a new key "
                                   "for a new request.", "code": "idempotency_key_reused"},
                        status=status.HTTP_422_UNPROCESSABLE_ENTITY)
    return drf_exception_handler(exc, context)
