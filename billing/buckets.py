"""UTC time buckets of the usage rollups: a minute, an hour or a day. Pure module."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MINUTE, HOUR, DAY = "1m", "1h", "1d"
WIDTHS = {MINUTE: timedelta(minutes=1), HOUR: timedelta(hours=1), DAY: timedelta(days=1)}


def bucket_floor(moment: datetime, width: str) -> datetime:
    """The start of the `width` bucket holding `moment`, in UTC."""
    moment = moment.astimezone(UTC).replace(second=0, microsecond=0)
    if width == MINUTE:
        return moment
    moment = moment.replace(minute=0)
    return moment if width == HOUR else moment.replace(hour=0)


# Dates outside these are a client's mistake (seconds taken for milliseconds, a zero), not a report.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class BucketPage:
    """One page of a bucketed report: `starts` are its buckets' starts, `next_start` the next page's first
    bucket (None: this is the last page)."""

    width: str
    starts: list[datetime]
    next_start: datetime | None

    @property
    def start(self) -> datetime:
        return self.starts[0]

    @property
    def end(self) -> datetime:
        return self.starts[-1] + WIDTHS[self.width]


def bucket_page(*, start: datetime, end: datetime, width: str, limit: int, page: datetime | None = None) -> BucketPage:
    """The buckets of [start, end) of `width`, `limit` at a time, from the bucket holding `start` (or `page`,
    a previous page's `next_start`). The caller checks the bounds (ValueError here means a bug)."""
    step = WIDTHS[width]
    first = bucket_floor(start, width)
    cursor = first if page is None else page
    if not first <= cursor < end or bucket_floor(cursor, width) != cursor:
        raise ValueError(f"page {cursor} outside [{first}, {end})")
    starts = []
    while cursor < end and len(starts) < limit:
        starts.append(cursor)
        cursor += step
    return BucketPage(width=width, starts=starts, next_start=cursor if cursor < end else None)


Sums = dict[str, int]


def group_rows(rows: list[dict], by) -> dict[datetime, dict[tuple, Sums]]:
    """Rows of billing.selectors.usage_buckets summed per bucket start and `by(row)` (a tuple)."""
    grouped: dict[datetime, dict[tuple, Sums]] = defaultdict(dict)
    for row in rows:
        sums = grouped[row["start"]].setdefault(by(row), dict.fromkeys(SUMMED, 0))
        for field in SUMMED:
            sums[field] += row[field]
    return grouped


SUMMED = ("requests", "errors", "input_tokens", "output_tokens", "cache_creation_input_tokens",
          "cache_read_input_tokens", "cost_nano")
