"""Production server launcher: `python -m gateway.serve [--host H] [--port P] [--workers N]`.

Granian (Rust HTTP front, uvloop) was chosen by measurement over uvicorn and daphne; see
docs/performance.md. `--server uvicorn` needs the bench extra (`pip install -e ".[bench]"`).
WEB_CONCURRENCY sets the worker count (one process per core is typical).

On SIGTERM the server stops accepting, lets open requests and streams finish, runs the ASGI lifespan
shutdown (config/asgi.py: the usage writer and the spool are flushed) and exits. A request or stream
still open after SHUTDOWN_GRACE_SECONDS is cut by the worker itself, which records its usage
(gateway/shutdown.py), so a stuck stream cannot hold a rollout up; the server kills a worker still
running SETTLE_SECONDS after that.

With METRICS_TOKEN set, the workers share a Prometheus multiprocess directory (PROMETHEUS_MULTIPROC_DIR,
a fresh temporary one when unset), emptied here, once, before they start: see gateway/metrics.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from .shutdown import DEFAULT_GRACE_SECONDS, GRACE_ENV, SETTLE_SECONDS


def _env_count(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip() or str(default)
    if not value.isdigit() or int(value) < 1:
        sys.exit(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def prepare_metrics_dir(path: str) -> None:
    """Create the multiprocess directory, or empty it of a previous run's files (whose counts and dead
    processes' gauges would otherwise be summed in)."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=_env_count("PORT", 8000))
    parser.add_argument("--workers", type=int, default=_env_count("WEB_CONCURRENCY", 1))
    parser.add_argument("--server", choices=("granian", "uvicorn"), default=os.environ.get("GATEWAY_SERVER", "granian"))
    args = parser.parse_args()
    # The workers cut what is still open at the grace (gateway.shutdown); the server's kill comes after.
    kill_timeout = str(_env_count(GRACE_ENV, DEFAULT_GRACE_SECONDS) + SETTLE_SECONDS)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    if os.environ.get("METRICS_TOKEN", "").strip() and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="gatehouse-metrics-")
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        prepare_metrics_dir(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    if args.server == "granian":
        argv = [sys.executable, "-m", "granian", "--interface", "asgi", "--host", args.host, "--port", str(args.port),
                "--workers", str(args.workers), "--loop", "uvloop", "--workers-kill-timeout", kill_timeout,
                "config.asgi:application"]
        static_root = Path(__file__).resolve().parent.parent / "var" / "static"
        if static_root.is_dir():  # filled by `manage.py collectstatic`: the admin's CSS and JS
            argv[3:3] = ["--static-path-route", "/static", "--static-path-mount", str(static_root)]
    else:
        argv = [sys.executable, "-m", "uvicorn", "--host", args.host, "--port", str(args.port), "--workers", str(args.workers),
                "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--lifespan", "on",
                "--timeout-graceful-shutdown", kill_timeout,
                "config.asgi:application"]
    os.execv(sys.executable, argv)


if __name__ == "__main__":
    main()
