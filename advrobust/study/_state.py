"""The study's record files: JSON, numpy arrays and weights, written atomically.

Every file goes through :mod:`advrobust._atomic` (temporary file in the same folder, fsync,
``os.replace``), so a crash leaves either the old or the new file, never half of one.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from advrobust._atomic import atomic_write_bytes as atomic_write_bytes
from advrobust._atomic import atomic_write_json as atomic_write_json
from advrobust._atomic import atomic_write_text as atomic_write_text

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "load_arrays",
    "read_json",
    "save_arrays",
    "save_state_dict",
]


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
