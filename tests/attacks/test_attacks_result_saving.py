"""Saved AttackResults load, also those written when the class lived in ``attacks._base``."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from advrobust.attacks import AttackResult

_OLD_MODULE = "advrobust.attacks._base"


def _result() -> AttackResult:
    return AttackResult(
        x_adv=torch.tensor([[0.25, 0.5], [0.75, 1.0]]),
        success=torch.tensor([True, False]),
        adv_pred=torch.tensor([2, 0]),
        l2=torch.tensor([0.5, 0.0]),
        linf=torch.tensor([0.25, 0.0]),
        y=torch.tensor([1, 0]),
        target=torch.tensor([2, 2]),
    )


def _pickled_class_path(path: Path) -> bytes:
    """The pickle stream of a ``torch.save`` file (its ``data.pkl`` member)."""
    with zipfile.ZipFile(path) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith("/data.pkl")]
        return archive.read(name)


def _save_as_before_the_move(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # pickle names a class by its __module__; the old module still exposes the class, so
    # pickle accepts the old name, exactly as files written before the move have it
    monkeypatch.setattr(AttackResult, "__module__", _OLD_MODULE)
    torch.save(_result(), path)
    monkeypatch.undo()


def _assert_same(loaded: object) -> None:
    assert type(loaded) is AttackResult
    want = _result().to_dict()
    got = loaded.to_dict()
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert isinstance(value, torch.Tensor)
        assert torch.equal(got[key], value), key


def test_new_files_name_the_result_module(tmp_path: Path) -> None:
    path = tmp_path / "new.pt"
    torch.save(_result(), path)
    data = _pickled_class_path(path)
    assert b"advrobust.attacks._result\nAttackResult" in data
    _assert_same(torch.load(path, weights_only=True))


def test_file_naming_the_old_module_loads_with_weights_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.pt"
    _save_as_before_the_move(path, monkeypatch)
    assert AttackResult.__module__ == "advrobust.attacks._result"
    data = _pickled_class_path(path)
    assert b"advrobust.attacks._base\nAttackResult" in data
    assert b"advrobust.attacks._result" not in data
    _assert_same(torch.load(path, weights_only=True))
    _assert_same(torch.load(path))  # torch's default is weights_only=True
    _assert_same(torch.load(path, weights_only=False))  # the plain unpickler imports _base


def test_the_old_path_loads_because_it_is_marked_safe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the ``(AttackResult, old path)`` entry the weights-only load refuses the file."""
    path = tmp_path / "old.pt"
    _save_as_before_the_move(path, monkeypatch)
    before = torch.serialization.get_safe_globals()
    try:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals([AttackResult])
        with pytest.raises(pickle.UnpicklingError, match=r"advrobust\.attacks\._base"):
            torch.load(path, weights_only=True)
    finally:
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(before)
    _assert_same(torch.load(path, weights_only=True))
