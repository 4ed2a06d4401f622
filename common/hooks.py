"""Callbacks a lower layer calls and a higher one registers, so a dependency can point down.

An app that must let another act on its event (a sign-up, a balance change) calls a Hook; the app
above connects to it in its AppConfig.ready(). Unlike Django signals: synchronous and in order, held
strongly, and an exception reaches the caller, since a callback usually runs in the caller's
transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Hook:
    def __init__(self) -> None:
        self._callbacks: list[Callable[..., None]] = []

    def connect(self, callback: Callable[..., None]) -> Callable[..., None]:
        if callback not in self._callbacks:  # ready() runs again when a test reloads the apps
            self._callbacks.append(callback)
        return callback

    def __call__(self, **kwargs) -> None:
        for callback in self._callbacks:
            callback(**kwargs)


class Provider:
    """One function a lower layer calls and a higher one provides (in its AppConfig.ready()): a read of
    data the higher layer owns, such as the gateway's catalog or its admission counters."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._function: Callable[..., Any] | None = None

    def provide(self, function: Callable[..., Any]) -> Callable[..., Any]:
        self._function = function
        return function

    def __call__(self, *args, **kwargs) -> Any:
        if self._function is None:
            raise RuntimeError(f"{self.name} is not provided: its app is not installed or not ready")
        return self._function(*args, **kwargs)
