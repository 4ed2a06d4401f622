#!/usr/bin/env python
"""What one short request costs in CPU, in one process and deterministically: the upstream call alone and
the whole ASGI application, as callgrind instructions and as timeit µs, with a breakdown per area.

    .venv/bin/python bench/request_cost.py                       # provider and app, plain and stream, µs
    .venv/bin/python bench/request_cost.py --callgrind           # and instructions (valgrind)
    .venv/bin/python bench/request_cost.py --lean                # the app with METRICS_TOKEN unset, LOG_FORMAT=text
    .venv/bin/python bench/request_cost.py --breakdown           # per-area shares (cProfile, inclusive)
    .venv/bin/python bench/request_cost.py --compare /tmp/base   # another checkout too (repeatable)

Targets (`--targets`):

- `provider`: `AnthropicProvider.create`, and `.stream` consumed to the end, against the fake upstream
  (fakes.anthropic, its own process on a local port), built with `from_config` as the gateway builds it.
- `app`: `config.asgi.application` as a worker runs it (lifespan included) given the ASGI scope of
  POST /v1/chat/completions with a real key: PostgreSQL, Redis, metering and usage rows on, METRICS_TOKEN
  set and LOG_FORMAT=json (the access lines go to a file). `--lean` runs it with neither, so that the
  instrumentation's share of a request is the difference.

Instructions are per request as (count of N requests - count of 1 request) / (N - 1), counted by callgrind
between two client requests after a warm-up: the same figure on every run whatever else the machine does
(within ~1%: the event loop's wake-ups and the usage writer's thread vary a little). µs is process CPU
time per request, the minimum over `--rounds` of `--requests` each; it moves with the machine's load,
so take it on a quiet moment and read the instructions for a before/after.

The breakdown (`--breakdown`) is cProfile's inclusive time per area: for each area, the time in its
functions when called from outside it, as a share of the measured requests' total; callgrind sees C
frames only, so the shares are cProfile's and the instructions are the share times callgrind's total.
cProfile's own cost per call inflates areas of many small calls (httpx2, pydantic) a little.

Uses the scratch database and key set-up of bench/run.py (`--db-name`, default gatehouse_bench_cost).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE = Path(os.environ.get("BENCH_CODE_ROOT", ROOT))  # the checkout measured: this one or --compare's
sys.path[:0] = [str(CODE), str(ROOT / "bench")]
# An editable install maps the project's packages to the checkout it was made from: a module the measured
# checkout lacks would otherwise be imported from there.
sys.meta_path[:] = [finder for finder in sys.meta_path
                    if not getattr(finder, "__module__", type(finder).__module__).startswith("__editable__")]

from inprocess import (  # noqa: E402 - after the sys.path set-up above
    bench_env, callgrind, callgrind_dump, callgrind_library, chat_request, start_app, start_fake)

# Work the app does every so many seconds, not per request: the key and catalog cache reloads, the
# cooldowns' re-read, the spool's check. Under callgrind a request takes ~50 times as long, so these would
# be counted per request in proportion to the machine's load; they are put out of the way.
STILL = {"GATEWAY_AUTH_CACHE_SECONDS": "3600", "GATEWAY_CATALOG_CACHE_SECONDS": "3600",
         "GATEWAY_COOLDOWN_SYNC_SECONDS": "3600", "GATEWAY_USAGE_SPOOL_REPLAY_SECONDS": "3600"}

# Area: (path fragment of the module, function names or None for all). First match wins.
AREAS: list[tuple[str, str, frozenset[str] | None]] = [
    ("settings reads", "django/utils/functional.py", frozenset({"__getattribute__"})),
    ("settings reads", "django/conf/__init__.py", frozenset({"__getattr__"})),
    ("adapter + aiohttp", "anthropic/_vendor/", None),
    ("adapter + aiohttp", "/aiohttp/", None),
    ("SDK (options, headers, body)", "/anthropic/", None),
    ("SDK (options, headers, body)", "/pydantic/", None),
    ("httpx2", "/httpx2/", None),
    ("Django URL resolution", "django/urls/", None),
    ("ASGIRequest", "django/core/handlers/asgi.py", frozenset({"__init__", "create_request"})),
    ("ASGIRequest", "django/http/request.py", None),
    ("Django send_response", "django/core/handlers/asgi.py", frozenset({"send_response"})),
    ("ninja", "/ninja/", None),
    ("ORM + psycopg (usage row)", "django/db/", None),
    ("ORM + psycopg (usage row)", "/psycopg", None),
    ("Django, other", "/django/", None),
    ("asgiref", "/asgiref/", None),
    ("redis", "/redis/", None),
    ("metrics + logging", "/prometheus_client/", None),
    ("metrics + logging", "/logging/", None),
    ("this script", "bench/request_cost.py", None),
    ("gateway and project code", str(CODE) + "/", None),
]


def _area(filename: str, function: str) -> str | None:
    for name, fragment, functions in AREAS:
        if fragment in filename and (functions is None or function in functions):
            return name
    return None


def _breakdown(stats) -> dict[str, float]:
    """Seconds per area, each function's own time charged to its area, or (stdlib, asyncio, orjson, the
    gateway's own code...) to the areas of its callers in proportion to what each caller spent in it: the
    attribution of a sampling profile that charges a sample to the innermost frame of a known package.
    What no area's code called stays out ("other")."""
    table = stats.stats
    memo: dict[tuple, dict[str, float]] = {}

    def shares(function: tuple, depth: int = 0) -> dict[str, float]:
        """How the time spent in `function` splits over areas by who called it."""
        if (area := _area(function[0], function[2])) is not None:
            return {area: 1.0}
        if function in memo:
            return memo[function]
        memo[function] = {}  # a recursion cycle charges nothing further up
        callers = table[function][4] if function in table else {}
        total = sum(caller[3] for caller in callers.values())
        result: dict[str, float] = {}
        if total > 0 and depth < 40:
            for caller, caller_stats in callers.items():
                for area, share in shares(caller, depth + 1).items():
                    result[area] = result.get(area, 0.0) + share * caller_stats[3] / total
        memo[function] = result
        return result

    totals: dict[str, float] = {}
    for function, (_, _, own, _, _) in table.items():
        for area, share in shares(function).items():
            totals[area] = totals.get(area, 0.0) + own * share
    return totals


