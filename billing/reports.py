"""Usage reports as the API and the dashboard hand them out: JSON rows and CSV."""

from __future__ import annotations

import csv
import io
from datetime import date

from django.http import HttpResponse

from common.money import usd_string

COLUMNS = ("date", "model", "requests", "errors", "input_tokens", "output_tokens", "cache_creation_input_tokens",
           "cache_read_input_tokens", "web_search_requests", "cost_usd")
# The dashboard's export is per day, key and model: the key's name and public id come first.
DASHBOARD_COLUMNS = ("date", "key", "key_id", *COLUMNS[1:])


def cache_hit_ratio(row: dict) -> float | None:
    """Cache reads over all input (uncached + cache writes + cache reads); None without input."""
    total = row["input_tokens"] + row["cache_creation_input_tokens"] + row["cache_read_input_tokens"]
    return round(row["cache_read_input_tokens"] / total, 4) if total else None


def rows_payload(rows: list[dict]) -> list[dict]:
    return [
        {"date": row["day"].isoformat(), **({"model": row["model"]} if "model" in row else {}),
         **{field: row[field] for field in ("end_user", "tag") if field in row},
         "requests": row["requests"], "errors": row["errors"],
         "input_tokens": row["input_tokens"], "output_tokens": row["output_tokens"],
         "cache_creation_input_tokens": row["cache_creation_input_tokens"],
         "cache_read_input_tokens": row["cache_read_input_tokens"],
         "web_search_requests": row["web_search_requests"], "cost_usd": usd_string(row["cost_nano"]),
         "cost_nano": row["cost_nano"], "cache_hit_ratio": cache_hit_ratio(row),
         **{field: row[field] for field in ("key", "key_id") if field in row}}
        for row in rows
    ]


def csv_response(data: list[dict], start: date, end: date, columns: tuple[str, ...] = COLUMNS) -> HttpResponse:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(data)
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="usage-{start}-{end}.csv"'
    return response
