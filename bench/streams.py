#!/usr/bin/env python
"""Thousands of long streams at once (issue 18, part 1): the gateway against the fake alone, side by side.

    .venv/bin/python bench/streams.py [--streams 200,1000,2000] [--ramp 5] [--protocol openai|anthropic]
                                      [--gateway-env NAME=VALUE ...] [--client-procs 1]

For each N, N streaming requests are opened uniformly within --ramp seconds, each a paced stream of
--deltas text deltas --delay-ms apart (the fake's `chunk_delay_ms`, which waits between every event),
once straight to the fake (Anthropic /v1/messages) and once through one granian worker of the gateway
in production mode (OpenAI /v1/chat/completions with include_usage, or /v1/messages). Set-up, launcher
and process handling are bench/run.py's. See bench/README.md ("streams.py") for what each figure means.

The client runs in its own process(es) (asyncio + uvloop, one asyncio.Protocol per stream, no parsing
beyond the status line, the request id, the first content word and the final usage) and its CPU is
reported, since it shares the machine with the servers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # this checkout's fakes/, not the editable install's
import run  # noqa: E402

ROOT, RESULTS, PY, CLK_TCK = run.ROOT, run.RESULTS, run.PY, run.CLK_TCK
MODEL = run.MODEL
MARKER = b"alpha"  # first word of the fake's lorem reply (`words=N`), in the first text delta of every protocol
FINISH = b'_reason":"'  # OpenAI's finish_reason / Anthropic's stop_reason once it has a value
WORDS_PER_DELTA = 3  # the fake streams text in pieces of up to 3 words (fakes/anthropic.py TEXT_CHUNK_RE)
# Events of a one-text-block stream other than the deltas: message_start, ping, content_block_start before
# the first delta; content_block_stop, message_delta, message_stop after the last.
EVENTS_BEFORE_FIRST_DELTA = 3
EVENTS_AFTER_LAST_DELTA = 3


def raise_nofile() -> tuple[int, int]:
    """Soft RLIMIT_NOFILE up to the hard one (children inherit it): N streams are N sockets here and,
    through the gateway, 2N in the worker plus N in the fake."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# --------------------------------------------------------------------------------------------------
# Client (child process): `streams.py --client`, config as JSON on stdin, one JSON result on stdout


class StreamProtocol(asyncio.Protocol):
    """One streaming request on its own connection. Per read only a clock, a substring test until the first
    content word, and a bounded tail (for the chunked terminator and the final usage) are touched."""

    def __init__(self, request: bytes, rec: dict, done: asyncio.Future) -> None:
        self.request, self.rec, self.done = request, rec, done
        self.head = b""
        self.tail = b""
        self.last = 0.0
        self.max_gap = 0.0
        self.reads = 0

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.rec["sent"] = time.monotonic()
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        rec = self.rec
        self.reads += 1
        if "first_byte" not in rec:
            rec["first_byte"] = now
        if "status" not in rec:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.head[:end].decode("latin1")
            rec["status"] = int(head[9:12])
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.lower() == "x-request-id":
                    rec["request_id"] = value.strip()
            data = self.head[end + 4:]
            self.head = b""
        if "first_token" not in rec:
            if MARKER in data or MARKER in self.tail[-8:] + data[:8]:
                rec["first_token"] = self.last = now
        elif self.last:
            # Gaps between content reads only: the read with the stop reason (a string value, where content
            # chunks carry `"finish_reason":null`) follows the silent content_block_stop, a 2x gap by design.
            if FINISH in data:
                self.last = 0.0
            else:
                gap = now - self.last
                if gap > self.max_gap:
                    self.max_gap = gap
                self.last = now
        self.tail = (self.tail + data)[-4096:]
        if self.tail.endswith(b"\r\n0\r\n\r\n"):  # the chunked terminator: the stream is complete
            rec["end"] = now
            self.transport.close()

    def connection_lost(self, exc) -> None:
        rec = self.rec
        rec["max_gap"] = self.max_gap
        rec["reads"] = self.reads
        rec["usage_seen"] = any(m in self.tail for m in (b'"prompt_tokens"', b'"output_tokens"'))
        rec["stop_seen"] = b"[DONE]" in self.tail or b"message_stop" in self.tail
        if exc is not None and "end" not in rec:
            rec["error"] = type(exc).__name__
        if not self.done.done():
            self.done.set_result(None)


