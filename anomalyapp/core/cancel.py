"""Cooperative cancellation: the only primitive long jobs use to stop early."""

from __future__ import annotations

import threading


class Cancelled(Exception):
    """Raised inside a long job when its token has been cancelled."""


class CancelToken:
    """A thread-safe flag that a front end sets and a long job polls between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled")


def check(token: CancelToken | None) -> None:
    """Raise ``Cancelled`` if ``token`` is set; a ``None`` token never cancels."""
    if token is not None:
        token.raise_if_cancelled()
