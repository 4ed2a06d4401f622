"""The production launcher's limits for thousands of long streams (issue 18): how many connections a worker
takes, the listen queue, the open-files limit, and the upstream pool that follows the worker's connections."""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

import pytest

from gateway import serve
from tests.support.env import ROOT


def _args(server: str = "granian") -> argparse.Namespace:
    return argparse.Namespace(host="127.0.0.1", port=8000, workers=1, server=server)


def _flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_granian_is_given_the_connection_cap_and_the_listen_queue():
    argv = serve.server_argv(_args(), 3000, "35")
    # Granian's own default (backlog/workers = 1024) left the 1,025th stream in the kernel's queue.
    assert _flag(argv, "--backpressure") == "3000"
    assert _flag(argv, "--backlog") == str(serve.BACKLOG)
    assert argv[-1] == "config.asgi:application"


def test_uvicorn_gets_the_listen_queue_and_no_concurrency_limit():
    argv = serve.server_argv(_args("uvicorn"), 3000, "35")
    assert _flag(argv, "--backlog") == str(serve.BACKLOG)
    assert "--limit-concurrency" not in argv  # it would answer 503 above the cap instead of queueing


def test_the_default_cap_holds_two_thousand_streams_per_worker():
    assert serve.DEFAULT_WORKER_CONNECTIONS >= 2000


@pytest.mark.parametrize("requested, open_files, expected", [
    (4096, 1 << 20, 4096),      # enough descriptors: as asked
    (4096, 1024, (1024 - serve.RESERVED_FDS) // 2),  # a 1024 limit: what two descriptors a stream leave
    (10, 100, 1),               # never zero
])
def test_worker_connections_fit_the_open_files_limit(requested, open_files, expected):
    assert serve.worker_connections(requested, open_files) == expected


def _python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def test_the_soft_open_files_limit_is_raised_to_the_hard_one():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip("hard RLIMIT_NOFILE too low to lower the soft one below it")
    result = _python(
        "import resource\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "from gateway.serve import raise_open_files_limit\n"
        "raised = raise_open_files_limit()\n"
        "print(raised, resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)\n")
    assert result.returncode == 0, result.stderr
    raised, now, hard_seen = (int(v) for v in result.stdout.split())
    assert raised == now > 256
    if hard_seen != resource.RLIM_INFINITY:
        assert now == hard_seen


# The launcher's decision as the server would get it: os.execv is the hand-over to granian, so the child
# prints what it would have executed, and the environment the workers' settings would read.
_LAUNCH = (
    "import json, os, resource, sys\n"
    "limit = int(sys.argv[1])\n"
    "if limit:\n"
    "    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))\n"
    "def execv(path, argv):\n"
    "    print(json.dumps({'argv': argv, 'env': os.environ.get('GATEWAY_WORKER_CONNECTIONS')}))\n"
    "    sys.exit(0)\n"
    "os.execv = execv\n"
    "sys.argv = ['gateway.serve', '--port', '8123']\n"
    "from gateway import serve\n"
    "serve.main()\n"
)


def _launch(limit: int, **env) -> tuple[dict, str]:
    clean = {k: v for k, v in os.environ.items() if k != "GATEWAY_WORKER_CONNECTIONS"}
    result = subprocess.run([sys.executable, "-c", _LAUNCH, str(limit)], cwd=ROOT, capture_output=True, text=True,
                            env={**clean, **env})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def test_launcher_passes_the_cap_to_granian_and_to_the_workers_settings():
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 3000 * serve.FDS_PER_CONNECTION + serve.RESERVED_FDS:
        pytest.skip("hard RLIMIT_NOFILE too low for 3000 connections")
    launched, _ = _launch(0, GATEWAY_WORKER_CONNECTIONS="3000")
    assert _flag(launched["argv"], "--backpressure") == launched["env"] == "3000"


def test_launcher_lowers_the_cap_the_open_files_limit_cannot_hold_and_says_so():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1024:
        pytest.skip("hard RLIMIT_NOFILE below 1024")
    launched, stderr = _launch(1024)
    fits = str((1024 - serve.RESERVED_FDS) // serve.FDS_PER_CONNECTION)
    assert _flag(launched["argv"], "--backpressure") == launched["env"] == fits
    assert "GATEWAY_WORKER_CONNECTIONS=4096" in stderr and f"takes {fits} connections" in stderr


def test_launcher_names_a_bad_connection_cap():
    result = subprocess.run([sys.executable, "-m", "gateway.serve"], cwd=ROOT, capture_output=True, text=True,
                            env={**os.environ, "GATEWAY_WORKER_CONNECTIONS": "lots"})
    assert result.returncode != 0 and "GATEWAY_WORKER_CONNECTIONS must be a positive integer" in result.stderr


def _settings(**env) -> dict:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("DATABASE_URL", "REDIS_URL", "UPSTREAM_MAX_CONNECTIONS", "GATEWAY_WORKER_CONNECTIONS")}
    result = subprocess.run(
        [sys.executable, "-c", "import django, json; django.setup(); from django.conf import settings; "
         "print(json.dumps([settings.GATEWAY_WORKER_CONNECTIONS, settings.UPSTREAM_MAX_CONNECTIONS]))"],
        cwd=ROOT, env={**clean, "DJANGO_SETTINGS_MODULE": "config.settings", **env}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_upstream_pool_follows_the_workers_connections():
    # A stream holds its upstream connection for its whole life: a smaller pool queues streams behind streams.
    assert _settings() == [serve.DEFAULT_WORKER_CONNECTIONS, serve.DEFAULT_WORKER_CONNECTIONS]
    assert _settings(GATEWAY_WORKER_CONNECTIONS="700") == [700, 700]


def test_an_explicit_upstream_pool_size_still_wins():
    assert _settings(GATEWAY_WORKER_CONNECTIONS="700", UPSTREAM_MAX_CONNECTIONS="64") == [700, 64]
