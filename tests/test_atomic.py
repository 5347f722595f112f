"""advrobust._atomic: whole-or-nothing writes and the cleanup of a killed writer's leftovers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from advrobust import _atomic
from advrobust._atomic import (
    atomic_torch_save,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    atomic_write_with,
    is_temporary,
    remove_stale_temporaries,
    temporary_name,
)


def test_atomic_writes_every_kind(tmp_path):
    atomic_write_bytes(tmp_path / "a" / "b.bin", b"\x00\x01")
    atomic_write_text(tmp_path / "t.csv", "x,y\n1,2\n")
    atomic_write_json(tmp_path / "j.json", {"a": [1, 2.5]})
    atomic_write_with(tmp_path / "w.bin", lambda fh: fh.write(b"via callback"))
    atomic_torch_save(tmp_path / "m.pt", {"w": torch.arange(3)})
    assert (tmp_path / "a" / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "t.csv").read_text() == "x,y\n1,2\n"
    assert json.loads((tmp_path / "j.json").read_text()) == {"a": [1, 2.5]}
    assert (tmp_path / "w.bin").read_bytes() == b"via callback"
    loaded = torch.load(tmp_path / "m.pt", weights_only=True)
    assert torch.equal(loaded["w"], torch.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "j.json", "m.pt", "t.csv", "w.bin"]


def test_atomic_file_mode_follows_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "f", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o640


def test_atomic_failure_keeps_previous_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "keep.txt"
    atomic_write_text(path, "old")

    def half(fh):
        fh.write(b"half of the new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write_with(path, half)
    with pytest.raises(TypeError):  # not JSON-serialisable: fails before the file is opened
        atomic_write_json(path, {"x": object()})
    with pytest.raises(ValueError):
        atomic_write_json(path, {"x": float("nan")}, allow_nan=False)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["keep.txt"]


def test_atomic_temporary_names_are_recognisable(tmp_path):
    name = temporary_name(tmp_path / "results.csv")
    assert name.startswith(".results.csv.") and name.endswith(".tmp")
    assert f".{os.getpid()}." in name and is_temporary(name)
    assert not is_temporary("results.csv") and not is_temporary(".results.csv.tmp")
    assert temporary_name("x") != temporary_name("x")


def _dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(proc.stdout)


def test_atomic_remove_stale_temporaries_only_of_dead_writers(tmp_path):
    dead = _dead_pid()
    stale = tmp_path / f".cell.json.{dead}.0123456789abcdef.tmp"
    mine = tmp_path / f".cell.json.{os.getpid()}.0123456789abcdef.tmp"
    nested = tmp_path / "sub" / f".m.pt.{dead}.fedcba9876543210.tmp"
    other = tmp_path / ".notes.tmp"  # not one of ours
    nested.parent.mkdir()
    for p in (stale, mine, nested, other):
        p.write_bytes(b"partial")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert mine.exists() and nested.exists() and other.exists()
    assert remove_stale_temporaries(tmp_path, recursive=True) == [nested]
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_atomic_module_is_private_helper():
    assert _atomic.__name__ == "advrobust._atomic"
