"""Checkpoint files, written atomically through :mod:`advrobust._atomic`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .._atomic import atomic_open
from .._validate import describe

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "load_checkpoint",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "advrobust.training.checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file is corrupt, truncated, or not an advrobust training checkpoint."""


def _as_path(path: object, name: str = "path") -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {describe(path)}")
    return Path(path)


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically.

    The state is saved with :func:`torch.save` into a temporary file in the same directory,
    flushed and ``fsync``-ed, then moved over ``path`` with :func:`os.replace` (atomic on POSIX
    and Windows). A crash or an exception at any point leaves the previous file at ``path``
    intact and removes the temporary file. The saved dict is tagged with a format marker that
    :func:`load_checkpoint` checks.

    Args:
        path: destination file; its directory is created if needed.
        state: a mapping of ``state_dict``-style content: tensors, numbers, strings, lists,
            tuples and dicts of those (what ``torch.load(weights_only=True)`` accepts).

    Returns:
        The path written.

    Raises:
        TypeError: ``state`` is not a mapping or ``path`` not a path.
    """
    dest = _as_path(path)
    if not isinstance(state, Mapping):
        raise TypeError(f"state must be a mapping, got {describe(state)}")
    payload = dict(state)
    payload["format"] = CHECKPOINT_FORMAT
    payload["version"] = CHECKPOINT_VERSION
    with atomic_open(dest) as fh:
        torch.save(payload, fh)
    return dest


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device | None = None
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Args:
        path: the checkpoint file.
        map_location: passed to :func:`torch.load` (e.g. ``"cpu"``).

    Returns:
        The saved dict (with its ``format`` and ``version`` entries).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the file is truncated or corrupt, holds objects that are not allowed
            with ``weights_only=True``, or is not an advrobust training checkpoint.
    """
    src = _as_path(path)
    if not src.is_file():
        raise FileNotFoundError(f"checkpoint {str(src)!r} does not exist or is not a file")
    try:
        obj = torch.load(src, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ...
        raise CheckpointError(
            f"cannot read checkpoint {str(src)!r}: the file is corrupt, truncated or not a "
            f"weights-only torch file ({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{str(src)!r} is not an advrobust training checkpoint (no "
            f"format={CHECKPOINT_FORMAT!r} marker; got {describe(obj)})"
        )
    version = obj.get("version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(src)!r} has format version {version!r}; this advrobust reads "
            f"versions <= {CHECKPOINT_VERSION}"
        )
    return obj
