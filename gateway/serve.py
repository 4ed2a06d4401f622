"""Production server launcher: `python -m gateway.serve [--host H] [--port P] [--workers N]`.

Granian (Rust HTTP front, uvloop) was chosen by measurement over uvicorn and daphne; see
docs/performance.md. `--server uvicorn` needs the bench extra (`pip install -e ".[bench]"`).
WEB_CONCURRENCY sets the worker count (one process per core is typical).

On SIGTERM the server stops accepting, lets open requests and streams finish, runs the ASGI lifespan
shutdown (config/asgi.py: the usage writer and the spool are flushed) and exits. A request or stream
still open after SHUTDOWN_GRACE_SECONDS is cut by the worker itself, which records its usage
(gateway/shutdown.py), so a stuck stream cannot hold a rollout up; the server kills a worker still
running SETTLE_SECONDS after that.

Long streams (issue 18): every open stream holds its client connection, an upstream connection and two file
descriptors for its whole life. GATEWAY_WORKER_CONNECTIONS (below) is how many connections a worker takes;
the upstream pool (UPSTREAM_MAX_CONNECTIONS, config/settings.py) follows it, and the soft open-files limit
is raised to the hard one so the descriptors are there (the cap is lowered, with a warning, if they are not).

With METRICS_TOKEN set, the workers share a Prometheus multiprocess directory (PROMETHEUS_MULTIPROC_DIR,
a fresh temporary one when unset), emptied here, once, before they start: see gateway/metrics.py.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
from pathlib import Path

from .shutdown import DEFAULT_GRACE_SECONDS, GRACE_ENV, SETTLE_SECONDS


# Connections one worker accepts (granian's --backpressure, which counts connections, idle keep-alive ones
# included, not requests). Granian's own default is backlog/workers = 1024: measured on main (issue 18) the
# 1,025th concurrent stream was not accepted but left in the listen queue until a whole stream ended, so at
# 2,000 concurrent 5 s streams a client waited 6.7 s (p50) to 39.6 s (p99) for its first token (with the
# 512-connection upstream pool, config/settings.py). A connection costs ~100 KB of worker memory when it is a stream (bench/streams.py:
# RSS at N open streams), so 4096 is ~400 MB at most per worker; CPU, not this cap, is what should limit a
# worker, and a connection that is accepted at least shares the loop with the others instead of waiting
# whole seconds in the kernel.
WORKER_CONNECTIONS_ENV = "GATEWAY_WORKER_CONNECTIONS"
DEFAULT_WORKER_CONNECTIONS = 4096
# The listen queue, for bursts of new connections (granian's default is 1024). Linux silently caps it at
# net.core.somaxconn (4096 since 5.4).
BACKLOG = 4096
# Descriptors a connection can hold: its socket and its upstream connection's. RESERVED_FDS are the
# worker's others (database, Redis, logs, the interpreter's files, the metrics directory).
FDS_PER_CONNECTION = 2
RESERVED_FDS = 256


def raise_open_files_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one (the server and its workers inherit it through exec and
    fork) and return it. Many systems start services with a soft limit of 1024, which at two descriptors per
    stream would refuse the ~500th concurrent stream (EMFILE) however high the hard limit is."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):  # e.g. a hard limit above fs.nr_open: keep what we have
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def worker_connections(requested: int, open_files: int) -> int:
    """The connections a worker may take: `requested`, or fewer if the open-files limit cannot hold them."""
    fits = max(1, (open_files - RESERVED_FDS) // FDS_PER_CONNECTION)
    return min(requested, fits)


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
    requested = _env_count(WORKER_CONNECTIONS_ENV, DEFAULT_WORKER_CONNECTIONS)
    open_files = raise_open_files_limit()
    connections = worker_connections(requested, open_files)
    if connections < requested:
        print(f"gateway.serve: {WORKER_CONNECTIONS_ENV}={requested} needs {requested * FDS_PER_CONNECTION + RESERVED_FDS} "
              f"open files, the limit is {open_files}: each worker takes {connections} connections", file=sys.stderr)
    # The workers' settings read it back: the upstream pool's default size (config/settings.py).
    os.environ[WORKER_CONNECTIONS_ENV] = str(connections)
    os.execv(sys.executable, server_argv(args, connections, kill_timeout))


def server_argv(args: argparse.Namespace, connections: int, kill_timeout: str) -> list[str]:
    if args.server == "granian":
        argv = [sys.executable, "-m", "granian", "--interface", "asgi", "--host", args.host, "--port", str(args.port),
                "--workers", str(args.workers), "--loop", "uvloop", "--workers-kill-timeout", kill_timeout,
                "--backlog", str(BACKLOG), "--backpressure", str(connections),
                "config.asgi:application"]
        static_root = Path(__file__).resolve().parent.parent / "var" / "static"
        if static_root.is_dir():  # filled by `manage.py collectstatic`: the admin's CSS and JS
            argv[3:3] = ["--static-path-route", "/static", "--static-path-mount", str(static_root)]
        return argv
    # uvicorn (the bench's comparison): --limit-concurrency would answer 503 above the cap rather than queue,
    # so only the listen queue is set.
    return [sys.executable, "-m", "uvicorn", "--host", args.host, "--port", str(args.port), "--workers", str(args.workers),
            "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--lifespan", "on",
            "--timeout-graceful-shutdown", kill_timeout, "--backlog", str(BACKLOG),
            "config.asgi:application"]


if __name__ == "__main__":
    main()
