"""The study folder: its state record, its lock, its cell records and their fingerprints.

Layout of an output folder::

    study.json            state record: config fingerprint, full config, library version
    config.toml           the config, human-readable
    .lock-<scope>         held while a run (or a shard of one) writes into the folder
    cells/<key>/          one folder per cell (subset size x model x recipe x replicate)
        model.json        create_model arguments (rebuild the model for the weights)
        checkpoints/      the trainer's resumable checkpoint while the cell trains
        model.pt          trained weights (state_dict), written when training finished
        training.json     how long training took
        eval-<task>.json|npz   one evaluation task's rows and per-example arrays
        per_example.npz   correctness and minimal distortions on the fixed evaluation sample
        cell.json         the cell's record, written last: its presence means "finished"
    groups/<key>/group.json   cross-model tasks (transfer matrices), written when finished
    results.csv, results.json, timings.csv, timings.json, figures/

Every record is written atomically; a rerun skips finished cells and refuses a folder that
holds another config, and a cell record whose config fingerprint is not the folder's.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ._config import StudyConfig, config_diff
from ._grid import Shard
from ._results import cell_dir
from ._state import atomic_write_json, atomic_write_text, read_json

__all__ = [
    "STATE",
    "FolderLock",
    "StudyConfigMismatchError",
    "StudyFolderBusyError",
    "cell_dir",
    "check_cell_record",
    "copy_folder_atomic",
    "load_state",
    "load_state_config",
    "prepare_out_dir",
    "remove_stale_temporaries",
    "write_state",
]

STATE = "study.json"
_FORMAT = 1


class StudyConfigMismatchError(ValueError):
    """The output folder (or a cell in it) holds a study with a different config."""


class StudyFolderBusyError(RuntimeError):
    """Another live process is writing the same cells into the output folder."""


# --------------------------------------------------------------------------------------------
# the state record


def prepare_out_dir(config: StudyConfig, out_dir: Path) -> None:
    """Create the folder's state record, or check that the recorded study is ``config``.

    Raises:
        StudyConfigMismatchError: the folder holds another study, or files but no state record.
    """
    state_path = out_dir / STATE
    if not state_path.is_file():
        # (hidden files: temporary files, locks of a shard creating the same folder)
        visible = (
            [p for p in out_dir.iterdir() if not p.name.startswith(".")] if out_dir.exists() else []
        )
        if not visible:
            write_state(config, out_dir)
            return
        if not state_path.is_file():  # (not just written by a shard sharing the folder)
            raise StudyConfigMismatchError(
                f"{out_dir} is not empty and holds no {STATE}; refusing to write a study into "
                f"it. Choose an empty or new --out folder."
            )
    state = load_state(out_dir)
    # compare the recorded config itself, so that a folder stays usable when what counts as
    # the identity changes between versions (the recorded fingerprint is informative)
    old = StudyConfig.from_dict(state["config"]) if "config" in state else None
    if old is None or old.fingerprint() != config.fingerprint():
        diffs = config_diff(old.identity(), config.identity()) if old else ["<unknown>"]
        shown = "\n  ".join(diffs[:12]) + ("\n  ..." if len(diffs) > 12 else "")
        raise StudyConfigMismatchError(
            f"{out_dir} already holds study {state.get('name')!r} with a different config; "
            f"refusing to mix results. Changed fields:\n  {shown}\n"
            f"Use another --out folder, or delete {out_dir} to start over."
        )


def write_state(config: StudyConfig, out_dir: Path) -> None:
    """Write ``study.json`` and ``config.toml`` (atomically)."""
    from advrobust import __version__

    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        out_dir / STATE,
        {
            "format": _FORMAT,
            "name": config.name,
            "fingerprint": config.fingerprint(),
            "advrobust": __version__,
            "config": config.to_dict(),
        },
    )
    atomic_write_text(out_dir / "config.toml", config.to_toml())


def load_state(out_dir: Path) -> dict[str, Any]:
    """The ``study.json`` record of a study folder (errors name the folder)."""
    path = Path(out_dir) / STATE
    if not path.is_file():
        raise FileNotFoundError(f"{out_dir} is not a study folder: {path} is missing")
    state = read_json(path)
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
        raise ValueError(f"{path} holds no study config; delete {out_dir} to start over")
    return state


def load_state_config(out_dir: Path) -> StudyConfig:
    """The study config recorded in a study folder."""
    return StudyConfig.from_dict(load_state(out_dir)["config"])


def accepted_fingerprints(config: StudyConfig, out_dir: Path) -> set[str]:
    """Fingerprints a cell of ``out_dir`` may record: today's, and the one ``study.json`` holds.

    (The recorded one was computed by the version that started the study; the definition of
    the fingerprint may have changed since, for the same config.)
    """
    out = {config.fingerprint()}
    path = Path(out_dir) / STATE
    if path.is_file():
        recorded = read_json(path).get("fingerprint")
        if isinstance(recorded, str):
            out.add(recorded)
    return out


def check_cell_record(folder: Path, record: Mapping[str, Any], accepted: set[str]) -> None:
    """Refuse a cell record written for another config (e.g. copied in from another study).

    Raises:
        StudyConfigMismatchError: naming the cell folder and saying what to do.
    """
    recorded = record.get("fingerprint")
    if recorded not in accepted:
        raise StudyConfigMismatchError(
            f"cell folder {folder} was written for another config (its cell.json records "
            f"fingerprint {str(recorded)[:12]}..., this study's is "
            f"{sorted(accepted)[0][:12]}...); refusing to mix results. Move that folder out "
            f"of the study (or delete it to redo the cell)."
        )


# --------------------------------------------------------------------------------------------
# the lock


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _overlaps(a: str, b: str) -> bool:
    """Whether two lock scopes (``all`` or ``shard-i-of-n``) may run the same cells."""
    if a == "all" or b == "all" or a == b:
        return True
    count_a, count_b = a.rsplit("-", 1)[1], b.rsplit("-", 1)[1]
    # shards of one count partition the grid; shards of different counts overlap
    return count_a != count_b


class FolderLock:
    """An advisory lock on a study folder for one run (or one shard of a run).

    Each run creates ``.lock-<scope>`` (``all`` or ``shard-i-of-n``) holding its pid and host,
    then looks at the other locks: a live holder whose scope overlaps (the whole grid, the same
    shard, or shards of another count) means another process would train the same cells, so
    this run refuses with a message naming the folder and the holder's pid, or waits up to
    ``wait`` seconds for it to finish. A lock whose process is dead (same host) is stale and
    is taken over. Shards of one count share a folder without refusing each other.
    """

    def __init__(self, out_dir: Path, shard: Shard | None, *, wait: float = 0.0) -> None:
        self.out_dir = Path(out_dir)
        self.scope = "all" if shard is None else f"shard-{shard.index}-of-{shard.count}"
        self.path = self.out_dir / f".lock-{self.scope}"
        self.wait = wait
        self._held = False

    def _holder(self, path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None  # vanished, or being written: look again
        return data if isinstance(data, dict) else None

    def _conflict(self) -> tuple[Path, dict[str, Any]] | None:
        host = socket.gethostname()
        for path in sorted(self.out_dir.glob(".lock-*")):
            scope = path.name[len(".lock-") :]
            if path == self.path or not _overlaps(self.scope, scope):
                continue
            holder = self._holder(path)
            if holder is None:
                continue
            pid = int(holder.get("pid", -1))
            if holder.get("host") == host and not _alive(pid):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()  # stale: its process died
                continue
            return path, holder
        return None

    def _create(self) -> bool:
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = self._holder(self.path)
            if holder is not None and holder.get("host") == socket.gethostname():
                pid = int(holder.get("pid", -1))
                if pid != os.getpid() and not _alive(pid):
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()  # stale: take it over
                    return self._create()
            return False
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(record, handle)
        return True

    def acquire(self) -> None:
        """Take the lock (waiting up to ``wait`` seconds); raise if another run holds it.

        Raises:
            StudyFolderBusyError: naming the folder, the holder's pid and what to do.
        """
        self.out_dir.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.wait
        while True:
            conflict: tuple[Path, dict[str, Any]] | None
            if self._create():
                conflict = self._conflict()
                if conflict is None:
                    self._held = True
                    return
                self.path.unlink()
            else:
                conflict = (self.path, self._holder(self.path) or {})
            if time.monotonic() >= deadline:
                path, holder = conflict
                raise StudyFolderBusyError(
                    f"{self.out_dir} is in use by another run (pid {holder.get('pid', '?')} on "
                    f"{holder.get('host', '?')}, lock {path.name}); wait for it to finish, or "
                    f"run another shard (--shard i/n) or into another --out folder"
                )
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))

    def release(self) -> None:
        """Drop the lock (no-op if not held)."""
        if self._held:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            self._held = False

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def remove_stale_temporaries(out_dir: Path) -> int:
    """Delete what killed writers left in a study folder; returns how many were removed.

    The temporary files of atomic writes whose process is dead
    (:func:`advrobust._atomic.remove_stale_temporaries`, the whole tree) and the
    ``.<name>.partial`` folders of merge copies that no live run owns (called under the
    folder lock, so no merge into this folder is running).
    """
    from advrobust._atomic import remove_stale_temporaries as remove_files

    if not out_dir.is_dir():
        return 0
    removed = len(remove_files(out_dir, recursive=True))
    for path in list(out_dir.glob("*/.*.partial")):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed


def copy_folder_atomic(src: Path, target: Path) -> None:
    """Copy a folder so that ``target`` appears whole or not at all.

    A crash mid-copy leaves only a hidden ``.<name>.partial`` folder, redone by the next merge.
    """
    partial = target.with_name(f".{target.name}.partial")
    if partial.exists():
        shutil.rmtree(partial)
    shutil.copytree(src, partial)
    if target.exists():  # an unfinished run of the same cell: the finished copy wins
        shutil.rmtree(target)
    os.replace(partial, target)


@contextlib.contextmanager
def locked(out_dir: Path, shard: Shard | None, *, enabled: bool = True) -> Iterator[None]:
    """Hold the folder lock of ``shard`` for the block (no-op when ``enabled`` is false)."""
    if not enabled:
        yield
        return
    with FolderLock(out_dir, shard):
        yield
