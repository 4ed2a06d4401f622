#!/usr/bin/env python
"""What relaying one streamed event costs the worker (issue 18, part 1), as instructions and CPU time.

    .venv/bin/python bench/relay_cost.py [--protocols chat,messages,responses] [--streams 4] [--callgrind]
    .venv/bin/python bench/relay_cost.py --stages [--callgrind]        # the per-event stages alone

Whole relay: a fresh process imports `config.asgi` as a worker does (METRICS_TOKEN set, multiprocess
metrics directory, LOG_FORMAT=json with the access lines to a file), runs the ASGI lifespan and calls the
application with the ASGI scope of a streaming request, one stream at a time, against the real fake
upstream (`fakes.anthropic`, its own process on a local port). The fake spaces its events
(`chunk_delay_ms`, 10 ms by default) so that every event is its own network read, its own relay step and
its own ASGI send, as at 50 ms apart in production. Each protocol is measured with a reply of 1 text
delta (`[[fake:words=3]]`) and of 100 (`words=300`, three words a delta): the difference over 99 is the
cost of one more relayed event, the 1-delta figure the cost of a stream (request, admission, usage row
included). `--callgrind` counts instructions under valgrind between two client requests (exact
switching); without it the figure is the process's CPU time (`time.process_time`, every thread: the
usage writer's too), the minimum over `--rounds`.

`--stages`: the per-event stages on their own, on the bytes the fake sends for a 100-delta reply (one
read per event): upstream SSE decode (`SSEDecoder` with orjson, as the provider reads), the Meter's
observation (`Meter.observe`, with the accumulator a stored turn keeps), the codec's encoding (each
protocol's `StreamEncoder.feed`). What the whole relay costs beyond them per event is the relay loop,
the provider's iteration and error check, Django's ASGI send, the SDK transport's read and the event
loop. Callgrind itself cannot split a Python process by Python function (3.11 has no perf trampoline),
hence the stages measured apart and the rest by difference.

Uses the scratch database and key set-up of bench/run.py (`--db-name`, default gatehouse_bench_relay).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
# An editable install maps the project's packages to the checkout it was made from.
sys.meta_path[:] = [finder for finder in sys.meta_path
                    if not getattr(finder, "__module__", type(finder).__module__).startswith("__editable__")]

from inprocess import (  # noqa: E402 - after the sys.path set-up above
    bench_env, callgrind, callgrind_dump, callgrind_library, poster, start_app, start_fake)

MODEL = "claude-sonnet-4-6"
# Per protocol: path, headers beyond content type, body for a user text, and the bytes its end carries.
PROTOCOLS = {
    "chat": ("/v1/chat/completions", lambda key: [(b"authorization", f"Bearer {key}".encode())],
             lambda text: {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": text}]},
             b"data: [DONE]"),
    "messages": ("/v1/messages", lambda key: [(b"x-api-key", key.encode()), (b"anthropic-version", b"2023-06-01")],
                 lambda text: {"model": MODEL, "max_tokens": 1024, "stream": True,
                               "messages": [{"role": "user", "content": text}]},
                 b"event: message_stop"),
    "responses": ("/v1/responses", lambda key: [(b"authorization", f"Bearer {key}".encode())],
                  lambda text: {"model": MODEL, "stream": True, "input": text},
                  b"response.completed"),
}
LENGTHS = (1, 100)  # text deltas in the reply
IDLE_SECONDS = 1.0


def _prompt(deltas: int, spacing_ms: int) -> str:
    return f"Hi [[fake:words={3 * deltas}, chunk_delay_ms={spacing_ms}]]"


# --- the child: one protocol and reply length, in-process -------------------------------------------------


async def _child(args) -> dict:
    application, close = await start_app()
    path, headers, make_body, end = PROTOCOLS[args.protocol]
    post = poster(application, path, json.dumps(make_body(_prompt(args.deltas, args.spacing_ms))).encode(),
                  headers(args.key))
    sends = []

    async def one() -> None:
        sent = await post()
        answer = b"".join(m.get("body", b"") for m in sent)
        if sent[0]["status"] != 200 or end not in answer:
            raise RuntimeError(f"bad answer {sent[0]['status']}: {answer[:300]!r}")
        sends.append(len(sent) - 2)  # body messages, the start and the closing one left out

    for _ in range(args.warmup):
        await one()
    profiler = None
    if profile := os.environ.get("BENCH_CPROFILE"):  # --cprofile: where the whole relay's time goes
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    await asyncio.sleep(0.5)  # the warm-up's usage rows written
    # The worker's timed background work (cooldown sync, usage writer, scheduler) goes on during the
    # streams too, by the second and not by the event: its rate, counted first, is taken off.
    callgrind("measure_on")
    idle, idle_wall = time.process_time(), time.perf_counter()
    await asyncio.sleep(IDLE_SECONDS)
    idle, idle_wall = time.process_time() - idle, time.perf_counter() - idle_wall
    callgrind_dump("idle")
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(args.streams):
        await one()
    await asyncio.sleep(0.5)  # their usage rows written (the group commit's delay), counted with them
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    callgrind_dump("streams")
    callgrind("measure_off")
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    await close()
    background = idle / idle_wall * wall
    return {"cpu_us": (cpu - background) / args.streams * 1e6, "idle_us": background / args.streams * 1e6,
            "wall_share": wall / idle_wall, "sends": sends[-1]}


def child_main(args) -> None:
    import uvloop

    result = uvloop.run(_child(args))
    os.write(args.result_fd, json.dumps(result).encode())


# --- --stages: decode, observe, encode apart -----------------------------------------------------------------


def upstream_frames(base_url: str, deltas: int) -> list[bytes]:
    """The fake's SSE events for a reply of `deltas` text deltas, one chunk per event (as spaced reads)."""
    import httpx

    body = {"model": MODEL, "max_tokens": 1024, "stream": True,
            "messages": [{"role": "user", "content": _prompt(deltas, 0)}]}
    answer = httpx.post(f"{base_url}/v1/messages", json=body, timeout=30,
                        headers={"x-api-key": "x", "anthropic-version": "2023-06-01"})
    answer.raise_for_status()
    return [frame + b"\n\n" for frame in answer.content.split(b"\n\n") if frame]