# --- the child: one target, in-process -----------------------------------------------------------------


async def _provider_call(stream: bool):
    from gateway.providers import UpstreamConfig
    from gateway.providers.anthropic import AnthropicProvider

    provider = AnthropicProvider.from_config(UpstreamConfig(kind="anthropic", base_url="", api_key="x"))
    body = {"model": "claude-sonnet-4-6", "max_tokens": 64, "messages": [{"role": "user", "content": "Hi there"}]}

    async def one() -> None:
        if stream:
            async with provider.stream(body) as events:
                kinds = [event["type"] async for batch in events for event in batch]
            if kinds[-1] != "message_stop":
                raise RuntimeError(f"stream ended with {kinds[-1]}")
        elif (await provider.create(body))["type"] != "message":
            raise RuntimeError("not a message")

    return one, provider.aclose


async def _app_call(key: str, stream: bool):
    application, close = await start_app()
    return chat_request(application, key, stream), close


async def _child(args) -> dict:
    if args.target == "provider":
        import django

        django.setup()
        one, close = await _provider_call(args.stream)
    else:
        one, close = await _app_call(args.key, args.stream)
    for _ in range(args.warmup):
        await one()
    result: dict = {}
    if os.environ.get("BENCH_CALLGRIND"):
        callgrind("measure_on")
        await one()
        callgrind_dump("one")
        for _ in range(args.requests - 1):
            await one()
        callgrind_dump("rest")
        callgrind("measure_off")
    elif args.breakdown:
        import cProfile
        import pstats

        profile = cProfile.Profile(time.thread_time)  # CPU of this thread, not the waits
        profile.enable()
        for _ in range(args.requests):
            await one()
        profile.disable()
        stats = pstats.Stats(profile)
        stats.dump_stats(f"/tmp/request-cost-{args.target}-{'stream' if args.stream else 'plain'}.pstats")
        result["breakdown"] = {area: seconds / stats.total_tt for area, seconds in _breakdown(stats).items()}
    else:
        best = None
        for _ in range(args.rounds):
            cpu = time.process_time()
            for _ in range(args.requests):
                await one()
            cpu = (time.process_time() - cpu) / args.requests
            best = cpu if best is None else min(best, cpu)
        result["cpu_us"] = best * 1e6
    await close()
    return result


def child_main(args) -> None:
    import uvloop

    result = uvloop.run(_child(args))
    os.write(args.result_fd, json.dumps(result).encode())


# --- the parent ------------------------------------------------------------------------------------------


