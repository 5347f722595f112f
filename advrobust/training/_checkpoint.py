"""Checkpoint files: validated, checksummed, written atomically through :mod:`advrobust._atomic`.

A checkpoint is a :func:`torch.save` file of a dict tagged with a format marker and a version,
plus a ``checksum`` entry: the SHA-256 of a canonical encoding of everything else in the dict
(every tensor's dtype, shape and raw bytes, every number, string and container, in order).
:func:`load_checkpoint` recomputes it after the weights-only load, so bytes flipped inside
tensor data, which torch's zip container does not notice, are refused instead of loading as
silently corrupted weights. The digest is over the *content*, not the file's bytes, so it lives
inside the same file (one atomic write, no sidecar that could disagree with it) and the file
stays a plain weights-only torch file that ``torch.load(path, weights_only=True)`` reads.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._atomic import atomic_write_bytes
from .._validate import describe

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "content_digest",
    "load_checkpoint",
    "save_checkpoint",
]

CHECKPOINT_FORMAT = "advrobust.training.checkpoint"
# Version 1 files may lack the "checksum" entry (written before checksums were added): they
# load unverified, with a warning. Readers of version 1 ignore the extra entry.
CHECKPOINT_VERSION = 1
_CHECKSUM_KEY = "checksum"
_RESERVED = ("format", "version", _CHECKSUM_KEY)


class CheckpointError(ValueError):
    """A checkpoint file is corrupt, truncated, or not an advrobust training checkpoint."""


def _as_path(path: object, name: str = "path") -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {describe(path)}")
    return Path(path)


# ---------------------------------------------------------------------------- content digest
_SCALARS = (bool, int, float, complex, str, bytes, type(None), torch.dtype, torch.device)


def _feed(h: Any, obj: object, where: str) -> None:
    """Feed a canonical, type-tagged encoding of ``obj`` to the hash ``h``.

    Raises ``TypeError`` naming ``where`` for anything a weights-only load would refuse (or
    that has no stable encoding).
    """

    def tag(t: bytes, payload: bytes = b"") -> None:
        h.update(t + struct.pack("<Q", len(payload)) + payload)

    if isinstance(obj, Tensor):
        t = obj.detach()
        if t.layout != torch.strided:
            t = t.to_dense()
        if t.is_quantized or t.device.type == "meta":
            raise TypeError(
                f"{where} is a {'quantized' if t.is_quantized else 'meta'} tensor, which a "
                f"checkpoint cannot hold (save its float values instead)"
            )
        t = t.resolve_conj().resolve_neg().cpu().contiguous()
        tag(b"X", f"{t.dtype}|{tuple(t.shape)}".encode())
        raw = t.reshape(-1).view(torch.uint8) if t.numel() else torch.empty(0, dtype=torch.uint8)
        h.update(raw.numpy())  # the buffer itself, no copy
    elif isinstance(obj, Mapping):
        tag(b"M", str(len(obj)).encode())
        for key, value in obj.items():
            if type(key) not in _SCALARS or isinstance(key, (torch.dtype, torch.device)):
                raise TypeError(f"{where} has a key of type {type(key).__name__}: {key!r}")
            _feed(h, key, where)
            _feed(h, value, f"{where}[{key!r}]")
    elif isinstance(obj, (list, tuple)):
        tag(b"L" if isinstance(obj, list) else b"T", str(len(obj)).encode())
        for i, value in enumerate(obj):
            _feed(h, value, f"{where}[{i}]")
    elif isinstance(obj, (set, frozenset)):
        parts = []  # unordered: hash each element, then the sorted element digests
        for value in obj:
            sub = hashlib.sha256()
            _feed(sub, value, f"{where} element")
            parts.append(sub.digest())
        tag(b"E", b"".join(sorted(parts)))
    elif type(obj) is bool:
        tag(b"?", b"1" if obj else b"0")
    elif type(obj) is int:  # exact: numpy scalars subclass float and int
        tag(b"I", str(obj).encode())
    elif type(obj) is float:  # exact: numpy scalars subclass float and int
        tag(b"F", struct.pack("<d", obj))
    elif type(obj) is complex:
        tag(b"C", struct.pack("<dd", obj.real, obj.imag))
    elif type(obj) is str:
        tag(b"S", obj.encode("utf-8", "surrogatepass"))
    elif type(obj) is bytes:
        tag(b"B", obj)
    elif obj is None:
        tag(b"N")
    elif isinstance(obj, (torch.dtype, torch.device)):
        tag(b"D", f"{type(obj).__name__}:{obj}".encode())
    else:
        raise TypeError(
            f"{where} is {describe(obj)}, which a weights-only load refuses; store tensors, "
            f"numbers, strings, lists, tuples and dicts only (e.g. float(x) for a numpy scalar, "
            f"torch.as_tensor(a) for an array)"
        )


def content_digest(state: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical encoding of ``state`` without its reserved entries.

    Raises:
        TypeError: ``state`` holds something a weights-only load refuses; the message names
            where (e.g. ``state['optimizer']['param_groups'][0]['lr']``).
    """
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k not in _RESERVED}, "state")
    return h.hexdigest()


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically.

    The state is checked (only what ``torch.load(weights_only=True)`` accepts), tagged with a
    format marker and the SHA-256 :func:`content_digest` of its content, serialised with
    :func:`torch.save`, read back to prove that :func:`load_checkpoint` will accept it, and
    only then written to a temporary file in the same directory, flushed, ``fsync``-ed and
    moved over ``path`` with :func:`os.replace` (atomic on POSIX and Windows). A crash or an
    exception at any point leaves the previous file at ``path`` intact and removes the
    temporary file.

    Args:
        path: destination file; its directory is created if needed.
        state: a mapping of ``state_dict``-style content: tensors, numbers, strings, lists,
            tuples and dicts of those (what ``torch.load(weights_only=True)`` accepts).

    Returns:
        The path written.

    Raises:
        TypeError: ``state`` is not a mapping with string keys, holds an object a weights-only
            load refuses (the message names the entry), or ``path`` is not a path.
    """
    dest = _as_path(path)
    if not isinstance(state, Mapping):
        raise TypeError(f"state must be a mapping, got {describe(state)}")
    bad_keys = [k for k in state if not isinstance(k, str)]
    if bad_keys:
        raise TypeError(f"state keys must be strings, got {bad_keys[:5]}")
    payload = {k: v for k, v in state.items() if k not in _RESERVED}
    digest = content_digest(payload)  # TypeError naming the entry a load would refuse
    payload["format"] = CHECKPOINT_FORMAT
    payload["version"] = CHECKPOINT_VERSION
    payload[_CHECKSUM_KEY] = {"sha256": digest}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    # What is written must be what load_checkpoint accepts: read it back (weights-only) and
    # check the digest before anything touches the disk.
    try:
        back = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TypeError(
            f"state cannot be saved to {str(dest)!r}: a weights-only load would refuse it "
            f"({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc
    if content_digest(back) != digest:
        raise ValueError(
            f"state cannot be saved to {str(dest)!r}: it does not read back identically "
            f"(an object whose saved form differs from itself)"
        )
    atomic_write_bytes(dest, data)
    return dest


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device | None = None
) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Args:
        path: the checkpoint file.
        map_location: passed to :func:`torch.load` (e.g. ``"cpu"``).

    The content is checked against the SHA-256 digest stored at save time. A file from an
    advrobust release before checksums existed (no ``checksum`` entry) still loads, with a
    ``UserWarning`` that it is unverified: refusing it would strand every run in progress, and
    saving it again (e.g. by resuming and training on) adds the checksum.

    Returns:
        The saved dict (with its ``format``, ``version`` and ``checksum`` entries).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: the file is truncated or corrupt, its content does not match its
            checksum (flipped bytes), it holds objects that are not allowed with
            ``weights_only=True``, or it is not an advrobust training checkpoint.
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
    stored = obj.get(_CHECKSUM_KEY)
    if stored is None:
        warnings.warn(
            f"checkpoint {str(src)!r} has no checksum (written by an older advrobust); it is "
            f"loaded unverified, and saving it again adds one",
            UserWarning,
            stacklevel=2,
        )
        return obj
    expected = stored.get("sha256") if isinstance(stored, dict) else None
    if not isinstance(expected, str):
        raise CheckpointError(f"checkpoint {str(src)!r} has a malformed checksum entry {stored!r}")
    try:
        actual = content_digest(obj)
    except TypeError as exc:
        raise CheckpointError(f"checkpoint {str(src)!r} holds unexpected content: {exc}") from exc
    if actual != expected:
        raise CheckpointError(
            f"checkpoint {str(src)!r} fails its checksum (SHA-256 of the content is "
            f"{actual[:16]}..., the file says {expected[:16]}...): its data changed after it "
            f"was written (a damaged disk or copy). Its weights cannot be trusted: restore "
            f"the file from a copy, or delete it to train from the start"
        )
    return obj
