"""The usage spool: rows the database could not take, kept durably until it can.

A usage row is money the upstream already billed us for, so an unreachable database must not lose it.
What `gateway.metering.writes.usage_events_write` could not write (usage rows, and the same requests'
conversation turns and request logs) is appended here, and every gateway process replays the spool
in the background (`run`, started at lifespan startup) once the database answers again, and at its
next startup after a crash. Replaying is idempotent: usage rows and request logs are keyed by request
id (ON CONFLICT DO NOTHING), and a turn already written is recognised by its first message's seq
(`conversations.services.turns_replay`), so an entry replayed twice (a crash between the write and its
removal from the spool) is written once.

Where entries wait: a Redis stream (`<GATEWAY_REDIS_PREFIX>usage-spool`) when REDIS_URL is set, shared
by all processes and replayed by one at a time (a lock key); otherwise, or while Redis fails too,
append-only files under GATEWAY_USAGE_SPOOL_DIR, fsynced before the request goes on. Each process
appends to its own file and holds an flock on it; a file nobody holds (retired by its process, or left
by one that died) is claimed by whichever replayer locks it first, and deleted once written.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from datetime import datetime
from pathlib import Path

import orjson
import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections

from common import metrics
from common.outage import FailureLog
from conversations.services import TurnRecord

from .writes import UsageRecord, usage_events_write

logger = logging.getLogger(__name__)
spooled_log = FailureLog(logger, "usage rows spooled: the database is unreachable")

CHUNK = 500  # entries per replayed batch
LOCK_SECONDS = 60


def _encode(item) -> bytes:
    kind = "usage" if isinstance(item, UsageRecord) else "turn" if isinstance(item, TurnRecord) else "log"
    return orjson.dumps({"kind": kind, "row": item})


def _decode(entries: list[bytes]) -> tuple[list, list, list]:
    """Spool entries -> (usage records, turns, logs), as usage_events_write takes them."""
    records, turns, logs = [], [], []
    for raw in entries:
        try:
            entry = orjson.loads(raw)
        except orjson.JSONDecodeError:  # the torn last line of a process killed mid-append
            logger.error("unreadable usage spool entry skipped: %r", raw[:200])
            continue
        row = entry["row"]
        if entry["kind"] == "usage":
            records.append(UsageRecord(**{**row, "created_at": datetime.fromisoformat(row["created_at"])}))
        elif entry["kind"] == "turn":
            turns.append(TurnRecord(**{f.name: row[f.name] for f in fields(TurnRecord) if f.name in row}))
        else:
            logs.append(row)
    return records, turns, logs


def _write(entries: list[bytes]) -> bool:
    """Replay entries; True when all are written (or refused for their data, which is logged)."""
    return not usage_events_write(*_decode(entries), replay=True)


class _FileSpool:
    def __init__(self) -> None:
        self._file = None
        self._lock = threading.Lock()  # appends come from the request path's thread, replays from their own

    @property
    def directory(self) -> Path:
        return Path(settings.GATEWAY_USAGE_SPOOL_DIR)

    def append(self, lines: list[bytes]) -> None:
        with self._lock:
            if self._file is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                # Locked under a name replayers ignore, then renamed: a replayer that found the file
                # before it was locked would take it for a dead process's (empty) file and delete it,
                # and every entry appended after that would be lost.
                name = self.directory / f"{os.getpid()}-{secrets.token_hex(4)}"
                file = open(name.with_suffix(".new"), "ab")  # noqa: SIM115
                fcntl.flock(file, fcntl.LOCK_EX)
                os.rename(name.with_suffix(".new"), name.with_suffix(".jsonl"))
                directory = os.open(self.directory, os.O_RDONLY)
                try:  # the new file's name must survive a crash too
                    os.fsync(directory)
                finally:
                    os.close(directory)
                self._file = file
            self._file.write(b"".join(line + b"\n" for line in lines))
            self._file.flush()
            os.fsync(self._file.fileno())

    def retire(self) -> None:
        """Stop appending to this process's file (new entries start another), so it can be replayed."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def paths(self) -> list[Path]:
        return sorted(self.directory.glob("*.jsonl")) if self.directory.is_dir() else []

    def depth(self) -> int:
        total = 0
        for path in self.paths():
            with contextlib.suppress(FileNotFoundError):
                total += path.read_bytes().count(b"\n")
        return total

    def replay(self) -> int:
        self.retire()
        replayed = 0
        for path in self.paths():
            try:
                file = open(path, "rb")  # noqa: SIM115
            except FileNotFoundError:  # another process replayed it meanwhile
                continue
            with file:
                try:
                    fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # a live process's current file, or another replayer's
                    continue
                lines = file.read().splitlines()
                for start in range(0, len(lines), CHUNK):
                    if not _write(lines[start:start + CHUNK]):
                        return replayed  # the database is still unreachable: the whole file again next time
                replayed += len(lines)
                path.unlink(missing_ok=True)
        return replayed


