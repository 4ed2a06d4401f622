from django.conf import settings
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination


class Cursor(CursorPagination):
    """Newest first, by id; `limit` up to MANAGEMENT_MAX_PAGE_SIZE (more is a 400, not quietly fewer)."""

    ordering = "-id"
    page_size_query_param = "limit"

    def get_page_size(self, request) -> int:
        raw = request.query_params.get("limit")
        if raw is None:
            return settings.MANAGEMENT_PAGE_SIZE
        largest = settings.MANAGEMENT_MAX_PAGE_SIZE
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= largest:
            raise ValidationError({"limit": [f"A whole number from 1 to {largest}."]})
        return int(raw)

    def decode_cursor(self, request):
        try:
            return super().decode_cursor(request)
        except NotFound:
            raise ValidationError({"cursor": ["Invalid cursor: pass the next or previous link as given."]}) from None
