#!/usr/bin/env python
"""Interleaved A/B of ASGI servers for the gateway (granian, uvicorn, daphne): same fake upstream, same
database and key, servers alternated round by round so that drift on the shared machine hits all alike.

    .venv/bin/python bench/compare_servers.py [--servers granian,uvicorn,daphne] [--rounds 3] [--duration 8]

Per round and server: start one gateway worker, 5 s of c=32 warm-up, then for each cell
{plain, stream} x {c=1, c=32} a 2 s warm-up and a measured wrk run, then 200 sequential streaming
requests for TTFB; stop the server. Prints the median over rounds per server and cell (and every
value), and writes bench/results/<timestamp>-compare.json. Uses bench/run.py's helpers; the full
measurements (memory, usage accounting, profile) are bench/run.py's job.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--servers", default="granian,uvicorn,daphne")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=8)
    ap.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432")
    ap.add_argument("--db-name", default="gatehouse_bench")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = ap.parse_args()
    args.keep_usage = False
    servers = args.servers.split(",")
    signal.signal(signal.SIGTERM, run._on_signal)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run.RESULTS.mkdir(parents=True, exist_ok=True)
    logdir = run.RESULTS / f"{stamp}-compare-logs"
    logdir.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "ANTHROPIC_"))}
    env.update(DATABASE_URL=f"{args.pg_url.rstrip('/')}/{args.db_name}", REDIS_URL=args.redis_url,
               ANTHROPIC_API_KEY="x", DJANGO_SETTINGS_MODULE="config.settings", DEBUG="0", LOG_LEVEL="WARNING")
    data: dict[str, dict[str, list[dict]]] = {s: {} for s in servers}
    try:
        key, _ = run.setup_database(args, env)
        ports: set[int] = set()
        fake_port = run.free_port(ports)
        env["ANTHROPIC_BASE_URL"] = f"http://127.0.0.1:{fake_port}"
        run.start_fake(fake_port, logdir)
        headers = {"Authorization": f"Bearer {key}"}
        for rnd in range(args.rounds):
            order = servers if rnd % 2 == 0 else list(reversed(servers))
            for server in order:
                port = run.free_port(ports)
                gw, _worker = run.start_gateway(server, port, env, logdir)
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                for cell, row in run.measure_cells(url, headers, run.process_tree(gw.pid), args.duration,
                                                   f"round {rnd + 1} {server:8s}").items():
                    data[server].setdefault(cell, []).append(row)
                body = dict(run.GATEWAY_BODY, stream=True)
                s = asyncio.run(run.ttfb_series("127.0.0.1", port, "/v1/chat/completions", headers, body, 200, warm=20))
                data[server].setdefault("ttfb stream c=1", []).append(
                    {"ttfb_p50_ms": s["ttfb_p50_ms"], "total_p50_ms": s["total_p50_ms"], "errors": s["errors"]})
                run.PROCS.stop(gw)
    except KeyboardInterrupt:
        return 130
    finally:
        run.PROCS.stop_all()

    med = lambda rows, k: statistics.median(r[k] for r in rows)  # noqa: E731
    lines = ["| server | cell | req/s (median) | req/s (all rounds) | p50 ms | p99 ms | CPU ms/req | errors |",
             "|---|---|---:|---|---:|---:|---:|---:|"]
    for server in servers:
        for cell, rows in data[server].items():
            if cell.startswith("ttfb"):
                lines.append(f"| {server} | {cell} | | TTFB p50 {med(rows, 'ttfb_p50_ms'):.2f} ms, total p50 "
                             f"{med(rows, 'total_p50_ms'):.2f} ms | | | | {sum(r['errors'] for r in rows)} |")
                continue
            all_rps = ", ".join(f"{r['rps']:.0f}" for r in rows)
            lines.append(f"| {server} | {cell} | {med(rows, 'rps'):.0f} | {all_rps} | "
                         f"{med(rows, 'p50_ms'):.2f} | {med(rows, 'p99_ms'):.2f} | {med(rows, 'cpu_ms_per_req'):.2f} | "
                         f"{sum(r['errors'] for r in rows)} |")
    md = "\n".join(lines)
    print(md)
    out = run.RESULTS / f"{stamp}-compare.json"
    out.write_text(json.dumps({"servers": servers, "rounds": args.rounds, "duration": args.duration,
                               "machine": run.machine(), "versions": run.versions(), "data": data, "table": md}, indent=2))
    (run.RESULTS / f"{stamp}-compare.md").write_text(md + "\n")
    run.log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
