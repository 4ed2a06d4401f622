#!/usr/bin/env python
"""Gatehouse throughput/latency/memory benchmark (not part of the test suite).

    .venv/bin/python bench/run.py [--duration 10] [--server granian|uvicorn|daphne]
                                  [--memory-requests 100000] [--quick] [--profile 15]

Sets up a scratch PostgreSQL database and an API key, starts the fake Anthropic upstream and one
gateway worker in production mode (PostgreSQL + Redis, durable usage recording), then measures with
wrk and a small asyncio client. See bench/README.md for what each figure means. Results are printed
as markdown and written as JSON (and .md) to bench/results/.

Every process it starts runs in its own session and is killed on exit, Ctrl-C or error.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import datetime
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
LUA = BENCH / "post.lua"
PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

MODEL = "claude-sonnet-4-6"
PROMPT = "Hi there"
DIRECT_BODY = {"model": MODEL, "max_tokens": 100, "messages": [{"role": "user", "content": PROMPT}]}
GATEWAY_BODY = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}]}
# Paced stream: the fake waits 10 ms between events, so a relay that buffered would show TTFB ~ total.
PACED_PROMPT = "Hi there [[fake:chunk_delay_ms=10]]"
FIRST_TOKEN_MARKER = b"Hello"  # first word of the fake's reply, in the first text delta of both protocols


# --------------------------------------------------------------------------------------------------
# Processes


class Procs:
    """Children started in their own sessions; all killed (process group) at exit."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen] = []
        self.lock = threading.Lock()

    def start(self, argv, **kw) -> subprocess.Popen:
        proc = subprocess.Popen(argv, start_new_session=True, **kw)
        with self.lock:
            self.children.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 8.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # Whatever the leader left behind in its group (e.g. granian workers).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with self.lock:
            if proc in self.children:
                self.children.remove(proc)

    def stop_all(self) -> None:
        for proc in list(reversed(self.children)):
            self.stop(proc)


PROCS = Procs()
atexit.register(PROCS.stop_all)


