"""Turning the command line's failures into one line that says what to do.

Every operating-system or user error of the ``advrobust`` command ends as a single line on
stderr, ``advrobust: error: ...``, and an exit status: 2 for a usage error (a bad option),
1 for a runtime error (a file, the disk, a missing optional package). Genuine bugs keep their
traceback. ``--traceback`` (or ``ADVROBUST_DEBUG=1``) re-raises everything for developers.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
from typing import NoReturn

__all__ = [
    "OPTIONAL_PACKAGES",
    "CLIError",
    "OneLineArgumentParser",
    "debug_requested",
    "error_message",
    "missing_packages",
    "one_line",
]

USAGE = 2
RUNTIME = 1

INSTALL_HINT = 'pip install "advrobust[study]"'

OPTIONAL_PACKAGES = {
    "matplotlib": "matplotlib",
    "sklearn": "scikit-learn",
    "tomli_w": "tomli-w",
    "tomli": "tomli",
    "PIL": "pillow",
}
"""The import names of the ``study`` extra's packages, with their distribution names."""


class CLIError(Exception):
    """A user error with its finished message and exit status (2 usage, 1 runtime)."""

    def __init__(self, message: str, status: int = RUNTIME) -> None:
        super().__init__(message)
        self.status = status


class OneLineArgumentParser(argparse.ArgumentParser):
    """An argument parser whose errors are one ``advrobust: error:`` line and exit status 2.

    argparse prints the usage block and then ``prog subcommand: error: ...``; a script reading
    stderr gets several lines. Here the error is one line that points at ``--help``.
    """

    def error(self, message: str) -> NoReturn:
        help_cmd = f"{self.prog} --help"
        self.exit(USAGE, f"advrobust: error: {one_line(message)}; see '{help_cmd}'\n")


def debug_requested(argv: list[str] | tuple[str, ...] | None = None) -> bool:
    """Whether tracebacks were asked for: ``--traceback`` or ``ADVROBUST_DEBUG=1``."""
    if os.environ.get("ADVROBUST_DEBUG", "").strip() not in ("", "0"):
        return True
    return "--traceback" in (sys.argv[1:] if argv is None else argv)


def one_line(text: str) -> str:
    """``text`` with its lines joined: ``a:`` / ``b`` / ``c`` on three lines -> ``a: b; c``."""
    parts = [line.strip() for line in str(text).splitlines() if line.strip()]
    out = ""
    for part in parts:
        if not out:
            out = part
        elif out.endswith((":", ";", ",", "(")) or out.endswith("."):
            out += " " + part
        else:
            out += "; " + part
    return out


def missing_packages(names: list[str]) -> list[str]:
    """The distribution names of the import names in ``names`` that cannot be imported."""
    import importlib

    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(OPTIONAL_PACKAGES.get(name, name))
    return missing


def _path(error: OSError) -> str:
    name = error.filename if error.filename is not None else error.filename2
    return str(name) if name is not None else "a file"


def _os_message(error: OSError) -> str:
    path = _path(error)
    code = error.errno
    if code == errno.ENOSPC or code == errno.EDQUOT:
        return (
            f"no space left on the device while writing {path}; free some space (or pass an "
            f"--out folder on another disk) and rerun the same command: finished work is kept"
        )
    if code in (errno.EACCES, errno.EPERM):
        return (
            f"permission denied for {path}; choose a folder you can write to (--out) or fix "
            f"its permissions, then rerun the same command"
        )
    if code == errno.EROFS:
        return (
            f"{path} is on a read-only file system; choose a writable --out folder and rerun "
            f"the same command"
        )
    if isinstance(error, NotADirectoryError) or code == errno.ENOTDIR:
        return (
            f"{path}: a file stands where a folder is needed; --out must name a folder "
            f"(new or holding a study), not a file"
        )
    if isinstance(error, IsADirectoryError) or code == errno.EISDIR:
        return f"{path} is a folder where a file is needed; pass the file itself"
    if isinstance(error, FileExistsError) or code == errno.EEXIST:
        return f"{path} already exists and is not a folder; --out must name a folder"
    if isinstance(error, FileNotFoundError) or code == errno.ENOENT:
        if error.filename is None and error.args:
            return str(error.args[0])
        return f"{path} does not exist; check the path"
    reason = error.strerror or str(error)
    return f"{path}: {reason}"


def error_message(error: BaseException) -> tuple[str, int] | None:
    """The one-line message and exit status for ``error``, or None for a genuine bug.

    Args:
        error: The exception a command raised.

    Returns:
        ``(message, status)`` without the ``advrobust: error:`` prefix, or None when the
        exception is not a user or operating-system error (the caller re-raises it).
    """
    if isinstance(error, CLIError):
        return one_line(str(error)), error.status
    if isinstance(error, ImportError):
        top = (getattr(error, "name", None) or "").split(".")[0]
        if top not in OPTIONAL_PACKAGES:  # e.g. a broken import inside advrobust: a bug
            return None
        package = OPTIONAL_PACKAGES[top]
        return (
            f"{package} is not installed (a plain `pip install advrobust` lacks the study "
            f"extras); run: {INSTALL_HINT}",
            RUNTIME,
        )
    if isinstance(error, OSError):
        # (FileNotFoundError raised by advrobust with its own message: keep the message)
        if error.errno is None and error.args:
            return one_line(str(error.args[0])), RUNTIME
        return _os_message(error), RUNTIME
    if isinstance(error, (ValueError, TypeError)):
        return one_line(str(error)), RUNTIME
    if isinstance(error, RuntimeError):
        text = str(error)
        # torch.save's writer reports a full disk as a RuntimeError
        if "PytorchStreamWriter failed writing" in text or "file write failed" in text:
            return (
                "could not write a file (is the disk full or the folder read-only?); free "
                "some space or choose another --out folder and rerun the same command: "
                "finished work is kept",
                RUNTIME,
            )
    return None
