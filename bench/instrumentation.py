#!/usr/bin/env python
"""What the operations instrumentation (metrics, JSON access lines) costs per request, measured as CPU
and not as throughput, so that a shared machine does not drown the answer.

    .venv/bin/python bench/instrumentation.py [--requests 2000] [--rounds 5] [--stream/--plain] [--callgrind]
    .venv/bin/python bench/instrumentation.py --micro [--callgrind]     # the instrumentation calls alone
    git worktree add /tmp/base main && .venv/bin/python bench/instrumentation.py --micro --callgrind --compare /tmp/base

Full path: for each variant (nothing on; METRICS_TOKEN; LOG_FORMAT=json; both), a fresh process imports
`config.asgi` as a worker does (multiprocess metrics directory included), runs the ASGI lifespan and
sends requests straight to the ASGI application, one at a time, against the fake upstream (its own
process); the figure is that process's CPU time (all its threads: the usage writer's too) per request.
Variants alternate within each round; the minimum over rounds is reported.

`--micro`: the instrumentation functions one streamed request calls (common.metrics, the access line
through the JSON formatter into a file, the tracing helpers off), in a loop, with timeit.

`--callgrind` (valgrind, and a C compiler for the two client requests that switch counting on and off):
instructions instead of time. For `--micro` the count is the same on every run, whatever the machine's
load; for the full path it still varies by a few per cent (the event loop's wake-ups, the usage writer's
thread). `--compare CHECKOUT` measures another checkout too, alternating with this one.

Uses the scratch database and key set-up of bench/run.py (`--db-name`, default gatehouse_bench_instr).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The code measured: this checkout, or another one (--compare) run by this script.
CODE = Path(os.environ.get("BENCH_CODE_ROOT", ROOT))
sys.path[:0] = [str(CODE), str(ROOT / "bench")]
# An editable install maps the project's packages to the checkout it was made from: a module the measured
# checkout lacks would otherwise be imported from there.
sys.meta_path[:] = [finder for finder in sys.meta_path
                    if not getattr(finder, "__module__", type(finder).__module__).startswith("__editable__")]

from inprocess import (  # noqa: E402 - after the sys.path set-up above
    bench_env, callgrind, callgrind_dump, callgrind_library, chat_request, start_app, start_fake)

VARIANTS = {"off": {}, "metrics": {"METRICS_TOKEN": "bench-token"}, "json": {"LOG_FORMAT": "json"},
            "both": {"METRICS_TOKEN": "bench-token", "LOG_FORMAT": "json"}}


# --- the child: one variant, in-process --------------------------------------------------------------------


async def _child(key: str, count: int, warmup: int, stream: bool) -> dict:
    application, close = await start_app()
    one = chat_request(application, key, stream)

    for _ in range(warmup):
        await one()
    callgrind("measure_on")
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(count):
        await one()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    callgrind("measure_off")
    await close()
    return {"cpu_us": cpu / count * 1e6, "wall_us": wall / count * 1e6}


def child_main(args) -> None:
    import uvloop

    result = uvloop.run(_child(args.key, args.requests, args.warmup, args.stream))
    os.write(args.result_fd, json.dumps(result).encode())


# --- --micro: the instrumentation calls alone ---------------------------------------------------------


def micro(args) -> None:
    """The calls one streamed request makes into common.metrics, gateway.observability and gateway.tracing,
    on stand-ins for the request's Meter and usage record."""
    import timeit
    from types import SimpleNamespace

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from common import metrics
    from gateway import observability, tracing

    usage = SimpleNamespace(input_tokens=12, output_tokens=9, cache_creation_input_tokens=0,
                            cache_read_input_tokens=0)
    deployment = SimpleNamespace(provider="anthropic", id=1)
    model = SimpleNamespace(name="claude-sonnet-4-6")
    principal = SimpleNamespace(tenant_slug="bench", public_id="abc123")
    meter = SimpleNamespace(model=model, deployment=deployment, principal=principal, endpoint="chat.completions",
                            started=time.perf_counter(), first_token_at=time.perf_counter(), usage=usage)
    record = SimpleNamespace(request_id="req_0123456789abcdef01234567", endpoint="chat.completions",
                             model=model.name, requested_model=model.name, provider="anthropic", stream=True,
                             http_status=200, status="ok", error_type="", input_tokens=12, output_tokens=9,
                             cache_creation_input_tokens=0, cache_read_input_tokens=0, cost_nano=123456,
                             latency_ms=2, ttft_ms=1)
    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": []}

    def metrics_calls():
        metrics.request_started(meter.endpoint)
        metrics.upstream_attempt(model, deployment, meter.started)
        metrics.stream_opened(meter.endpoint)
        metrics.stream_closed(meter.endpoint)
        metrics.request_finished(meter, "ok", time.perf_counter(), 123456)

    def log_calls():
        state = observability.request_started()
        observability.metered()
        observability.model_call_finished(meter, record)
        observability.request_finished(state, None, None)

    def tracing_calls():
        with tracing.request_span(scope):
            with tracing.span("gateway.admission"):
                pass
            with tracing.span("gateway.upstream_attempt", provider="anthropic", model=model.name):
                tracing.upstream_headers()
            with tracing.span("gateway.usage_write"):
                pass

    def usage_batch_calls():  # per batch of usage rows, not per request: at c=1, one row a batch
        metrics.usage_queue(1)
        metrics.usage_flushed(time.perf_counter(), waiting=0)

    sections = (("metrics", metrics_calls), ("usage-batch", usage_batch_calls), ("access-line", log_calls),
                ("tracing-off", tracing_calls))
    if os.environ.get("BENCH_CALLGRIND"):
        for _, fn in sections:
            fn()
        callgrind("measure_on")
        for name, fn in sections:
            for _ in range(args.requests):
                fn()
            callgrind_dump(name)
        callgrind("measure_off")
        return
    for name, fn in sections:
        fn()
        best = min(timeit.repeat(fn, number=args.requests, repeat=args.rounds))
        print(f"{name:12} {best / args.requests * 1e6:7.2f} µs per streamed request", file=sys.stderr)