def stages(args) -> None:
    """Each stage over the same events, `--passes` times, counted (callgrind dumps) or timed."""
    import timeit

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    import orjson

    from gateway.core import MessageAccumulator, ResponseContext, Usage
    from gateway.metering.meter import Meter
    from gateway.protocols import anthropic_messages, openai_chat, openai_responses
    from gateway.providers.sse import SSEDecoder

    frames = [bytes.fromhex(h) for h in json.loads(Path(args.frames).read_text())]
    events = SSEDecoder(orjson.loads).feed(b"".join(frames))
    ctx = ResponseContext(request_id="req_0123456789abcdef01234567", created=1764672000, model=MODEL,
                          options={}, conversation_id=None)
    codecs = {"chat": openai_chat.StreamEncoder, "messages": anthropic_messages.StreamEncoder,
              "responses": openai_responses.StreamEncoder}

    def decode():
        feed = SSEDecoder(orjson.loads).feed
        for frame in frames:
            feed(frame)

    def meter(accumulate: bool):
        def run():
            m = Meter.__new__(Meter)  # the fields observe reads, without the metrics __init__ starts
            m.answer = MessageAccumulator() if accumulate else None
            m.usage, m.generated_chars, m.first_token_at = Usage(), 0, None
            observe = m.observe
            for event in events:
                observe(event)
        return run

    def encoder(cls):
        def run():
            feed = cls(ctx).feed
            for event in events:
                feed(event)
        return run

    sections = [("decode", decode), ("observe", meter(False)), ("observe+turn", meter(True)),
                *((f"encode-{name}", encoder(cls)) for name, cls in codecs.items())]
    count = args.passes
    if os.environ.get("BENCH_CALLGRIND"):
        for _, fn in sections:
            fn()
        callgrind("measure_on")
        for name, fn in sections:
            for _ in range(count):
                fn()
            callgrind_dump(name)
        callgrind("measure_off")
        print(json.dumps({"events": len(events)}))
        return
    result = {"events": len(events)}
    for name, fn in sections:
        fn()
        result[name] = min(timeit.repeat(fn, number=count, repeat=args.rounds)) / count / len(events) * 1e6
    print(json.dumps(result))


# --- the parent ----------------------------------------------------------------------------------------------