async def one_stream(host: str, port: int, request: bytes, start_at: float, timeout: float) -> dict:
    delay = start_at - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    loop = asyncio.get_running_loop()
    rec: dict = {"start": time.monotonic()}
    done = loop.create_future()
    try:
        transport, _ = await asyncio.wait_for(
            loop.create_connection(lambda: StreamProtocol(request, rec, done), host, port), timeout)
        rec["connected"] = time.monotonic()
        try:
            await asyncio.wait_for(done, max(1.0, timeout - (rec["connected"] - rec["start"])))
        except TimeoutError:
            rec["error"] = "timeout"
            transport.abort()
    except (OSError, TimeoutError) as exc:
        rec["error"] = type(exc).__name__ + (f": {exc}" if str(exc) else "")
    return rec


async def client_main(cfg: dict) -> list[dict]:
    request = cfg["request"].encode("latin1")
    tasks = [one_stream(cfg["host"], cfg["port"], request, start, cfg["timeout"]) for start in cfg["starts"]]
    return await asyncio.gather(*tasks)


def client_entry() -> None:
    cfg = json.loads(sys.stdin.read())
    import uvloop

    recs = uvloop.run(client_main(cfg))
    json.dump(recs, sys.stdout)


# --------------------------------------------------------------------------------------------------
# Parent: run one load against one target


def http_request(host: str, port: int, path: str, headers: dict[str, str], body: dict) -> str:
    payload = json.dumps(body)
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
            f"Content-Length: {len(payload)}"] + [f"{k}: {v}" for k, v in headers.items()]
    return "\r\n".join(head) + "\r\n\r\n" + payload