def micro_main(args) -> None:
    """Each variant in a fresh process: metrics and the access log are configured at import."""
    logdir = Path(tempfile.mkdtemp(prefix="gatehouse-instr-"))
    library = callgrind_library(logdir) if args.callgrind else None
    codes = {"before": Path(args.compare).resolve(), "this": ROOT} if args.compare else {"this": ROOT}
    for label, code in codes.items():
        for variant in ("metrics", "both"):
            env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "DEBUG": "0", "LOG_LEVEL": "WARNING",
                   "PYTHONUNBUFFERED": "1", "BENCH_CODE_ROOT": str(code), **VARIANTS[variant]}
            argv = [sys.executable, __file__, "--micro-child", "--requests", str(args.requests), "--rounds",
                    str(args.rounds)]
            name = f"micro-{label}-{variant}"
            if library:
                env["BENCH_CALLGRIND"] = library
                argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                        f"--callgrind-out-file={logdir / name}.callgrind", *argv]
            # The access lines go to a file, as a collector would take them; the figures come on stderr.
            with tempfile.TemporaryDirectory() as metrics_dir, open(logdir / f"{name}.log", "w") as log:
                if "METRICS_TOKEN" in env:
                    env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
                done = subprocess.run(argv, env=env, cwd=code, stdout=log, stderr=subprocess.PIPE, text=True)
            if done.returncode:
                sys.exit(done.stderr)
            print(f"[{label}, {variant}]", flush=True)
            if not library:
                print("".join(line + "\n" for line in done.stderr.splitlines() if "µs" in line), end="")
                continue
            for dump in sorted(logdir.glob(f"{name}.callgrind.*"), key=lambda p: int(p.suffix[1:])):
                lines = dump.read_text().splitlines()
                section = next(line for line in lines if line.startswith("desc: Trigger:")).rpartition(" ")[2]
                total = int(next(line for line in lines if line.startswith(("totals:", "summary:"))).split()[1])
                print(f"{section:12} {total / args.requests / 1e3:8.2f} k instructions per streamed request")
            for dump in logdir.glob(f"{name}.*"):
                dump.unlink()  # the access lines of 8 x --requests calls: large


