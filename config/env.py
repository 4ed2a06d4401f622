"""Typed readers for environment variables that stop start-up with a message naming the variable.

Every setting comes from the environment with an embedded default, so a bare checkout runs on SQLite
with in-process fallbacks; a bad value must fail loudly at start-up rather than half-work later.
"""

from __future__ import annotations

import os
import re
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    return None if value is None else value.strip()


def env_str(name: str, default: str = "") -> str:
    value = _raw(name)
    return default if value is None or value == "" else value


def env_bool(name: str, default: bool) -> bool:
    value = _raw(name)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false/1/0), got {value!r}")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {number}")
    return number


def env_float(name: str, default: float, *, minimum: float = 0.0) -> float:
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from None
    if number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {number}")
    return number


def env_usd_nano(name: str, default: str) -> int:
    """A non-negative USD amount ("5", "0.25") as integer nano-USD, exact (at most 9 decimal places)."""
    value = env_str(name, default)
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise ImproperlyConfigured(f"{name} must be an amount in USD such as 5 or 0.25, got {value!r}") from None
    if not amount.is_finite() or amount < 0 or amount.as_tuple().exponent < -9:
        raise ImproperlyConfigured(f"{name} must be a non-negative USD amount with at most 9 decimals, got {value!r}")
    return int(amount * 10**9)


def env_list(name: str, default: list[str]) -> list[str]:
    value = _raw(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_names(name: str, default: list[str], *, pattern: str, example: str) -> frozenset[str]:
    """A comma-separated set of identifiers, each matching `pattern` in full (`example` is shown on a mismatch)."""
    names = env_list(name, default)
    for item in names:
        if not re.fullmatch(pattern, item):
            raise ImproperlyConfigured(f"{name} must be a comma-separated list of names such as {example}; got {item!r}")
    return frozenset(names)


def env_url(name: str, default: str = "", *, schemes: tuple[str, ...]) -> str:
    """A URL whose scheme is one of `schemes` and that has a host (or a path, for sqlite/unix)."""
    value = env_str(name, default)
    if not value:
        return ""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a non-numeric port
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not a valid URL: {exc}") from None
    if parts.scheme not in schemes:
        raise ImproperlyConfigured(f"{name} must start with one of {', '.join(s + '://' for s in schemes)}; got {value!r}")
    if parts.scheme not in ("sqlite", "unix") and not parts.hostname:
        raise ImproperlyConfigured(f"{name} has no host: {value!r}")
    return value


def database_from_url(name: str, url: str) -> dict:
    """Django DATABASES entry from postgres://user:pass@host:port/db?opt=v or sqlite:///path."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(parts.path)
        if not path or path == "/":
            raise ImproperlyConfigured(f"{name} needs a file path, e.g. sqlite:///var/db.sqlite3")
        # sqlite:////abs/path is absolute; sqlite:///rel/path is relative to the working directory.
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": path[1:]}
    db_name = unquote(parts.path.lstrip("/"))
    if not db_name:
        raise ImproperlyConfigured(f"{name} needs a database name, e.g. postgres://postgres@127.0.0.1:5432/gatehouse")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": db_name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "OPTIONS": dict(parse_qsl(parts.query)),
    }
