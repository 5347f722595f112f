"""Atomic files and the study's state records.

Every file the study writes goes to a temporary file in the same folder, is flushed and fsynced,
and then moved over the target with :func:`os.replace`, so a crash leaves either the old or the
new file, never half of one (STYLE 3.5 #20/#21).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "load_arrays",
    "read_json",
    "save_arrays",
    "save_state_dict",
]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, ``os.replace``).

    The file gets the permissions of a plain ``open(path, "w")`` (``0o666`` minus the umask),
    not the owner-only mode of the temporary file, so collaborators can read a shared study.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if hasattr(os, "fchmod"):  # POSIX
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file, with an error naming the file when it is corrupt."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{path} is not valid JSON ({error}); delete it to redo that step"
        ) from None


def save_arrays(path: str | Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Save named numpy arrays to an ``.npz`` file atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]
    atomic_write_bytes(path, buffer.getvalue())


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Load an ``.npz`` file written by :func:`save_arrays` (no pickles)."""
    try:
        # (our own handle: numpy leaves the file open when it is not a zip archive)
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
        # (a truncated .npz is a BadZipFile, which is none of the others)
        raise ValueError(f"{path} is corrupt ({error}); delete it to redo that step") from None


def save_state_dict(path: str | Path, state: Mapping[str, torch.Tensor]) -> None:
    """Save a model ``state_dict`` atomically (load it with ``torch.load(weights_only=True)``)."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state.items()}, buffer)
    atomic_write_bytes(path, buffer.getvalue())