# --- the parent ------------------------------------------------------------------------------------------


def run_variant(variant: str, code: Path, env: dict[str, str], key: str, args, logdir: Path) -> dict:
    env = {**env, **VARIANTS[variant], "BENCH_CODE_ROOT": str(code)}
    with tempfile.TemporaryDirectory() as metrics_dir:
        if "METRICS_TOKEN" in env:
            env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # what gateway.serve sets up
        read, write = os.pipe()
        argv = [sys.executable, __file__, "--child", "--key", key, "--requests", str(args.requests),
                "--warmup", str(args.warmup), "--result-fd", str(write), *(["--stream"] if args.stream else [])]
        if args.callgrind:
            env["BENCH_CALLGRIND"] = args.callgrind_library
            profile = logdir / f"{variant}-{time.monotonic_ns()}.callgrind"
            argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={profile}", *argv]
        with open(logdir / f"{variant}.log", "w") as out:  # the access lines, as a log file takes them
            subprocess.run(argv, env=env, cwd=code, check=True, pass_fds=(write,), stdout=out,
                           stderr=subprocess.STDOUT)
        os.close(write)
        with os.fdopen(read) as pipe:
            result = json.loads(pipe.read())
        if args.callgrind:
            totals = [line for line in profile.read_text().splitlines() if line.startswith(("totals:", "summary:"))]
            result["instructions"] = int(totals[-1].split()[1]) / args.requests
        return result


def main() -> int:
    import run as bench  # bench/run.py: the scratch database, the key, the fake upstream

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--stream", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--variants", default="off,metrics,json,both")
    ap.add_argument("--micro", action="store_true")
    ap.add_argument("--callgrind", action="store_true", help="also count instructions per request (valgrind)")
    ap.add_argument("--compare", metavar="CHECKOUT", help="also measure another checkout (e.g. a git worktree "
                    "of the commit before), alternating with this one")
    bench.database_arguments(ap, "gatehouse_bench_instr")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--micro-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--key", help=argparse.SUPPRESS)
    ap.add_argument("--result-fd", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_main(args)
        return 0
    if args.micro_child:
        micro(args)
        return 0
    if args.micro:
        micro_main(args)
        return 0

    env = bench_env(args)
    key, _ = bench.setup_database(args, env)
    logdir = Path(tempfile.mkdtemp(prefix="gatehouse-instr-"))
    start_fake(env, logdir)
    if args.callgrind:
        args.callgrind_library = callgrind_library(logdir)
    # Every (checkout, variant) pair once a round, the order reversed every other round.
    codes = {"before": Path(args.compare).resolve(), "this": ROOT} if args.compare else {"this": ROOT}
    cells = [(label, variant) for label in codes for variant in args.variants.split(",")]
    results: dict[tuple[str, str], list[dict]] = {cell: [] for cell in cells}
    for round_ in range(args.rounds):
        for label, variant in cells if round_ % 2 == 0 else reversed(cells):
            last = run_variant(variant, codes[label], env, key, args, logdir)
            results[label, variant].append(last)
            counted = f", {last['instructions'] / 1e3:9.1f} k instructions" if "instructions" in last else ""
            print(f"round {round_ + 1} {label:6} {variant:8} {last['cpu_us']:8.1f} µs CPU{counted}", flush=True)
    print(f"\n{'stream' if args.stream else 'plain'}, {args.requests} requests x {args.rounds} rounds, per request:")
    print("  checkout variant   CPU µs min / median   k instructions min / median")
    for label, variant in cells:
        cpu = [r["cpu_us"] for r in results[label, variant]]
        line = f"  {label:8} {variant:8} {min(cpu):9.1f} / {statistics.median(cpu):8.1f}"
        if args.callgrind:
            counted = [r["instructions"] / 1e3 for r in results[label, variant]]
            line += f"   {min(counted):9.1f} / {statistics.median(counted):8.1f}"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
