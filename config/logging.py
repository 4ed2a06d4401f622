"""Log formatting: readable text by default, one JSON object a line with LOG_FORMAT=json.

The JSON lines carry the record's `fields` (an access line's request id, tenant, tokens, ...) at the top
level, so a log pipeline indexes them without parsing the message.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import orjson


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
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
