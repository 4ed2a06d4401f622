#!/usr/bin/env python
"""Interleaved A/B of two versions of the gateway: what a change costs per request.

    git worktree add /tmp/base <commit>
    .venv/bin/python bench/compare_commits.py /tmp/base [--rounds 3] [--duration 8]

The other checkout is set up by its own bench/run.py (its own database, `<db-name>_<label>`, and key);
both run on this venv's packages, against one fake upstream, alternated round by round (ABBA...) so
that drift on the shared machine hits both alike. Per round and version: start one granian worker,
5 s of c=32 warm-up, then {plain, stream} x {c=1, c=32}: a 2 s warm-up and a measured wrk run. Prints
the median per version and cell with every round's value and writes bench/results/<stamp>-commits.json.

A setting's cost: point it at a checkout of the same commit and give the other version its own value,
e.g. `METRICS_TOKEN=t LOG_FORMAT=json ... --other-env METRICS_TOKEN= --other-env LOG_FORMAT=text`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import statistics
import sys
from datetime import datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import run  # noqa: E402


def load_run_module(root: Path, name: str):
    """That checkout's bench/run.py: its ROOT, database set-up and launcher."""
    spec = importlib.util.spec_from_file_location(name, root / "bench" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _assignment(text: str) -> str:
    if "=" not in text or not text.split("=", 1)[0]:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("other", type=Path, help="a checkout of the version to compare with (e.g. a git worktree)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=8)
    ap.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432")
    ap.add_argument("--db-name", default="gatehouse_bench")
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--other-env", action="append", default=[], metavar="NAME=VALUE", type=_assignment,
                    help="an environment variable for the other version only (repeatable): with a checkout of the "
                         "same commit, an A/B of a setting, e.g. --other-env METRICS_TOKEN= --other-env LOG_FORMAT=text")
    args = ap.parse_args()
    versions = {"this": run, "other": load_run_module(args.other.resolve(), "other_run")}
    signal.signal(signal.SIGTERM, run._on_signal)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    logdir = run.RESULTS / f"{stamp}-commits-logs"
    logdir.mkdir(parents=True, exist_ok=True)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "ANTHROPIC_"))}
    base_env.update(REDIS_URL=args.redis_url, ANTHROPIC_API_KEY="x", DJANGO_SETTINGS_MODULE="config.settings",
                    DEBUG="0", LOG_LEVEL="WARNING")
    data: dict[str, dict[str, list[dict]]] = {label: {} for label in versions}
    setups = {}
    try:
        ports: set[int] = set()
        fake_port = run.free_port(ports)
        run.start_fake(fake_port, logdir)
        for label, module in versions.items():
            db_args = argparse.Namespace(**{**vars(args), "db_name": f"{args.db_name}_{label}", "keep_usage": False})
            env = dict(base_env, DATABASE_URL=f"{args.pg_url.rstrip('/')}/{db_args.db_name}",
                       ANTHROPIC_BASE_URL=f"http://127.0.0.1:{fake_port}")
            if label == "other":
                env.update(item.split("=", 1) for item in args.other_env)
            key, _ = module.setup_database(db_args, env)
            setups[label] = (env, {"Authorization": f"Bearer {key}"})
        for rnd in range(args.rounds):
            order = list(versions) if rnd % 2 == 0 else list(reversed(versions))
            for label in order:
                env, headers = setups[label]
                port = run.free_port(ports)
                gw, _worker = versions[label].start_gateway("granian", port, env, logdir)
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                for cell, row in run.measure_cells(url, headers, run.process_tree(gw.pid), args.duration,
                                                   f"round {rnd + 1} {label:5s}").items():
                    data[label].setdefault(cell, []).append(row)
                versions[label].PROCS.stop(gw)
    except KeyboardInterrupt:
        return 130
    finally:
        for module in versions.values():
            module.PROCS.stop_all()
        run.PROCS.stop_all()

    med = lambda rows, k: statistics.median(r[k] for r in rows)  # noqa: E731
    lines = ["| version | cell | req/s (median) | req/s (all rounds) | p50 ms | p99 ms | CPU ms/req | errors |",
             "|---|---|---:|---|---:|---:|---:|---:|"]
    for label in versions:
        for cell, rows in data[label].items():
            all_rps = ", ".join(f"{r['rps']:.0f}" for r in rows)
            lines.append(f"| {label} | {cell} | {med(rows, 'rps'):.0f} | {all_rps} | {med(rows, 'p50_ms'):.2f} | "
                         f"{med(rows, 'p99_ms'):.2f} | {med(rows, 'cpu_ms_per_req'):.2f} | "
                         f"{sum(r['errors'] for r in rows)} |")
    md = "\n".join(lines)
    print(md)
    out = run.RESULTS / f"{stamp}-commits.json"
    out.write_text(json.dumps({"other": str(args.other), "other_env": args.other_env, "rounds": args.rounds,
                               "duration": args.duration,
                               "machine": run.machine(), "data": data, "table": md}, indent=2))
    run.log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