def run_child(argv: list[str], env: dict[str, str], logdir: Path, label: str, callgrind: bool) -> dict:
    read, write = os.pipe()
    argv = [sys.executable, __file__, *argv, "--result-fd", str(write)]
    profile = logdir / f"{label}-{time.monotonic_ns()}.callgrind"
    if callgrind:
        argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={profile}", *argv]
    with tempfile.TemporaryDirectory() as metrics_dir, open(logdir / f"{label}.log", "a") as out:
        child_env = {**env, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
        if callgrind:
            child_env["BENCH_CALLGRIND"] = env["BENCH_CALLGRIND_LIBRARY"]
        subprocess.run(argv, env=child_env, cwd=ROOT, check=True, pass_fds=(write,), stdout=out,
                       stderr=subprocess.STDOUT)
    os.close(write)
    with os.fdopen(read) as pipe:
        result = json.loads(pipe.read())
    if callgrind:
        counted = {}
        for dump in profile.parent.glob(profile.name + ".*"):
            lines = dump.read_text().splitlines()
            section = next(line for line in lines if line.startswith("desc: Trigger:")).rpartition(" ")[2]
            counted[section] = int(next(line for line in lines if line.startswith(("totals:", "summary:"))).split()[1])
            if not os.environ.get("BENCH_KEEP_PROFILES"):  # kept: callgrind_annotate --inclusive=yes reads them
                dump.unlink()
        if not os.environ.get("BENCH_KEEP_PROFILES"):
            profile.unlink(missing_ok=True)  # the part after the switch-off: empty
        result["idle_instructions"] = counted["idle"] * result["wall_share"]
        result["instructions"] = counted["streams"] - result["idle_instructions"]
    return result


def whole(args, env, key: str, logdir: Path) -> None:
    unit = "k instr" if args.callgrind else "µs CPU"
    print(f"{'protocol':10} {'deltas':>6} {'sends':>6} {'per stream':>14} {'per extra event':>16}", flush=True)
    for protocol in args.protocols.split(","):
        per = {}
        for deltas in LENGTHS:
            figures = []
            for _ in range(1 if args.callgrind else args.rounds):
                result = run_child(["--child", "--protocol", protocol, "--deltas", str(deltas), "--key", key,
                                    "--streams", str(args.streams), "--warmup", str(args.warmup),
                                    "--spacing-ms", str(args.spacing_ms)], env, logdir, protocol, args.callgrind)
                figures.append(result["instructions"] / args.streams / 1e3 if args.callgrind else result["cpu_us"])
                idle = result["idle_instructions"] / args.streams / 1e3 if args.callgrind else result["idle_us"]
                print(f"  {protocol} {deltas} deltas: {figures[-1]:.1f} {unit} a stream after {idle:.1f} idle, "
                      f"{result['sends']} sends", flush=True)
            per[deltas] = min(figures)
            sends = result["sends"]
        extra = (per[100] - per[1]) / 99
        print(f"{protocol:10} {100:>6} {sends:>6} {per[1]:>10.1f} {unit} {extra:>10.2f} {unit}", flush=True)


def stage_main(args, env, base_url: str, logdir: Path) -> None:
    frames = logdir / "frames.json"
    frames.write_text(json.dumps([f.hex() for f in upstream_frames(base_url, 100)]))
    argv = [sys.executable, __file__, "--stage-child", "--frames", str(frames), "--passes", str(args.passes),
            "--rounds", str(args.rounds)]
    if args.callgrind:
        profile = logdir / "stages.callgrind"
        env = {**env, "BENCH_CALLGRIND": args.callgrind_library}
        argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={profile}", *argv]
    done = subprocess.run(argv, env=env, cwd=ROOT, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    events = result.pop("events")
    print(f"{events} events a stream ({events - 6} text deltas), per event:")
    if not args.callgrind:
        for name, us in result.items():
            print(f"  {name:18} {us:7.3f} µs")
        return
    for dump in sorted(logdir.glob("stages.callgrind.*"), key=lambda p: int(p.suffix[1:])):
        lines = dump.read_text().splitlines()
        section = next(line for line in lines if line.startswith("desc: Trigger:")).rpartition(" ")[2]
        total = int(next(line for line in lines if line.startswith(("totals:", "summary:"))).split()[1])
        print(f"  {section:18} {total / args.passes / events / 1e3:7.2f} k instructions")
        dump.unlink()


def main() -> int:
    import run as bench  # bench/run.py: the scratch database, the key, the fake upstream

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protocols", default="chat,messages,responses")
    ap.add_argument("--streams", type=int, default=4, help="measured streams per process")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="processes per figure (minimum taken), timing only")
    ap.add_argument("--spacing-ms", type=int, default=10, help="the fake's pause between events")
    ap.add_argument("--callgrind", action="store_true", help="count instructions (valgrind) instead of CPU time")
    ap.add_argument("--stages", action="store_true", help="the per-event stages apart")
    ap.add_argument("--passes", type=int, default=200, help="--stages: passes over the stream's events")
    bench.database_arguments(ap, "gatehouse_bench_relay")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--stage-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--protocol", help=argparse.SUPPRESS)
    ap.add_argument("--deltas", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--key", help=argparse.SUPPRESS)
    ap.add_argument("--frames", help=argparse.SUPPRESS)
    ap.add_argument("--result-fd", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_main(args)
        return 0
    if args.stage_child:
        stages(args)
        return 0

    env = bench_env(args, METRICS_TOKEN="bench-token", LOG_FORMAT="json")
    logdir = Path(tempfile.mkdtemp(prefix="gatehouse-relay-"))
    base_url = start_fake(env, logdir)
    if args.callgrind:
        args.callgrind_library = env["BENCH_CALLGRIND_LIBRARY"] = callgrind_library(logdir)
    if args.stages:
        stage_main(args, env, base_url, logdir)
        return 0
    key, _ = bench.setup_database(args, env)
    whole(args, env, key, logdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