class _RedisSpool:
    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=2)

    @property
    def key(self) -> str:
        return f"{settings.GATEWAY_REDIS_PREFIX}usage-spool"

    def append(self, lines: list[bytes]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for line in lines:
            pipe.xadd(self.key, {"e": line})
        pipe.execute()

    def depth(self) -> int:
        return self.client.xlen(self.key)

    def replay(self) -> int:
        if not self.client.xlen(self.key):
            return 0
        token = secrets.token_hex(8)
        lock = self.key + ":replaying"
        if not self.client.set(lock, token, nx=True, ex=LOCK_SECONDS):
            return 0  # another process is replaying
        replayed = 0
        try:
            while entries := self.client.xrange(self.key, count=CHUNK):
                if not _write([entry[b"e"] for _, entry in entries]):
                    break
                self.client.xdel(self.key, *[entry_id for entry_id, _ in entries])
                replayed += len(entries)
        finally:
            if self.client.get(lock) == token.encode():
                self.client.delete(lock)
        return replayed


_file_spool = _FileSpool()
_redis_spool: _RedisSpool | None = None


def _redis() -> _RedisSpool | None:
    global _redis_spool
    if settings.REDIS_URL and _redis_spool is None:
        _redis_spool = _RedisSpool(settings.REDIS_URL)
    return _redis_spool if settings.REDIS_URL else None


def spool_append(items: list) -> None:
    """Keep usage records, turns and request logs the database could not take, until it can."""
    lines = [_encode(item) for item in items]
    spooled_log.failed()
    metrics.spooled(len(lines))
    spool = _redis()
    if spool is not None:
        try:
            spool.append(lines)
            return
        except (redis.RedisError, OSError) as exc:
            metrics.redis_error("spool")
            logger.warning("usage spool: Redis failed (%s), spooling %d entries to a file", exc, len(lines))
    _file_spool.append(lines)


def depth() -> int:
    """Entries waiting in the spool (Redis and files); a Redis that cannot answer counts as none."""
    total = _file_spool.depth()
    spool = _redis()
    if spool is not None:
        with contextlib.suppress(redis.RedisError, OSError):
            total += spool.depth()
    return total


def replay() -> int:
    """Write what the spool holds, while the database takes it; returns how many entries were written."""
    replayed = _file_spool.replay()
    spool = _redis()
    if spool is not None:
        try:
            replayed += spool.replay()
        except (redis.RedisError, OSError) as exc:
            logger.warning("usage spool: Redis failed during replay (%s)", exc)
    if replayed:
        logger.info("usage spool: %d entries replayed", replayed)
    return replayed


class Replayer:
    """Each gateway process's background replay: a dedicated thread, so replays never wait behind the
    request path's database work nor hold it up."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="usage-spool")
        self._replay = sync_to_async(self._tick, thread_sensitive=False, executor=self._executor)

    @staticmethod
    def _tick() -> int:
        try:
            return replay()
        except Exception:
            logger.exception("usage spool replay failed")
            return 0

    async def run(self) -> None:
        try:
            while True:
                await self._replay()
                await asyncio.sleep(settings.GATEWAY_USAGE_SPOOL_REPLAY_SECONDS)
        finally:
            self._executor.submit(connections.close_all)
            self._executor.shutdown(wait=False)


def start() -> asyncio.Task:
    return asyncio.get_running_loop().create_task(Replayer().run(), name="usage-spool")


async def stop(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
