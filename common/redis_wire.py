"""A minimal asyncio Redis client for the request path: commands pipelined over one connection.

Admission makes one Redis call per request, and redis-py's asyncio client spends ~220 µs of CPU on
each (connection pool, retry wrapper, command parsing) against ~80 µs for the round trip itself
(bench/ and docs/performance.md). This client sends a command and reads its RESP2 reply, nothing
more: replies arrive in order, so waiting callers form a FIFO. Any transport failure or timeout
closes the connection (a late reply would answer the wrong caller) and the next call reconnects.
Everything else (admin, tasks) uses redis-py.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from typing import Any
from urllib.parse import unquote, urlsplit


class RespError(Exception):
    """An error reply from Redis (`-ERR ...`, `-NOSCRIPT ...`)."""


class _Incomplete(Exception):
    pass


def encode_command(args: tuple) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def parse_reply(buf: bytes | bytearray, pos: int = 0) -> tuple[Any, int]:
    """One RESP2 reply starting at `pos`: (value, position after it). Raises _Incomplete if cut short."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind, line, pos = buf[pos], bytes(buf[pos + 1:end]), end + 2
    if kind == 58:  # :integer
        return int(line), pos
    if kind == 36:  # $bulk
        size = int(line)
        if size < 0:
            return None, pos
        if len(buf) < pos + size + 2:
            raise _Incomplete
        return bytes(buf[pos:pos + size]), pos + size + 2
    if kind == 42:  # *array
        size = int(line)
        if size < 0:
            return None, pos
        items = []
        for _ in range(size):
            item, pos = parse_reply(buf, pos)
            items.append(item)
        return items, pos
    if kind == 43:  # +simple
        return line.decode(), pos
    if kind == 45:  # -error
        return RespError(line.decode()), pos
    raise ConnectionError(f"Redis sent an unknown reply type {chr(kind)!r}")


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiters: collections.deque[asyncio.Future] = collections.deque()
        self.lost = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        pos = 0
        try:
            while self.waiters:
                value, pos = parse_reply(self.buffer, pos)
                waiter = self.waiters.popleft()
                if not waiter.done():
                    waiter.set_result(value)
        except _Incomplete:
            pass
        except ConnectionError as exc:
            self._fail(exc)
        del self.buffer[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(ConnectionError(f"Redis connection lost: {exc or 'closed'}"))

    def _fail(self, exc: Exception) -> None:
        self.lost = True
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()


class RespClient:
    """`await client.call("EVALSHA", ...)`. One connection per client; use one client per event loop."""

    def __init__(self, url: str, *, connect_timeout: float = 0.25, timeout: float = 0.5) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    async def call(self, *args) -> Any:
        protocol = self._protocol
        if protocol is None or protocol.lost:
            protocol = await self._connect()
        return await self._send(protocol, args)

    async def _send(self, protocol: _Protocol, args: tuple) -> Any:
        waiter = asyncio.get_running_loop().create_future()
        protocol.waiters.append(waiter)
        protocol.transport.write(encode_command(args))
        try:
            reply = await asyncio.wait_for(waiter, self.timeout)
        except TimeoutError:
            protocol._fail(TimeoutError("Redis did not answer in time"))
            raise
        if isinstance(reply, RespError):
            raise reply
        return reply

    async def _connect(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:  # concurrent first calls share one connection
            if self._protocol is not None and not self._protocol.lost:
                return self._protocol
            loop = asyncio.get_running_loop()
            url = urlsplit(self.url)
            if url.scheme == "unix":
                connecting = loop.create_unix_connection(_Protocol, url.path)
            else:
                context = ssl.create_default_context() if url.scheme == "rediss" else None
                connecting = loop.create_connection(_Protocol, url.hostname or "127.0.0.1", url.port or 6379,
                                                    ssl=context)
            _, protocol = await asyncio.wait_for(connecting, self.connect_timeout)
            # Other callers wait on the lock until the connection is authenticated and on its database.
            if url.password:
                auth = (unquote(url.username), unquote(url.password)) if url.username else (unquote(url.password),)
                await self._send(protocol, ("AUTH", *auth))
            db = url.path.strip("/") if url.scheme != "unix" else dict(
                part.split("=", 1) for part in url.query.split("&") if "=" in part).get("db", "")
            if db and db != "0":
                await self._send(protocol, ("SELECT", db))
            self._protocol = protocol
            return protocol

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None