def run_clients(host: str, port: int, request: str, n: int, ramp: float, procs: int, timeout: float) -> tuple[list, float]:
    """N streams opened uniformly within `ramp` s by `procs` client processes; (records, client CPU s)."""
    start_at = time.monotonic() + 0.5 + 0.1 * procs  # the children's interpreter start-up
    starts = [start_at + i * ramp / n for i in range(n)]
    children = []
    for p in range(procs):
        cfg = {"host": host, "port": port, "request": request, "starts": starts[p::procs], "timeout": timeout}
        child = run.PROCS.start([PY, str(Path(__file__).resolve()), "--client"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, cwd=ROOT)
        child.stdin.write(json.dumps(cfg).encode())
        child.stdin.close()
        children.append(child)
    recs, cpu = [], 0.0
    for child in children:
        out = child.stdout.read()
        _, status, rusage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        with run.PROCS.lock:
            run.PROCS.children.remove(child)
        if child.returncode != 0:
            raise RuntimeError(f"client exited with {child.returncode}")
        recs += json.loads(out)
        cpu += rusage.ru_utime + rusage.ru_stime
    return recs, cpu


def vm_rss_mb(pid: int) -> float:
    """VmRSS of /proc/<pid>/status, MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


class Sampler(threading.Thread):
    """The worker's RSS and open file descriptors every `interval` s; the peaks are what N open streams hold."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_rss = self.peak_fds = 0.0
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.peak_rss = max(self.peak_rss, vm_rss_mb(self.pid))
            self.peak_fds = max(self.peak_fds, open_fds(self.pid))
            self.stop_event.wait(self.interval)

    def stop(self) -> None:
        self.stop_event.set()
        self.join()


def pg_ticks() -> dict[int, int]:
    """CPU ticks per postgres process: backends come and go during a run, so differences are taken per pid."""
    return {pid: st[1] for pid in run.postgres_pids() if (st := run.proc_stat(pid))}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summarize(recs: list[dict], ideal: float, ideal_first: float, delay: float) -> dict:
    complete = [r for r in recs if r.get("status") == 200 and "end" in r and "first_token" in r and r.get("stop_seen")]
    errors: dict[str, int] = {}
    for r in recs:
        if r not in complete:
            why = r.get("error") or (f"status {r['status']}" if r.get("status", 200) != 200 else "incomplete")
            errors[why] = errors.get(why, 0) + 1
    ttfb = [r["first_token"] - r["start"] for r in complete]
    first_byte = [r["first_byte"] - r["start"] for r in complete]
    connect = [r["connected"] - r["start"] for r in recs if "connected" in r]
    stretch = [(r["end"] - r["start"]) / ideal for r in complete]
    gaps = [r["max_gap"] - delay for r in complete]
    ms = lambda v: round(v * 1000, 1)  # noqa: E731
    return {
        "n": len(recs), "complete": len(complete), "failed": len(recs) - len(complete), "errors": errors,
        "ttfb_p50_ms": ms(pct(ttfb, 50)), "ttfb_p99_ms": ms(pct(ttfb, 99)), "ttfb_max_ms": ms(pct(ttfb, 100)),
        "ttfb_ideal_ms": ms(ideal_first),
        "first_byte_p50_ms": ms(pct(first_byte, 50)), "first_byte_p99_ms": ms(pct(first_byte, 99)),
        "connect_p99_ms": ms(pct(connect, 99)), "connect_max_ms": ms(pct(connect, 100)),
        "stretch_p50": round(pct(stretch, 50), 3), "stretch_p99": round(pct(stretch, 99), 3),
        "stretch_max": round(pct(stretch, 100), 3),
        "added_gap_p99_ms": ms(pct(gaps, 99)), "added_gap_max_ms": ms(pct(gaps, 100)),
        "usage_seen": sum(1 for r in complete if r.get("usage_seen")),
        "reads_per_stream_p50": pct([r["reads"] for r in complete], 50) if complete else 0,
    }


def measure(target: dict, n: int, args, ideal: float, ideal_first: float, fake_pid: int) -> dict:
    worker = target["worker"]
    idle_rss, idle_fds = vm_rss_mb(worker), open_fds(worker)
    sampler = Sampler(worker)
    sampler.start()
    cpu0, fake0, pg0 = run.cpu_ticks(target["pids"]), run.cpu_ticks([fake_pid]), pg_ticks()
    m0, t0 = run.machine_ticks(), time.monotonic()
    try:
        recs, client_cpu = run_clients("127.0.0.1", target["port"], target["request"], n, args.ramp, args.client_procs,
                                       args.timeout)
    finally:
        sampler.stop()
    wall = time.monotonic() - t0
    busy, steal = run.machine_usage(m0, run.machine_ticks())
    cpu = (run.cpu_ticks(target["pids"]) - cpu0) / CLK_TCK
    s = summarize(recs, ideal, ideal_first, args.delay_ms / 1000)
    s.update(
        wall_s=round(wall, 2), idle_rss_mb=round(idle_rss, 1), peak_rss_mb=round(sampler.peak_rss, 1),
        rss_per_stream_kb=round((sampler.peak_rss - idle_rss) * 1024 / n, 1), idle_fds=idle_fds,
        peak_fds=int(sampler.peak_fds), server_cpu_s=round(cpu, 2), server_cpu_util=round(cpu / wall, 3),
        server_cpu_ms_per_stream=round(cpu * 1000 / n, 2),
        fake_cpu_s=round((run.cpu_ticks([fake_pid]) - fake0) / CLK_TCK, 2),
        postgres_cpu_s=round(sum(t - pg0.get(pid, 0) for pid, t in pg_ticks().items()) / CLK_TCK, 2),
        client_cpu_s=round(client_cpu, 2), client_cpu_ms_per_stream=round(client_cpu * 1000 / n, 2),
        machine_busy=round(busy, 3), machine_steal=round(steal, 3),
    )
    s["request_ids"] = [r.get("request_id") for r in recs if r.get("request_id")]
    # Per stream, in ms from the load's first start: [start, first byte, first token, end] (-1: never), to
    # see where a queue forms (e.g. TTFB against start time).
    base = min(r["start"] for r in recs)
    ms = lambda r, k: round((r[k] - base) * 1000) if k in r else -1  # noqa: E731
    s["timeline"] = [[ms(r, "start"), ms(r, "first_byte"), ms(r, "first_token"), ms(r, "end")] for r in recs]
    return s


# --------------------------------------------------------------------------------------------------
# Report


def render(res: dict) -> str:
    a = res["args"]
    out = [f"## Gatehouse streams benchmark: {res['name']}", "",
           f"{res['machine']['nproc']} cores ({res['machine']['cpu']}), one granian worker, fake upstream sending "
           f"{a['deltas']} text deltas {a['delay_ms']} ms apart (ideal stream {res['ideal_s']:.2f} s, first content "
           f"{res['ideal_first_ms']:.0f} ms after the request), all clients opened within {a['ramp']:g} s, gateway "
           f"ingress {a['protocol']}. Client, fake, gateway and PostgreSQL share the machine; load average at "
           f"start {res['machine']['loadavg_at_start'][0]:.2f}.", "",
           "| concurrent streams | straight to the fake: TTFB p50 / p99, stretch p99 | Gatehouse: TTFB p50 / p99, "
           "stretch p99 | gateway/direct TTFB p99, stretch p99 | failed (direct / gateway) |",
           "|---:|---|---|---|---|"]
    for row in res["runs"]:
        d, g = row.get("direct"), row.get("gateway")
        cell = lambda s: (f"{s['ttfb_p50_ms']:.0f} ms / {s['ttfb_p99_ms']:.0f} ms, {s['stretch_p99']:.2f}"  # noqa: E731
                          if s else "-")
        ratio = (f"{g['ttfb_p99_ms'] / d['ttfb_p99_ms']:.2f}x, {g['stretch_p99'] / d['stretch_p99']:.2f}x"
                 if d and g and d["ttfb_p99_ms"] else "-")
        out.append(f"| {row['n']:,} | {cell(d)} | {cell(g)} | {ratio} | {d['failed'] if d else '-'} / "
                   f"{g['failed'] if g else '-'} |")
    out += ["", "TTFB = connect started to the read holding the first content word (ideal "
            f"{res['ideal_first_ms']:.0f} ms: the fake paces every event); stretch = stream duration / "
            f"{res['ideal_s']:.2f} s.", "",
            "| N | target | first byte p50/p99 ms | TTFB max ms | connect p99/max ms | stretch p50/max | added gap p99/max ms "
            "| RSS idle / peak MB | per stream KB | fds peak | server CPU s (util) | ms/stream | fake CPU s | pg CPU s "
            "| client CPU s (ms/stream) | machine busy / steal | errors |",
            "|---:|---|---|---:|---|---|---|---|---:|---:|---|---:|---:|---:|---|---|---|"]
    for row in res["runs"]:
        for target in ("direct", "gateway"):
            s = row.get(target)
            if not s:
                continue
            out.append(
                f"| {row['n']} | {target} | {s['first_byte_p50_ms']:.0f} / {s['first_byte_p99_ms']:.0f} | "
                f"{s['ttfb_max_ms']:.0f} | {s['connect_p99_ms']:.0f} / {s['connect_max_ms']:.0f} | "
                f"{s['stretch_p50']:.2f} / {s['stretch_max']:.2f} | {s['added_gap_p99_ms']:.0f} / {s['added_gap_max_ms']:.0f} | "
                f"{s['idle_rss_mb']:.0f} / {s['peak_rss_mb']:.0f} | {s['rss_per_stream_kb']:.0f} | {s['peak_fds']} | "
                f"{s['server_cpu_s']:.1f} ({s['server_cpu_util'] * 100:.0f}%) | {s['server_cpu_ms_per_stream']:.1f} | "
                f"{s['fake_cpu_s']:.1f} | {s['postgres_cpu_s']:.1f} | {s['client_cpu_s']:.1f} "
                f"({s['client_cpu_ms_per_stream']:.1f}) | {s['machine_busy'] * 100:.0f}% / {s['machine_steal'] * 100:.1f}% | "
                f"{s['errors'] or '-'} |")
    out.append("")
    for row in res["runs"]:
        g = row.get("gateway")
        if g:
            u = g["usage"]
            out.append(f"N={row['n']}: {g['usage_seen']}/{g['complete']} complete gateway streams ended with usage; "
                       f"{u['rows_found']}/{u['request_ids']} request ids have a usage row, {u['ok_stream']} ok/stream "
                       f"({'consistent' if u['consistent'] else 'NOT CONSISTENT'}).")
    out.append("")
    out.append(f"Gateway environment overrides: {res['gateway_env'] or 'none'}; RLIMIT_NOFILE {res['nofile']}.")
    out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------------------------------
# Main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", default="200,1000,2000", help="comma-separated counts of concurrent streams")
    ap.add_argument("--ramp", type=float, default=5.0, help="seconds over which each load's streams are opened")
    ap.add_argument("--deltas", type=int, default=100, help="text deltas per stream (default 100)")
    ap.add_argument("--delay-ms", type=int, default=50, help="the fake's pause between events (default 50)")
    ap.add_argument("--protocol", choices=("openai", "anthropic"), default="openai",
                    help="gateway ingress: /v1/chat/completions (include_usage) or /v1/messages")
    ap.add_argument("--targets", default="direct,gateway", help="direct, gateway or both (default)")
    ap.add_argument("--gateway-env", action="append", default=[], metavar="NAME=VALUE",
                    help="extra environment for the gateway (repeatable), e.g. to A/B a default")
    ap.add_argument("--client-procs", type=int, default=1, help="client processes (default 1)")
    ap.add_argument("--timeout", type=float, default=120.0, help="a stream not complete after this many s fails")
    ap.add_argument("--pause", type=float, default=3.0, help="seconds between loads (the server settles)")
    run.database_arguments(ap, "gatehouse_bench")
    ap.add_argument("--label", default="", help="suffix for the result file name")
    args = ap.parse_args()
    counts = [int(c) for c in args.streams.split(",")]
    targets = args.targets.split(",")

    # The fake's pieces: `words` words stream as words/3 text deltas (checked against the fake's own regex).
    from fakes.anthropic import TEXT_CHUNK_RE, lorem

    words = args.deltas * WORDS_PER_DELTA
    if len(TEXT_CHUNK_RE.findall(lorem(words))) != args.deltas:
        sys.exit("the fake no longer streams 3 words per text delta: adjust WORDS_PER_DELTA")
    events = EVENTS_BEFORE_FIRST_DELTA + args.deltas + EVENTS_AFTER_LAST_DELTA
    ideal = (events - 1) * args.delay_ms / 1000  # the fake waits between events, not before the first
    ideal_first = EVENTS_BEFORE_FIRST_DELTA * args.delay_ms / 1000
    prompt = f"Tell me a story [[fake:words={words}, chunk_delay_ms={args.delay_ms}]]"
    max_tokens = words + 10

    nofile = raise_nofile()
    if nofile[0] < 3 * max(counts) + 200:
        run.log(f"warning: RLIMIT_NOFILE {nofile} is low for {max(counts)} streams (client, fake and gateway)")
    signal.signal(signal.SIGTERM, run._on_signal)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    name = f"{stamp}-streams" + (f"-{args.label}" if args.label else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    logdir = RESULTS / f"{name}-logs"
    logdir.mkdir(exist_ok=True)
    if os.getloadavg()[0] > 0.5:
        run.log(f"warning: 1-minute load average is {os.getloadavg()[0]:.2f} before starting; the machine is not quiet")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "ANTHROPIC_", "UPSTREAM_", "GRANIAN_"))}
    env.update(DATABASE_URL=f"{args.pg_url.rstrip('/')}/{args.db_name}", REDIS_URL=args.redis_url,
               ANTHROPIC_API_KEY="x", DJANGO_SETTINGS_MODULE="config.settings", DEBUG="0", LOG_LEVEL="WARNING",
               PYTHONUNBUFFERED="1")
    env.pop("WEB_CONCURRENCY", None)
    gateway_env = dict(item.split("=", 1) for item in args.gateway_env)
    env.update(gateway_env)

    result: dict = {"name": name, "started": datetime.now().isoformat(timespec="seconds"), "args": vars(args),
                    "machine": run.machine(), "versions": run.versions(), "ideal_s": ideal,
                    "ideal_first_ms": ideal_first * 1000, "gateway_env": gateway_env, "nofile": nofile, "runs": []}
    try:
        run.log("database: create/migrate, tenant, fresh key")
        key, key_id = run.setup_database(args, env)
        usage = run.Usage(env["DATABASE_URL"], key_id)
        ports: set[int] = set()
        fake_port, gw_port = run.free_port(ports), run.free_port(ports)
        env["ANTHROPIC_BASE_URL"] = f"http://127.0.0.1:{fake_port}"
        fake = run.start_fake(fake_port, logdir)
        run.log(f"fake upstream on :{fake_port}; starting granian gateway on :{gw_port}")
        gw, worker = run.start_gateway("granian", gw_port, env, logdir)
        gw_tree = run.process_tree(gw.pid)
        run.log(f"gateway pid {gw.pid}, worker pid {worker}")

        direct_body = {"model": MODEL, "max_tokens": max_tokens, "stream": True,
                       "messages": [{"role": "user", "content": prompt}]}
        if args.protocol == "openai":
            gw_path, gw_body = "/v1/chat/completions", {
                "model": MODEL, "max_tokens": max_tokens, "stream": True, "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": prompt}]}
        else:
            gw_path, gw_body = "/v1/messages", direct_body
        plan = {
            "direct": {"port": fake_port, "worker": fake.pid, "pids": [fake.pid],
                       "request": http_request("127.0.0.1", fake_port, "/v1/messages",
                                               {"x-api-key": "anything", "anthropic-version": "2023-06-01"}, direct_body)},
            "gateway": {"port": gw_port, "worker": worker, "pids": gw_tree,
                        "request": http_request("127.0.0.1", gw_port, gw_path,
                                                {"Authorization": f"Bearer {key}", "anthropic-version": "2023-06-01"},
                                                gw_body)},
        }
        # The gateway's first model call imports the SDK and opens the first upstream connection: a short
        # fast load takes it out of the measurements (and warms the fake).
        short = dict(gw_body, messages=[{"role": "user", "content": "Hi there"}], max_tokens=50)
        prime = http_request("127.0.0.1", gw_port, gw_path, {"Authorization": f"Bearer {key}",
                                                             "anthropic-version": "2023-06-01"}, short)
        run_clients("127.0.0.1", gw_port, prime, 20, 1.0, 1, 30)

        for n in counts:
            row: dict = {"n": n}
            for target in targets:
                run.log(f"N={n} {target}: opening {n} streams within {args.ramp:g} s")
                rows_before = usage.count()
                s = measure(plan[target], n, args, ideal, ideal_first, fake.pid)
                ids = s.pop("request_ids")
                if target == "gateway":
                    rows = usage.settled_count(timeout=30) - rows_before
                    found = usage.find_ids(ids)
                    ok_stream = sum(1 for v in found.values() if v == ("ok", True))
                    s["usage"] = {"request_ids": len(ids), "rows_found": len(found), "ok_stream": ok_stream,
                                  "new_rows": rows, "consistent": len(found) == len(ids) == n == ok_stream == rows}
                run.log(f"  TTFB p50 {s['ttfb_p50_ms']:.0f} p99 {s['ttfb_p99_ms']:.0f} ms, stretch p99 "
                        f"{s['stretch_p99']:.2f}, failed {s['failed']} {s['errors'] or ''}, RSS peak "
                        f"{s['peak_rss_mb']:.0f} MB ({s['rss_per_stream_kb']:.0f} KB/stream), server CPU "
                        f"{s['server_cpu_s']:.1f} s, client CPU {s['client_cpu_s']:.1f} s"
                        + (f", usage rows {s['usage']}" if "usage" in s else ""))
                row[target] = s
                time.sleep(args.pause)
            result["runs"].append(row)
        result["finished"] = datetime.now().isoformat(timespec="seconds")
    except KeyboardInterrupt:
        run.log("interrupted")
        return 130
    finally:
        run.PROCS.stop_all()

    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(result, indent=2, default=str))
    md = render(result)
    (RESULTS / f"{name}.md").write_text(md)
    print(md)
    run.log(f"wrote {out}")
    ok = all(s["failed"] == 0 and s.get("usage", {"consistent": True})["consistent"]
             for row in result["runs"] for k, s in row.items() if k != "n")
    return 0 if ok else 1


if __name__ == "__main__":
    if sys.argv[1:] == ["--client"]:
        client_entry()
    else:
        sys.exit(main())
