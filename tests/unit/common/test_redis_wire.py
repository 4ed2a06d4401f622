"""The request path's minimal Redis client (common/redis_wire.py)."""

from __future__ import annotations

import asyncio

import pytest
from django.conf import settings

from common.redis_wire import RespClient, RespError, _Incomplete, encode_command, parse_reply
from tests.support.env import free_port, requires_redis


def test_commands_are_encoded_as_resp_arrays_of_bulk_strings():
    assert encode_command(("SET", "k", 12, b"\x00")) == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n$1\r\n\x00\r\n"


@pytest.mark.parametrize("wire, value", [
    (b":42\r\n", 42), (b"+OK\r\n", "OK"), (b"$5\r\nhe\r\no\r\n", b"he\r\no"), (b"$-1\r\n", None),
    (b"*3\r\n:0\r\n$3\r\nrpm\r\n*1\r\n:-7\r\n", [0, b"rpm", [-7]]), (b"*0\r\n", []),
])
def test_replies_are_parsed(wire, value):
    assert parse_reply(wire) == (value, len(wire))


def test_an_error_reply_is_returned_as_an_exception_value():
    error, _ = parse_reply(b"-NOSCRIPT No matching script\r\n")
    assert isinstance(error, RespError) and str(error).startswith("NOSCRIPT")


@pytest.mark.parametrize("cut", [1, 3, 6, 10, 14])
def test_a_reply_cut_anywhere_is_incomplete(cut):
    with pytest.raises(_Incomplete):
        parse_reply(b"*2\r\n:1\r\n$3\r\nabc\r\n"[:cut])


@requires_redis
def test_the_client_pipelines_selects_its_database_and_reconnects():
    url = settings.REDIS_URL.rsplit("/", 1)[0] + "/7"

    async def scenario():
        client = RespClient(url)
        answers = await asyncio.gather(*(client.call("ECHO", str(i)) for i in range(50)))
        assert answers == [str(i).encode() for i in range(50)]
        assert (await client.call("CLIENT", "INFO")).decode().count(" db=7 ") == 1
        with pytest.raises(RespError):
            await client.call("NOSUCHCOMMAND")
        client._protocol.transport.abort()  # the server or the network drops the connection
        await asyncio.sleep(0)
        assert await client.call("PING") == "PONG"
        client.close()

    asyncio.run(scenario())


def test_an_unreachable_redis_raises_an_oserror_quickly():
    async def scenario():
        with pytest.raises(OSError):
            await RespClient(f"redis://127.0.0.1:{free_port()}/0").call("PING")

    asyncio.run(scenario())


@requires_redis
def test_admission_reloads_its_scripts_after_redis_forgot_them(monkeypatch):
    from gateway.admission import RedisCounters
    from tests.support.rows import principal

    async def scenario():
        counters = RedisCounters(settings.REDIS_URL)
        who = principal(rpm_limit=5)
        assert (await counters.admit(who, 1, 0, 1_000_000.0))[1][0] == 0
        await counters._redis().call("SCRIPT", "FLUSH")
        assert (await counters.admit(who, 1, 0, 1_000_000.0))[1][:2] == (0, 3)

    asyncio.run(scenario())
