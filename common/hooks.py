"""Callbacks a lower layer calls and a higher one registers, so a dependency can point down.

An app that must let another act on its event (a sign-up, a balance change) calls a Hook; the app
above connects to it in its AppConfig.ready(). Unlike Django signals: synchronous and in order, held
strongly, and an exception reaches the caller, since a callback usually runs in the caller's
transaction.
"""

from __future__ import annotations

from collections.abc import Callable


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