def _on_signal(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def free_port(used: set[int]) -> int:
    for _ in range(500):
        port = random.randint(18000, 18999)
        if port in used:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        used.add(port)
        return port
    raise RuntimeError("no free port in 18000-18999")


def proc_stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, utime+stime ticks, rss bytes) from /proc/<pid>/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): ppid=4, utime=14, stime=15, rss=24
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[21]) * PAGE


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def process_tree(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for pid in all_pids():
        st = proc_stat(pid)
        if st:
            parents[pid] = st[0]
    tree, frontier = [root], [root]
    while frontier:
        nxt = [p for p, pp in parents.items() if pp in frontier]
        tree += nxt
        frontier = nxt
    return tree


def cpu_ticks(pids) -> int:
    return sum(st[1] for pid in pids if (st := proc_stat(pid)))


def postgres_pids() -> list[int]:
    out = []
    for pid in all_pids():
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == "postgres":
                out.append(pid)
    return out


def machine_ticks() -> list[int]:
    """The aggregate `cpu` line of /proc/stat: user nice system idle iowait irq softirq steal ..."""
    return [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]


def machine_usage(before: list[int], after: list[int]) -> tuple[float, float]:
    """(busy share of all cores, steal share) between two machine_ticks() snapshots."""
    d = [b - a for a, b in zip(before, after)]
    total = sum(d) or 1
    busy = d[0] + d[1] + d[2] + d[5] + d[6]
    return busy / total, d[7] / total


def rss_mb(pid: int) -> float:
    st = proc_stat(pid)
    return st[2] / 2**20 if st else float("nan")


# --------------------------------------------------------------------------------------------------
# Database and key


def pg_connect(url: str, dbname: str | None = None):
    import psycopg

    kwargs = {"autocommit": True}
    if dbname:
        kwargs["dbname"] = dbname
    return psycopg.connect(url, **kwargs)


def database_arguments(ap, db_name: str) -> None:
    """The scratch database's options, which `setup_database` reads."""
    ap.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432"))
    ap.add_argument("--db-name", default=db_name)
    ap.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    ap.add_argument("--keep-usage", action="store_true", help="do not truncate the scratch usage table first")


def setup_database(args, env: dict[str, str]) -> tuple[str, int]:
    """Create/migrate the scratch DB, ensure the tenant, issue a fresh key. Returns (key, key id)."""
    base = args.pg_url.rstrip("/")
    with pg_connect(base + "/postgres") as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", (args.db_name,)).fetchone()
        if not exists:
            conn.execute(f'create database "{args.db_name}"')
            log(f"created database {args.db_name}")
    manage = [PY, str(ROOT / "manage.py")]
    subprocess.run(manage + ["migrate", "--noinput", "-v", "0"], env=env, cwd=ROOT, check=True)
    with pg_connect(env["DATABASE_URL"]) as conn:
        tenant = conn.execute("select id from accounts_tenant where slug = 'bench'").fetchone()
        if not args.keep_usage:
            # Stored conversations too: they grow with every run and would slow later runs' writes.
            conn.execute("truncate billing_usageevent, conversations_conversation, conversations_message, "
                         "conversations_storedresponse, conversations_conversationimage")
    if not tenant:
        subprocess.run(manage + ["create_tenant", "bench"], env=env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(manage + ["grant_credit", "bench", "1000000", "--reason", "benchmark run"], env=env, cwd=ROOT,
                   check=True, stdout=subprocess.DEVNULL)
    # Every admission check on (limits far above the load): the prepaid balance, a daily budget, RPM and TPM.
    limits = ["--rpm", "100000000", "--tpm", "2000000000", "--budget-usd", "1000000", "--budget-period", "day"]
    out = subprocess.run(manage + ["create_key", "bench", "--name", "bench", *limits], env=env, cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    key = out.strip().splitlines()[-1].strip()
    public_id = key.split("_")[2]
    with pg_connect(env["DATABASE_URL"]) as conn:
        key_id = conn.execute("select id from accounts_apikey where public_id = %s", (public_id,)).fetchone()[0]
    return key, key_id


class Usage:
    """Counts UsageEvent rows of the benchmark key."""

    def __init__(self, url: str, key_id: int) -> None:
        self.conn = pg_connect(url)
        self.key_id = key_id

    def count(self) -> int:
        return self.conn.execute("select count(*) from billing_usageevent where api_key_id = %s",
                                 (self.key_id,)).fetchone()[0]

    def settled_count(self, timeout: float = 5.0) -> int:
        """The row count once it stops moving (requests wrk abandoned at its cut-off still finish)."""
        last, stable_since, deadline = self.count(), time.monotonic(), time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = self.count()
            if now != last:
                last, stable_since = now, time.monotonic()
            elif time.monotonic() - stable_since >= 0.5:
                break
        return last

    def by_status(self) -> dict[str, int]:
        rows = self.conn.execute(
            "select status || case when stream then '/stream' else '/plain' end, count(*) from billing_usageevent "
            "where api_key_id = %s group by 1 order by 1", (self.key_id,)).fetchall()
        return dict(rows)

    def find_ids(self, ids: list[str]) -> dict[str, tuple[str, bool]]:
        rows = self.conn.execute("select request_id, status, stream from billing_usageevent where request_id = any(%s)",
                                 (ids,)).fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}


# --------------------------------------------------------------------------------------------------
# Servers


def wait_http_ok(url: str, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    last_err = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except Exception as exc:  # noqa: BLE001
            last_err = exc
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {timeout}s: {last_err}")


def start_fake(port: int, logdir: Path) -> subprocess.Popen:
    logf = open(logdir / "fake.log", "w")
    proc = PROCS.start([PY, "-m", "fakes.anthropic", "--host", "127.0.0.1", "--port", str(port), "--no-log"],
                       cwd=ROOT, stdout=logf, stderr=subprocess.STDOUT)
    wait_http_ok(f"http://127.0.0.1:{port}/_fake/health", 20, proc)
    return proc


def gateway_argv(server: str, port: int) -> list[str]:
    if server == "daphne":
        return [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "-v", "0", "config.asgi:application"]
    return [PY, "-m", "gateway.serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1", "--server", server]


def start_gateway(server: str, port: int, env: dict[str, str], logdir: Path) -> tuple[subprocess.Popen, int]:
    logf = open(logdir / f"gateway-{server}.log", "w")
    proc = PROCS.start(gateway_argv(server, port), cwd=ROOT, env=env, stdout=logf, stderr=subprocess.STDOUT)
    wait_http_ok(f"http://127.0.0.1:{port}/health", 60, proc)
    time.sleep(0.5)
    # granian: a supervisor plus one worker child; uvicorn (1 worker) and daphne: one process.
    kids = [p for p in process_tree(proc.pid) if p != proc.pid]
    worker = max(kids, key=lambda p: (proc_stat(p) or (0, 0, 0))[2]) if kids else proc.pid
    return proc, worker


# --------------------------------------------------------------------------------------------------
# wrk


def run_wrk(url: str, body: dict, headers: dict[str, str], connections: int, duration: float, threads: int) -> dict:
    env = dict(os.environ, BENCH_BODY=json.dumps(body), BENCH_HEADERS="\n".join(f"{k}: {v}" for k, v in headers.items()))
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", "--timeout", "10s",
            "-s", str(LUA), url]
    with tempfile.TemporaryFile("w+") as out:
        proc = PROCS.start(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, rusage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        with PROCS.lock:
            PROCS.children.remove(proc)
        out.seek(0)
        text = out.read()
    m = re.search(r"^BENCH_JSON (.*)$", text, re.M)
    if proc.returncode != 0 or not m:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{text}")
    r = json.loads(m.group(1))
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["socket_errors"] = r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"]
    r["ok"] = r["requests"] - r["non_2xx"]
    r["wrk_cpu_s"] = rusage.ru_utime + rusage.ru_stime
    return r


# --------------------------------------------------------------------------------------------------
# TTFB client: raw HTTP/1.1 over asyncio streams, keep-alive, one request at a time


class RawClient:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader = self.writer = None
        self.buf = b""

    async def close(self):
        if self.writer:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def _fill(self) -> float:
        data = await self.reader.read(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data
        return time.perf_counter()

    async def post(self, path: str, headers: dict[str, str], body: bytes, marker: bytes) -> dict:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.buf = b""
        head = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Content-Type: application/json",
                f"Content-Length: {len(body)}"] + [f"{k}: {v}" for k, v in headers.items()]
        t0 = time.perf_counter()
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        t_first = await self._fill()
        while b"\r\n\r\n" not in self.buf:
            await self._fill()
        raw_head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw_head.decode("latin1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        t_marker = t_first if marker in self.buf else None
        seen = len(self.buf)
        if hdrs.get("transfer-encoding", "").lower() == "chunked":
            body_out = b""
            while True:
                while b"\r\n" not in self.buf:
                    t = await self._fill()
                    if t_marker is None and marker in self.buf:
                        t_marker = t
                size_line, rest = self.buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(rest) < size + 2:
                    t = await self._fill()
                    if t_marker is None and marker in self.buf:
                        t_marker = t
                    size_line, rest = self.buf.split(b"\r\n", 1)
                body_out += rest[:size]
                self.buf = rest[size + 2 :]
                if size == 0:
                    break
        else:
            length = int(hdrs.get("content-length", "0"))
            while len(self.buf) < length:
                t = await self._fill()
                if t_marker is None and marker in self.buf[seen:]:
                    t_marker = t
            body_out, self.buf = self.buf[:length], self.buf[length:]
        t_end = time.perf_counter()
        if hdrs.get("connection", "").lower() == "close":
            await self.close()
        return {"status": status, "ttfb": t_first - t0, "first_token": (t_marker or t_end) - t0, "total": t_end - t0,
                "request_id": hdrs.get("x-request-id"), "body": body_out}


async def ttfb_series(host: str, port: int, path: str, headers: dict[str, str], body: dict, n: int, warm: int) -> dict:
    client = RawClient(host, port)
    payload = json.dumps(body).encode()
    samples, ids, bad = [], [], 0
    try:
        for i in range(warm + n):
            r = await client.post(path, headers, payload, FIRST_TOKEN_MARKER)
            if r["status"] != 200 or FIRST_TOKEN_MARKER not in r["body"]:
                bad += 1
            if r["request_id"]:
                ids.append(r["request_id"])
            if i >= warm:
                samples.append(r)
    finally:
        await client.close()

    def pct(key, q):
        values = sorted(s[key] for s in samples)
        return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))] * 1000

    return {
        "n": n, "errors": bad, "request_ids": ids, "ok": warm + n - bad,
        **{f"{k}_p{q}_ms": round(pct(k, q), 3) for k in ("ttfb", "first_token", "total") for q in (50, 99)},
        **{f"{k}_mean_ms": round(statistics.fmean(s[k] for s in samples) * 1000, 3) for k in ("ttfb", "first_token", "total")},
    }


# --------------------------------------------------------------------------------------------------
# Helpers


CELLS = [(False, 1), (False, 32), (True, 1), (True, 32)]  # (stream, connections)


def measure_cells(url: str, headers: dict[str, str], tree: list[int], duration: float, label: str) -> dict[str, dict]:
    """The A/B tools' cells on one running gateway: 5 s of c=32 warm-up, then per cell a 2 s warm-up and a
    measured run; req/s, latency, errors and the gateway's CPU per request, by cell name."""
    run_wrk(url, GATEWAY_BODY, headers, 32, 5, 1)
    rows = {}
    for stream, c in CELLS:
        body = dict(GATEWAY_BODY, stream=True) if stream else GATEWAY_BODY
        run_wrk(url, body, headers, c, 2, 1)
        cpu0 = cpu_ticks(tree)
        r = run_wrk(url, body, headers, c, duration, 1)
        cpu_ms = (cpu_ticks(tree) - cpu0) * 1000 / CLK_TCK / max(r["requests"], 1)
        cell = f"{'stream' if stream else 'plain'} c={c}"
        rows[cell] = {"rps": r["rps"], "p50_ms": r["p50_us"] / 1000, "p99_ms": r["p99_us"] / 1000,
                      "errors": r["non_2xx"] + r["socket_errors"], "cpu_ms_per_req": cpu_ms}
        log(f"{label} {cell:10s} {r['rps']:6.0f} req/s p50 {r['p50_us'] / 1000:6.2f} ms cpu {cpu_ms:.2f} ms/req "
            f"errors {rows[cell]['errors']}")
    return rows


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def versions() -> dict[str, str]:
    out = {}
    for name in ("django", "django-ninja", "anthropic", "httpx2", "aiohttp", "orjson", "granian", "uvicorn",
                 "httptools", "uvloop", "daphne", "psycopg", "asgiref"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def machine() -> dict:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError):
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    wrk_v = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[:1]
    pg_v = ""
    with contextlib.suppress(Exception):
        pg_v = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.strip()
    return {"nproc": os.cpu_count(), "cpu": cpu, "mem_total": mem, "python": platform.python_version(),
            "kernel": platform.release(), "wrk": wrk_v[0] if wrk_v else "", "postgres_client": pg_v,
            "loadavg_at_start": os.getloadavg()}


def slope_per_100k(points: list[tuple[int, float]]) -> float:
    if len(points) < 2:
        return float("nan")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den * 100_000 if den else float("nan")


class RssSampler(threading.Thread):
    def __init__(self, pid: int, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, float]] = []
        self.stop_event = threading.Event()

    def run(self):
        t0 = time.monotonic()
        while not self.stop_event.is_set():
            self.samples.append((time.monotonic() - t0, rss_mb(self.pid)))
            self.stop_event.wait(self.interval)

    def stop(self):
        self.stop_event.set()
        self.join()


