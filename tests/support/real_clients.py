"""Running the real npm clients (Claude Code, Codex CLI, the Vercel AI SDK) against the gateway.

`scripts/install-clients` installs them (tests/clients/package-lock.json) and links
tests/clients/node_modules; without that the client tests skip, saying so. Each run gets a fresh HOME
(and its own config directory), so nothing of the machine's own client configuration is used, and a
minimal environment: no key or base URL of the developer's reaches the client.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from billing.models import UsageEvent
from tests.support.env import ROOT

CLIENTS = ROOT / "tests" / "clients"
INSTALL = "the npm clients are not installed: run scripts/install-clients"


def client_bin(name: str) -> str:
    """The installed client's executable (`claude`, `codex`), or a skip saying how to install it."""
    path = CLIENTS / "node_modules" / ".bin" / name
    if not path.exists():
        pytest.skip(INSTALL)
    return str(path)


def node_script(name: str) -> list[str]:
    """`node tests/clients/<name>` (an ES module importing the installed SDK), or a skip."""
    if not (CLIENTS / "node_modules" / "ai").exists():
        pytest.skip(INSTALL)
    return ["node", str(CLIENTS / name)]


def run_client(argv: list[str], *, home: Path, env: dict[str, str], cwd: Path | None = None,
               timeout: float = 180) -> subprocess.CompletedProcess:
    """`argv` with HOME=`home`, PATH and `env` only; fails the test on a non-zero exit, showing its output."""
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8", **env}
    result = subprocess.run(argv, cwd=cwd or home, env=clean, capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"{argv[0]} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def upstream_log(fake: str, since: int = 0) -> list[dict]:
    return httpx.get(f"{fake}/_fake/requests", params={"since": since}).json()


def last_seq(fake: str) -> int:
    entries = upstream_log(fake)
    return entries[-1]["seq"] if entries else 0


def usage_rows(api_key, count: int, *, timeout: float = 10.0) -> list[UsageEvent]:
    """The key's usage rows, oldest first, once there are `count` (rows are written after the answer)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = list(UsageEvent.objects.filter(api_key=api_key).order_by("created_at", "id"))
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)
