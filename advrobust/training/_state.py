"""Trainer state helpers: RNG state capture/restore, checkpoint fit checks, Ctrl-C deferral."""

from __future__ import annotations

import contextlib
import random
import signal
import threading
from collections.abc import Generator, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ._checkpoint import CheckpointError

__all__ = [
    "DeferredInterrupt",
    "check_state_dict_fits",
    "derive_seed",
    "get_rng_state",
    "set_rng_state",
]


def derive_seed(seed: int, stream: str, rank: int = 0) -> int:
    """An independent 63-bit seed for one random stream of one rank."""
    words = [seed, rank, *stream.encode()]
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0] >> 1)


class DeferredInterrupt:
    """Holds Ctrl-C (SIGINT) back while a training step changes the trainer's state.

    A ``KeyboardInterrupt`` raised in the middle of a step (after the training forward has
    updated BatchNorm statistics, or during ``optimizer.step()``, but before the step counters
    are advanced) would leave weights, buffers and counters out of step, and the checkpoint
    written on Ctrl-C could not continue exactly. Inside :meth:`critical` the interrupt is
    recorded and raised when the section ends. Only Python's default SIGINT handler in the
    main thread is replaced (and restored on exit); custom handlers are left alone.
    """

    def __init__(self) -> None:
        self._critical = False
        self._pending = False
        self._installed = False

    def __enter__(self) -> DeferredInterrupt:
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self._installed = False

    def _handle(self, signum: int, frame: object) -> None:
        if self._critical:
            self._pending = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def critical(self) -> Generator[None, None, None]:
        """Run the body with SIGINT deferred; raise ``KeyboardInterrupt`` after it if one came."""
        self._critical = True
        try:
            yield
        finally:
            self._critical = False
        if self._pending:
            self._pending = False
            raise KeyboardInterrupt


# ---------------------------------------------------------------------------- RNG state
def get_rng_state(generator: torch.Generator) -> dict[str, Any]:
    np_state: Any = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": random.getstate(),
        "generator": generator.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"].cpu())
    npst = state["numpy"]
    np.random.set_state(
        (
            npst["kind"],
            npst["keys"].numpy().astype(np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    generator.set_state(state["generator"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def check_state_dict_fits(model: nn.Module, sd: Mapping[str, Any], path: str) -> None:
    """Raise before touching the model if ``sd`` does not match its keys and shapes."""
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    wrong = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in sd and isinstance(sd[k], Tensor) and sd[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}")
        if wrong:
            parts.append(f"shape mismatches {wrong[:3]}")
        raise CheckpointError(f"checkpoint {path!r} does not fit this model: " + "; ".join(parts))
