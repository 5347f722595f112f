"""The study folder: its lock, stale temporaries, cell fingerprints, validation before writing."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from advrobust.study import (
    AttackSpec,
    ConfigError,
    DataSpec,
    EvalSpec,
    ModelSpec,
    RecipeSpec,
    Shard,
    StudyConfig,
    StudyConfigMismatchError,
    StudyFolderBusyError,
    StudyResult,
    enumerate_cells,
    merge_studies,
    run_study,
)
from advrobust.study._folder import FolderLock, remove_stale_temporaries


@pytest.fixture
def live_pid() -> Iterator[int]:
    """The pid of a live process of this machine (killed afterwards)."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc.pid
    proc.kill()
    proc.wait()


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _hold(folder: Path, scope: str, pid: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".lock-{scope}"
    path.write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))
    return path


def test_study_lock_refuses_a_second_run_naming_folder_and_pid(
    tmp_path: Path, live_pid: int, make_config: Callable[..., StudyConfig]
) -> None:
    out = tmp_path / "busy"
    _hold(out, "all", live_pid)
    with pytest.raises(StudyFolderBusyError) as info:
        run_study(make_config(), out, progress=False, stream=None)
    message = str(info.value)
    assert str(out) in message and f"pid {live_pid}" in message and "--out" in message
    assert not (out / "study.json").exists()  # nothing written
    # a shard of the folder overlaps a whole run too, and the same shard overlaps itself
    for scope, shard in (("all", Shard(0, 2)), ("shard-1-of-2", Shard(1, 2))):
        lock = out / f".lock-{scope}"
        _hold(out, scope, live_pid)
        with pytest.raises(StudyFolderBusyError, match=f"pid {live_pid}"):
            FolderLock(out, shard).acquire()
        lock.unlink()


def test_study_lock_lets_shards_of_one_count_share_the_folder(
    tmp_path: Path, live_pid: int
) -> None:
    _hold(tmp_path, "shard-0-of-2", live_pid)
    with FolderLock(tmp_path, Shard(1, 2)) as lock:
        assert lock.path.is_file()
    assert not lock.path.exists()
    # shards of different counts cover the same cells
    with pytest.raises(StudyFolderBusyError):
        FolderLock(tmp_path, Shard(1, 3)).acquire()


def test_study_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    stale = _hold(tmp_path, "all", _dead_pid())
    with FolderLock(tmp_path, None) as lock:
        assert lock.path == stale
        assert json.loads(stale.read_text())["pid"] == os.getpid()
    assert not stale.exists()


def test_study_lock_waits_for_the_holder(tmp_path: Path, live_pid: int) -> None:
    lock = FolderLock(tmp_path, None, wait=0.3)
    _hold(tmp_path, "all", live_pid)
    with pytest.raises(StudyFolderBusyError, match="wait for it to finish"):
        lock.acquire()


def test_study_stale_temporaries_are_removed(tmp_path: Path) -> None:
    cell = tmp_path / "cells" / "n1"
    cell.mkdir(parents=True)
    dead = cell / f".cell.json.{_dead_pid()}.0123456789abcdef.tmp"
    live = cell / f".cell.json.{os.getpid()}.0123456789abcdef.tmp"
    partial = tmp_path / "cells" / ".n2.partial"
    for path in (dead, live):
        path.write_text("half")
    partial.mkdir()
    assert remove_stale_temporaries(tmp_path) == 2
    assert not dead.exists() and not partial.exists()
    assert live.exists()  # a live writer's file is kept


def test_study_foreign_cell_is_refused_on_load_and_on_merge(
    tiny: tuple[StudyConfig, StudyResult], tmp_path: Path
) -> None:
    config, result = tiny
    other = config.replace(seed=9)
    out = tmp_path / "other"
    one = other.replace(data=DataSpec(name="digits", sizes=(40,)), models=other.models[:1])
    run_study(one, out, progress=False, stream=None)
    # a cell of another config copied in, under a key this study also has
    key = enumerate_cells(one)[0].key
    shutil.rmtree(out / "cells" / key)
    shutil.copytree(result.out_dir / "cells" / key, out / "cells" / key)
    with pytest.raises(StudyConfigMismatchError) as info:
        run_study(one, out, progress=False, stream=None)
    assert str(out / "cells" / key) in str(info.value)
    assert "another config" in str(info.value)
    with pytest.raises(StudyConfigMismatchError, match=str(out / "cells" / key)):
        merge_studies([out], tmp_path / "merged", stream=None)
    assert not (tmp_path / "merged").exists()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        (
            {"recipes": (RecipeSpec("pgd", "pgd-at", {"attack": {"name": "PGD", "steps": -1}}),)},
            "recipes[0].settings.attack.steps",
        ),
        (
            {"recipes": (RecipeSpec("pgd", "pgd-at", {"epss": 1}),)},
            "recipes[0].settings.epss",
        ),
        (
            {"evaluation": EvalSpec(linf_attack=AttackSpec("BIM", {"steps": -1}))},
            "evaluation.linf_attack.kwargs.steps",
        ),
        (
            {"evaluation": EvalSpec(l2_attack=AttackSpec("cwl2", {"kappa": -1.0}))},
            "evaluation.l2_attack.kwargs.kappa",
        ),
        (
            {"models": (ModelSpec("mlp", {"hidden": -3}, label="m"),)},
            "models[0].kwargs.hidden",
        ),
    ],
)
def test_study_every_component_is_validated_before_anything_is_written(
    tmp_path: Path, make_config: Callable[..., StudyConfig], changes: dict[str, Any], field: str
) -> None:
    out = tmp_path / "o"
    with pytest.raises(ConfigError) as info:
        run_study(make_config(**changes), out, progress=False, stream=None)
    assert info.value.field == field
    assert not out.exists()  # the corrected config may use the same folder


def test_study_attack_names_are_read_through_the_registry() -> None:
    from advrobust.attacks import list_attacks

    assert AttackSpec("bim").name == "BIM"  # case-insensitive, stored as registered
    with pytest.raises(ConfigError) as info:
        AttackSpec("DeepFool")
    assert info.value.field == "name"
    assert ", ".join(list_attacks()) in str(info.value)


def test_study_folder_written_before_replicates_and_timings_still_resumes(
    tiny: tuple[StudyConfig, StudyResult], tmp_path: Path
) -> None:
    config, result = tiny
    out = tmp_path / "old"
    shutil.copytree(result.out_dir, out)
    for cell in enumerate_cells(config):
        path = out / "cells" / cell.key / "cell.json"
        record = json.loads(path.read_text())
        for key in ("replicate", "seed", "timings"):
            record.pop(key)  # what an older version wrote
        path.write_text(json.dumps(record))
    again = run_study(config, out, progress=False, stream=None)
    assert again.cells_run == [] and again.complete
    assert {r["replicate"] for r in again.rows} == {0}
    assert [r["value"] for r in again.rows] == [r["value"] for r in result.rows]
    assert again.timings == []  # no recorded times: an empty table, not an error
