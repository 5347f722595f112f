"""Atomic file writes shared by every layer (checkpoints, study records, merges, figures).

A file is written to a temporary file in the *same* folder, flushed and ``fsync``-ed, then moved
over the target with :func:`os.replace` (atomic on POSIX and Windows) and the folder is synced, so
a crash at any moment leaves either the old file or the new one, never half of one. The
temporary file is named ``.<name>.<pid>.<random>.tmp``: hidden, recognisable, and tied to the
process that wrote it, so :func:`remove_stale_temporaries` can delete what a killed writer left
behind without touching the file another live process is writing right now.

The target gets the permissions of a plain ``open(path, "w")`` (``0o666`` minus the umask), not
the owner-only mode that :func:`tempfile.mkstemp` uses, so collaborators can read shared results.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "TEMP_SUFFIX",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "atomic_write_with",
    "atomic_torch_save",
    "fsync_dir",
    "is_temporary",
    "remove_stale_temporaries",
    "temporary_name",
]

TEMP_SUFFIX = ".tmp"
# ".<target name>.<pid>.<16 hex digits>.tmp"
_TEMP_RE = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)\.(?P<rand>[0-9a-f]{16})\.tmp$")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temporary_name(target: str | os.PathLike[str]) -> str:
    """The file name of a fresh temporary file for ``target``: ``.<name>.<pid>.<rand>.tmp``."""
    return f".{Path(target).name}.{os.getpid()}.{secrets.token_hex(8)}{TEMP_SUFFIX}"


def is_temporary(name: str | os.PathLike[str]) -> bool:
    """Whether a file name has the form of one of this module's temporary files."""
    return _TEMP_RE.match(Path(name).name) is not None


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename inside ``directory`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Open a binary temporary file that replaces ``path`` when the block ends without error.

    The parent folder is created if needed. If the body raises (also ``KeyboardInterrupt``),
    the temporary file is removed and ``path`` keeps its previous content.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> with atomic_open(folder / "a.bin") as fh:
        ...     _ = fh.write(b"abc")
        >>> (folder / "a.bin").read_bytes()
        b'abc'
    """
    dest = Path(path)
    directory = dest.parent if str(dest.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / temporary_name(dest)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        with contextlib.suppress(OSError):
            os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(directory)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path written."""
    with atomic_open(path) as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` (UTF-8 by default) to ``path`` atomically (e.g. CSV, TOML, Markdown)."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(
    path: str | os.PathLike[str], data: Any, *, indent: int | None = 2, allow_nan: bool = True
) -> Path:
    """Write ``data`` as JSON (a trailing newline, keys in insertion order) atomically.

    The JSON is serialised before the file is opened, so data that cannot be encoded raises
    ``TypeError`` (or ``ValueError`` for a non-finite float with ``allow_nan=False``) and leaves
    the previous file untouched.
    """
    text = json.dumps(data, indent=indent, allow_nan=allow_nan) + "\n"
    return atomic_write_text(path, text)


def atomic_write_with(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(handle)`` on a binary temporary file, then move it over ``path``.

    For writers that want a file object, e.g. ``atomic_write_with(p, lambda f: fig.savefig(f,
    format="png"))`` for a matplotlib figure or ``lambda f: np.savez(f, **arrays)``.
    """
    with atomic_open(path) as handle:
        write(handle)
    return Path(path)


def atomic_torch_save(path: str | os.PathLike[str], obj: object) -> Path:
    """:func:`torch.save` ``obj`` to ``path`` atomically (serialised in memory first)."""
    import torch  # local: keeps this module importable without initialising torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but belongs to someone else, or cannot tell: keep the file
    return True


def remove_stale_temporaries(
    directory: str | os.PathLike[str], *, recursive: bool = False
) -> list[Path]:
    """Delete temporary files that a killed writer left in ``directory``.

    Only names of the form ``.<name>.<pid>.<rand>.tmp`` are considered, and only those whose
    writing process no longer runs on this machine (a file of a live process, including this
    one, is kept: it may be mid-write). Returns the removed paths, sorted.
    """
    root = Path(directory)
    if not root.is_dir():
        return []
    candidates = root.rglob(".*" + TEMP_SUFFIX) if recursive else root.glob(".*" + TEMP_SUFFIX)
    removed: list[Path] = []
    for path in candidates:
        match = _TEMP_RE.match(path.name)
        if match is None or not path.is_file() or _pid_alive(int(match["pid"])):
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return sorted(removed)
