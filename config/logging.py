"""Log formatting: readable text by default, one JSON object a line with LOG_FORMAT=json.

The JSON lines carry the record's `fields` (an access line's request id, tenant, tokens, ...) at the top
level, so a log pipeline indexes them without parsing the message.
"""

from __future__ import annotations

import logging
import time

import orjson

_second: tuple[float, str] = (-1.0, "")  # the second last formatted, and its text (one tuple: thread-safe)


def iso_time(created: float) -> str:
    """`datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")`, with the second's text
    made once per second: making the datetime was a sixth of an access line's instructions."""
    global _second
    second, fraction = divmod(created, 1)
    microseconds = round(fraction * 1_000_000)  # as datetime rounds it (half to even), then truncated to ms
    if microseconds == 1_000_000:
        second, microseconds = second + 1, 0
    cached = _second
    if cached[0] != second:
        cached = _second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{cached[1]}.{microseconds // 1000:03d}+00:00"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": iso_time(record.created),
                 "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
                 **getattr(record, "fields", {})}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def logging_config(*, log_format: str, level: str) -> dict:
    """Django's LOGGING: the root logger, and the access log (gatehouse.access, INFO)
    only in JSON, where a collector reads it; text stays quiet for `scripts/serve`."""
    json_format = log_format == "json"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        # Text on standard error as before; JSON lines on standard output, where collectors read them.
        "handlers": {"console": {"class": "logging.StreamHandler",
                                 **({"formatter": "json", "stream": "ext://sys.stdout"} if json_format else {})}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {"gatehouse.access": {"level": "INFO" if json_format else "WARNING"}},
    }
