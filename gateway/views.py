from __future__ import annotations

import asyncio

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.shortcuts import render

from config.db import refresh_connections

from .pipeline import json_response


def _database_ok() -> bool:
    refresh_connections()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        return False


async def _redis_ok() -> bool:
    import redis.asyncio as redis

    client = redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(await client.ping())
    except Exception:
        return False
    finally:
        await client.aclose()


async def health(request):
    """No auth. 200 when the database (and Redis, if configured) answer; 503 otherwise."""
    checks = {"database": sync_to_async(_database_ok, thread_sensitive=True)()}
    if settings.REDIS_URL:
        checks["redis"] = _redis_ok()
    results = dict(zip(checks, await asyncio.gather(*checks.values())))
    healthy = all(results.values())
    payload = {"status": "ok" if healthy else "unavailable", "checks": {k: "ok" if v else "down" for k, v in results.items()}}
    return json_response(payload, status=200 if healthy else 503)


def index(request):
    return render(request, "index.html", {"base_url": request.build_absolute_uri("/v1")})