# --------------------------------------------------------------------------------------------------
# The benchmark


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10, help="seconds per measured wrk run (default 10)")
    ap.add_argument("--warmup", type=float, default=3, help="seconds of wrk warm-up before each run (default 3)")
    ap.add_argument("--server", choices=("granian", "uvicorn", "daphne"), default="granian")
    ap.add_argument("--concurrency", default="1,32", help="comma-separated wrk connection counts (default 1,32)")
    ap.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1: leaves the 2nd core to the servers)")
    ap.add_argument("--memory-requests", type=int, default=100_000, help="requests in the memory run (default 100000)")
    ap.add_argument("--memory-chunks", type=int, default=10, help="RSS checkpoints in the memory run (default 10)")
    ap.add_argument("--ttfb-requests", type=int, default=300, help="sequential streaming requests per TTFB series")
    ap.add_argument("--quick", action="store_true", help="skip the memory run, fewer TTFB requests")
    ap.add_argument("--profile", type=float, default=0, metavar="SECONDS",
                    help="also record a py-spy profile (--gil -r 250, raw) of the worker under c=32 non-streaming load")
    database_arguments(ap, "gatehouse_bench")
    ap.add_argument("--label", default="", help="suffix for the result file names")
    args = ap.parse_args()
    if args.quick:
        args.ttfb_requests = min(args.ttfb_requests, 100)
    conc = [int(c) for c in args.concurrency.split(",")]
    for tool in ("wrk",) + (("py-spy",) if args.profile else ()):
        if not shutil.which(tool) and not (ROOT / ".venv/bin" / tool).exists():
            sys.exit(f"{tool} not found")

    signal.signal(signal.SIGTERM, _on_signal)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    name = f"{stamp}-{args.server}" + (f"-{args.label}" if args.label else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    logdir = RESULTS / f"{name}-logs"
    logdir.mkdir(exist_ok=True)

    load = os.getloadavg()[0]
    if load > 0.5:
        log(f"warning: 1-minute load average is {load:.2f} before starting; the machine is not quiet")

    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "ANTHROPIC_"))}
    env.update(DATABASE_URL=f"{args.pg_url.rstrip('/')}/{args.db_name}", REDIS_URL=args.redis_url,
               ANTHROPIC_API_KEY="x", DJANGO_SETTINGS_MODULE="config.settings", DEBUG="0", LOG_LEVEL="WARNING",
               PYTHONUNBUFFERED="1")
    env.pop("WEB_CONCURRENCY", None)

    result: dict = {"name": name, "server": args.server, "started": datetime.now().isoformat(timespec="seconds"),
                    "args": vars(args), "machine": machine(), "versions": versions()}
    try:
        log("database: create/migrate, tenant, fresh key")
        key, key_id = setup_database(args, env)
        usage = Usage(env["DATABASE_URL"], key_id)
        ports: set[int] = set()
        fake_port, gw_port = free_port(ports), free_port(ports)
        env["ANTHROPIC_BASE_URL"] = f"http://127.0.0.1:{fake_port}"
        fake = start_fake(fake_port, logdir)
        log(f"fake upstream on :{fake_port}; starting {args.server} gateway on :{gw_port}")
        gw, worker = start_gateway(args.server, gw_port, env, logdir)
        gw_tree = process_tree(gw.pid)
        log(f"gateway pid {gw.pid}, worker pid {worker}, tree {gw_tree}")
        result["memory_idle_mb"] = round(rss_mb(worker), 1)

        targets = {
            "direct": {"url": f"http://127.0.0.1:{fake_port}/v1/messages", "pids": [fake.pid], "body": DIRECT_BODY,
                       "headers": {"x-api-key": "anything", "anthropic-version": "2023-06-01"}},
            "gateway": {"url": f"http://127.0.0.1:{gw_port}/v1/chat/completions", "pids": gw_tree, "body": GATEWAY_BODY,
                        "headers": {"Authorization": f"Bearer {key}"}},
        }
        accounting: list[dict] = []  # per gateway phase: client-seen 2xx vs new usage rows

        def account(phase: str, ok: int, cutoffs: int, before: int) -> None:
            after = usage.settled_count()
            rows = after - before
            accounting.append({"phase": phase, "client_ok": ok, "rows": rows, "extra": rows - ok, "max_in_flight": cutoffs,
                               "consistent": 0 <= rows - ok <= cutoffs})

        # The first model call imports the SDK and builds the client (~1 s): take it out of the measurements.
        before_rows = usage.count()
        prime = asyncio.run(ttfb_series("127.0.0.1", gw_port, "/v1/chat/completions", targets["gateway"]["headers"],
                                        dict(GATEWAY_BODY, stream=True), 1, warm=1))
        account("priming (first requests)", prime["ok"], 0, before_rows)

        # ---- throughput/latency matrix
        runs = []
        for target in ("direct", "gateway"):
            t = targets[target]
            for stream in (False, True):
                body = dict(t["body"], stream=True) if stream else t["body"]
                for c in conc:
                    mode = "stream" if stream else "plain"
                    log(f"{target} {mode} c={c}: warm-up {args.warmup}s, run {args.duration}s")
                    before_rows = usage.count() if target == "gateway" else 0
                    warm = run_wrk(t["url"], body, t["headers"], c, args.warmup, args.wrk_threads)
                    pg0, cpu0, fake0 = cpu_ticks(postgres_pids()), cpu_ticks(t["pids"]), cpu_ticks([fake.pid])
                    m0, t0 = machine_ticks(), time.monotonic()
                    r = run_wrk(t["url"], body, t["headers"], c, args.duration, args.wrk_threads)
                    wall = time.monotonic() - t0
                    busy, steal = machine_usage(m0, machine_ticks())
                    cpu1, pg1, fake1 = cpu_ticks(t["pids"]), cpu_ticks(postgres_pids()), cpu_ticks([fake.pid])
                    reqs = max(r["requests"], 1)
                    r.update(target=target, stream=stream, connections=c,
                             server_cpu_ms_per_req=(cpu1 - cpu0) * 1000 / CLK_TCK / reqs,
                             server_cpu_util=(cpu1 - cpu0) / CLK_TCK / wall,
                             fake_cpu_ms_per_req=(fake1 - fake0) * 1000 / CLK_TCK / reqs,
                             postgres_cpu_ms_per_req=(pg1 - pg0) * 1000 / CLK_TCK / reqs,
                             wrk_cpu_ms_per_req=r["wrk_cpu_s"] * 1000 / reqs,
                             machine_busy=busy, machine_steal=steal,
                             warmup_requests=warm["requests"], warmup_non_2xx=warm["non_2xx"],
                             worker_rss_mb=round(rss_mb(worker), 1))
                    runs.append(r)
                    log(f"  {r['rps']:.0f} req/s p50 {r['p50_us'] / 1000:.2f} ms p99 {r['p99_us'] / 1000:.2f} ms "
                        f"non-2xx {r['non_2xx']} socket errors {r['socket_errors']} "
                        f"server CPU {r['server_cpu_ms_per_req']:.2f} ms/req")
                    if target == "gateway":
                        account(f"wrk {mode} c={c}", warm["ok"] + r["ok"], 2 * c, before_rows)
        result["runs"] = runs

        # ---- TTFB / first token / total for streams at c=1
        log(f"TTFB: {args.ttfb_requests} sequential streaming requests per series")
        ttfb = {}
        id_checks = []
        for label, prompt, n in (("default", PROMPT, args.ttfb_requests), ("paced 10ms/event", PACED_PROMPT,
                                                                            max(20, args.ttfb_requests // 6))):
            for target in ("direct", "gateway"):
                t = targets[target]
                body = dict(t["body"], stream=True, messages=[{"role": "user", "content": prompt}])
                path = "/v1/messages" if target == "direct" else "/v1/chat/completions"
                port = fake_port if target == "direct" else gw_port
                before_rows = usage.count()
                s = asyncio.run(ttfb_series("127.0.0.1", port, path, t["headers"], body, n, warm=20))
                ids = s.pop("request_ids")
                if target == "gateway":
                    account(f"ttfb {label}", s["ok"], 0, before_rows)
                    found = usage.find_ids(ids)
                    id_checks.append({"series": label, "responses": len(ids), "rows_found": len(found),
                                      "all_ok_stream": all(v == ("ok", True) for v in found.values())})
                ttfb[f"{target} {label}"] = s
                log(f"  {target} {label}: ttfb p50 {s['ttfb_p50_ms']:.2f} first token p50 {s['first_token_p50_ms']:.2f} "
                    f"total p50 {s['total_p50_ms']:.2f} ms")
        result["ttfb"] = ttfb

        # ---- memory over a long run
        if not args.quick and args.memory_requests > 0:
            n, chunks = args.memory_requests, max(1, args.memory_chunks)
            t = targets["gateway"]
            # wrk cannot stop at a request count (its main thread sleeps for -d whatever the threads do),
            # so each chunk runs for the time the last measured rate needs to serve n/chunks requests.
            rate = next((r["rps"] for r in runs if r["target"] == "gateway" and not r["stream"]
                         and r["connections"] == 32), 500.0)
            log(f"memory: {n} non-streaming requests at c=32 in ~{chunks} chunks (~{n / rate:.0f}s at {rate:.0f} req/s)")
            start_rss = rss_mb(worker)
            sampler = RssSampler(worker)
            sampler.start()
            points, done, total_ok, non2xx, sockerr, stops = [(0, start_rss)], 0, 0, 0, 0, 0
            before_rows = usage.count()
            cpu0, t0 = cpu_ticks(t["pids"]), time.monotonic()
            try:
                while n - done > rate * 0.5:
                    want = min(n / chunks, n - done)
                    r = run_wrk(t["url"], t["body"], t["headers"], 32, want / rate, args.wrk_threads)
                    stops += 1
                    rate = r["rps"] or rate
                    done += r["requests"]
                    total_ok += r["ok"]
                    non2xx += r["non_2xx"]
                    sockerr += r["socket_errors"]
                    points.append((done, rss_mb(worker)))
                    log(f"  {done} requests ({r['rps']:.0f} req/s), RSS {points[-1][1]:.1f} MB")
            finally:
                sampler.stop()
            wall = time.monotonic() - t0
            cpu1 = cpu_ticks(t["pids"])
            account("memory run", total_ok, 32 * stops, before_rows)
            rss_values = [v for _, v in sampler.samples] + [p[1] for p in points]
            later = [p for p in points if p[0] >= n * 0.2]
            result["memory"] = {
                "requests": done, "non_2xx": non2xx, "socket_errors": sockerr, "rps": done / wall,
                "start_mb": round(start_rss, 1), "end_mb": round(points[-1][1], 1), "max_mb": round(max(rss_values), 1),
                "slope_mb_per_100k": round(slope_per_100k(points), 2),
                "slope_after_20pct_mb_per_100k": round(slope_per_100k(later), 2),
                "server_cpu_ms_per_req": (cpu1 - cpu0) * 1000 / CLK_TCK / max(done, 1),
                "checkpoints": [(d, round(v, 1)) for d, v in points],
            }
        # ---- optional py-spy profile under c=32 non-streaming load
        if args.profile:
            t = targets["gateway"]
            out = RESULTS / f"{name}-pyspy.txt"
            log(f"profile: py-spy record --gil -r 250 -f raw for {args.profile}s on worker {worker} -> {out}")
            before_rows = usage.count()
            spy = PROCS.start([str(ROOT / ".venv/bin/py-spy"), "record", "--gil", "-r", "250", "-f", "raw", "-o", str(out),
                               "-d", str(int(args.profile)), "-p", str(worker)],
                              stdout=subprocess.DEVNULL, stderr=open(logdir / "py-spy.log", "w"))
            time.sleep(1.0)
            r = run_wrk(t["url"], t["body"], t["headers"], 32, args.profile, args.wrk_threads)
            spy.wait(timeout=60)
            with PROCS.lock:
                PROCS.children.remove(spy)
            account("profile run", r["ok"], 32, before_rows)
            result["profile"] = {"file": str(out.relative_to(ROOT)), "rps_while_profiling": r["rps"]}
            with contextlib.suppress(Exception):
                sys.path.insert(0, str(BENCH))
                from profile_summary import summarize

                result["profile"]["areas"] = summarize(out)

        # ---- usage accounting
        rows_total = usage.settled_count()
        result["usage"] = {
            "phases": accounting,
            "rows_total": rows_total,
            "client_ok_total": sum(a["client_ok"] for a in accounting),
            "rows_by_status": usage.by_status(),
            "id_checks": id_checks,
            "consistent": all(a["consistent"] for a in accounting)
            and all(c["rows_found"] == c["responses"] and c["all_ok_stream"] for c in id_checks),
        }
        result["memory_final_mb"] = round(rss_mb(worker), 1)
        result["finished"] = datetime.now().isoformat(timespec="seconds")
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        PROCS.stop_all()

    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))
    md = render(result)
    (RESULTS / f"{name}.md").write_text(md)
    print(md)
    log(f"wrote {RESULTS / (name + '.json')}")
    return 0 if result["usage"]["consistent"] else 1


# --------------------------------------------------------------------------------------------------
# Report


def render(res: dict) -> str:
    ms = lambda us: f"{us / 1000:.2f}"  # noqa: E731
    out = [f"## Gatehouse benchmark: {res['server']}, {res['name']}", "",
           f"{res['machine']['nproc']} cores ({res['machine']['cpu']}), Python {res['machine']['python']}, "
           f"wrk -t{res['args']['wrk_threads']}, {res['args']['duration']:g}s runs after {res['args']['warmup']:g}s warm-up. "
           "Load generator, fake upstream, gateway and PostgreSQL share the machine.", "",
           "| target | mode | conc | req/s | p50 ms | p99 ms | non-2xx | sock err | server CPU ms/req | server CPU util | pg CPU ms/req | machine busy | steal |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    runs = res["runs"]
    for r in runs:
        out.append(f"| {r['target']} | {'stream' if r['stream'] else 'plain'} | {r['connections']} | {r['rps']:.0f} | "
                   f"{ms(r['p50_us'])} | {ms(r['p99_us'])} | {r['non_2xx']} | {r['socket_errors']} | "
                   f"{r['server_cpu_ms_per_req']:.2f} | {r['server_cpu_util'] * 100:.0f}% | {r['postgres_cpu_ms_per_req']:.2f} | "
                   f"{r['machine_busy'] * 100:.0f}% | {r['machine_steal'] * 100:.1f}% |")
    out += ["", "| mode | conc | gateway/direct req/s | added p50 ms | added p99 ms |", "|---|---:|---:|---:|---:|"]
    index = {(r["target"], r["stream"], r["connections"]): r for r in runs}
    for stream in (False, True):
        for c in sorted({r["connections"] for r in runs}):
            d, g = index.get(("direct", stream, c)), index.get(("gateway", stream, c))
            if d and g:
                out.append(f"| {'stream' if stream else 'plain'} | {c} | {g['rps'] / d['rps']:.2f} | "
                           f"{(g['p50_us'] - d['p50_us']) / 1000:.2f} | {(g['p99_us'] - d['p99_us']) / 1000:.2f} |")
    out += ["", "Streaming at c=1, sequential raw-socket client (ms):", "",
            "| series | n | TTFB p50 | TTFB p99 | first token p50 | first token p99 | total p50 | total p99 | errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for label, s in res["ttfb"].items():
        out.append(f"| {label} | {s['n']} | {s['ttfb_p50_ms']:.2f} | {s['ttfb_p99_ms']:.2f} | {s['first_token_p50_ms']:.2f} | "
                   f"{s['first_token_p99_ms']:.2f} | {s['total_p50_ms']:.2f} | {s['total_p99_ms']:.2f} | {s['errors']} |")
    m = res.get("memory")
    out += ["", f"Worker RSS: idle {res['memory_idle_mb']} MB, after the whole run {res.get('memory_final_mb')} MB."]
    if m:
        out += ["", f"Memory run: {m['requests']} non-streaming requests at c=32 ({m['rps']:.0f} req/s, non-2xx {m['non_2xx']}, "
                    f"socket errors {m['socket_errors']}, server CPU {m['server_cpu_ms_per_req']:.2f} ms/req): RSS start "
                    f"{m['start_mb']} MB, end {m['end_mb']} MB, max {m['max_mb']} MB; slope {m['slope_mb_per_100k']} MB/100k "
                    f"requests ({m['slope_after_20pct_mb_per_100k']} MB/100k after the first 20%).",
                "", "Checkpoints (requests, MB): " + ", ".join(f"{d}: {v}" for d, v in m["checkpoints"])]
    u = res["usage"]
    out += ["", f"Usage rows: {u['rows_total']} written for {u['client_ok_total']} 2xx responses the clients saw "
                f"({u['rows_total'] - u['client_ok_total']} more: requests still in flight when wrk stopped, which the "
                f"gateway completes and bills); by status {u['rows_by_status']}. Per phase:", "",
            "| phase | client 2xx | rows | extra | bound (in flight at cut-offs) | ok |", "|---|---:|---:|---:|---:|---|"]
    for a in u["phases"]:
        out.append(f"| {a['phase']} | {a['client_ok']} | {a['rows']} | {a['extra']} | {a['max_in_flight']} | "
                   f"{'yes' if a['consistent'] else 'NO'} |")
    for c in u["id_checks"]:
        out.append(f"\nRequest-id check ({c['series']}): {c['rows_found']}/{c['responses']} response ids have a row"
                   f"{', all ok/stream' if c['all_ok_stream'] else ', NOT all ok/stream'}.")
    if res.get("profile"):
        p = res["profile"]
        out += ["", f"py-spy profile: {p['file']} ({p['rps_while_profiling']:.0f} req/s while sampling)."]
        if p.get("areas"):
            out += ["", "| area | % of GIL-holding samples |", "|---|---:|"]
            out += [f"| {a} | {v:.1f} |" for a, v in p["areas"]]
    out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
