"""Holding SIGINT (Ctrl-C) and SIGTERM back while a training step changes the trainer's state."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Generator
from types import FrameType
from typing import Any

__all__ = ["DEFERRED_SIGNALS", "DeferredInterrupt"]

#: The signals whose Python handlers wait for the end of a step: Ctrl-C, and SIGTERM, which a
#: scheduler sends on preemption or at its time limit (the advrobust CLI turns it into a
#: ``KeyboardInterrupt``, as Ctrl-C).
DEFERRED_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)

_Handler = Callable[[int, FrameType | None], Any]


class DeferredInterrupt:
    """Delays the Python handlers of SIGINT and SIGTERM while a training step commits.

    A ``KeyboardInterrupt`` (or any exception a handler raises) in the middle of a step (after
    the training forward has updated BatchNorm statistics, or right after ``optimizer.step()``,
    but before the step counters and the committed RNG state are advanced) would leave weights,
    buffers and counters out of step, and the checkpoint written on the interrupt could not
    continue exactly. Inside :meth:`critical` an arriving signal is recorded; when the section
    ends, the original handler is called with it (so Ctrl-C raises ``KeyboardInterrupt`` after
    the step, and the CLI's SIGTERM handler does the same). Outside a critical section the
    handler runs at once, as before.

    Only Python-level handlers (callables, including the default Ctrl-C handler) in the main
    thread are wrapped, and each is restored on exit. A signal whose disposition is the
    operating system's (``SIG_DFL``, e.g. a plain SIGTERM that kills the process, or
    ``SIG_IGN``) is left alone: Python code cannot run on it, so the last checkpoint written at
    an epoch boundary, which is atomic, is what a resume continues from.
    """

    def __init__(self) -> None:
        self._critical = False
        self._pending: list[tuple[_Handler, int]] = []
        self._installed: dict[int, _Handler] = {}

    def __enter__(self) -> DeferredInterrupt:
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in DEFERRED_SIGNALS:
            handler = signal.getsignal(sig)
            if callable(handler):
                self._installed[int(sig)] = handler
                signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._installed.items():
            if signal.getsignal(signum) == self._handle:  # not replaced by someone else since
                signal.signal(signum, handler)
        self._installed = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        handler = self._installed.get(signum)
        if handler is None:  # pragma: no cover - only installed handlers route here
            return
        if self._critical:
            if all(s != signum for _, s in self._pending):
                self._pending.append((handler, signum))
            return
        handler(signum, frame)

    @property
    def pending(self) -> bool:
        """Whether a signal arrived during the current critical section."""
        return bool(self._pending)

    @contextlib.contextmanager
    def critical(self) -> Generator[None, None, None]:
        """Run the body with SIGINT/SIGTERM deferred; deliver them to their handlers after it."""
        self._critical = True
        try:
            yield
        finally:
            self._critical = False
            pending, self._pending = self._pending, []
        for handler, signum in pending:
            handler(signum, None)