def run_child(code: Path, env: dict[str, str], target: str, stream: bool, mode: str, args, logdir: Path) -> dict:
    env = {**env, "BENCH_CODE_ROOT": str(code), **STILL}
    if target == "app" and not args.lean:
        env.update(METRICS_TOKEN="bench-token", LOG_FORMAT="json")
    with tempfile.TemporaryDirectory() as metrics_dir:
        if "METRICS_TOKEN" in env:
            env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # what gateway.serve sets up
        read, write = os.pipe()
        requests = args.callgrind_requests if mode == "callgrind" else args.requests
        argv = [sys.executable, __file__, "--child", "--target", target, "--key", args.key, "--requests",
                str(requests), "--warmup", str(args.warmup), "--rounds", str(args.rounds), "--result-fd", str(write),
                *(["--stream"] if stream else []), *(["--breakdown"] if mode == "breakdown" else [])]
        profile = logdir / f"{target}-{time.monotonic_ns()}.callgrind"
        if mode == "callgrind":
            env["BENCH_CALLGRIND"] = args.callgrind_library
            argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={profile}", *argv]
        with open(logdir / f"{target}.log", "w") as out:  # the access lines, as a log file takes them
            done = subprocess.run(argv, env=env, cwd=code, pass_fds=(write,), stdout=out, stderr=subprocess.STDOUT)
        os.close(write)
        with os.fdopen(read) as pipe:
            text = pipe.read()
        if done.returncode:
            sys.exit(f"{target} failed, see {logdir / f'{target}.log'}")
        result = json.loads(text)
        if mode == "callgrind":
            counts = {}
            for dump in profile.parent.glob(profile.name + ".*"):
                lines = dump.read_text().splitlines()
                label = next(line for line in lines if line.startswith("desc: Trigger:")).rpartition(" ")[2]
                counts[label] = int(next(line for line in lines if line.startswith(("totals:", "summary:"))).split()[1])
                dump.unlink()
            # `rest` is N - 1 requests, counted from zero after `one`'s dump.
            result["instructions"] = counts["rest"] / (requests - 1)
        return result


def main() -> int:
    import run as bench  # bench/run.py: the scratch database, the key, the fake upstream

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="provider,app")
    ap.add_argument("--modes", default="plain,stream")
    ap.add_argument("--requests", type=int, default=1000, help="requests per timeit round and per breakdown")
    ap.add_argument("--callgrind-requests", type=int, default=200, help="N under callgrind")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--callgrind", action="store_true", help="also count instructions per request (valgrind)")
    ap.add_argument("--no-timeit", action="store_true", help="instructions only")
    ap.add_argument("--breakdown", action="store_true", help="also the per-area shares (cProfile)")
    ap.add_argument("--lean", action="store_true", help="the app with METRICS_TOKEN unset and LOG_FORMAT=text")
    ap.add_argument("--compare", metavar="CHECKOUT", action="append", default=[],
                    help="also measure another checkout (repeatable; labelled by its directory's name)")
    bench.database_arguments(ap, "gatehouse_bench_cost")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--target", help=argparse.SUPPRESS)
    ap.add_argument("--stream", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--key", default="", help=argparse.SUPPRESS)
    ap.add_argument("--result-fd", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_main(args)
        return 0

    env = bench_env(args)
    args.key, _ = bench.setup_database(args, env)
    logdir = Path(tempfile.mkdtemp(prefix="gatehouse-cost-"))
    start_fake(env, logdir)
    measures = ([] if args.no_timeit else ["timeit"]) + (["callgrind"] if args.callgrind else []) + (
        ["breakdown"] if args.breakdown else [])
    if args.callgrind:
        args.callgrind_library = callgrind_library(logdir)
    codes = {**{Path(other).name: Path(other).resolve() for other in args.compare}, "this": ROOT}
    cells = [(target, mode) for target in args.targets.split(",") for mode in args.modes.split(",")]
    lean = " (lean: METRICS_TOKEN unset, LOG_FORMAT=text)" if args.lean else ""
    print(f"per request{lean}; instructions = (N={args.callgrind_requests} - 1 request) / {args.callgrind_requests - 1}")
    for target, mode in cells:
        for measure in measures:
            for label, code in codes.items():
                result = run_child(code, env, target, mode == "stream", measure, args, logdir)
                head = f"{target:8} {mode:6} {label:12}"
                if "cpu_us" in result:
                    print(f"{head} {result['cpu_us']:8.1f} µs CPU (min of {args.rounds} x {args.requests})", flush=True)
                if "instructions" in result:
                    print(f"{head} {result['instructions'] / 1e3:8.1f} k instructions", flush=True)
                if "breakdown" in result:
                    shares = sorted(result["breakdown"].items(), key=lambda item: -item[1])
                    print(f"{head} " + ", ".join(f"{area} {share:.1%}" for area, share in shares), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
