"""``jobs``: cells in parallel worker processes give the very same study as one process."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from advrobust.study import ConfigError, StudyConfig, StudyResult, _parallel, run_study
from advrobust.study._cli import main
from advrobust.study._grid import enumerate_cells

from .conftest import tiny_config


def _same_study(a: Path, b: Path) -> None:
    """Equal tables and equal per-example arrays, cell by cell."""
    ra = json.loads((a / "results.json").read_text())
    rb = json.loads((b / "results.json").read_text())
    assert ra == rb
    cells = sorted(p.name for p in (a / "cells").iterdir())
    assert cells == sorted(p.name for p in (b / "cells").iterdir())
    for key in cells:
        pa, pb = a / "cells" / key / "per_example.npz", b / "cells" / key / "per_example.npz"
        with np.load(pa) as x, np.load(pb) as y:
            assert sorted(x.files) == sorted(y.files)
            for name in x.files:
                np.testing.assert_array_equal(x[name], y[name], err_msg=f"{key}: {name}")
        wa = torch.load(a / "cells" / key / "model.pt", weights_only=True)
        wb = torch.load(b / "cells" / key / "model.pt", weights_only=True)
        assert all(torch.equal(wa[k], wb[k]) for k in wa), key


def test_study_jobs_two_workers_give_the_sequential_study(
    tiny: tuple[StudyConfig, StudyResult], tmp_path: Path
) -> None:
    config, result = tiny
    parallel = run_study(config.replace(jobs=2), tmp_path / "p", progress=False, stream=None)
    assert parallel.complete
    assert parallel.cells_run == result.cells_run  # reported in grid order
    _same_study(result.out_dir, tmp_path / "p")
    # the figures, three of four drawn by the workers: the same files (PNG: the same pixels)
    assert [p.name for p in parallel.figures] == [p.name for p in result.figures]
    for a, b in zip(result.figures, parallel.figures, strict=True):
        assert b.is_file() and b.stat().st_size > 0
        if a.suffix == ".png":
            assert a.read_bytes() == b.read_bytes(), a.name
    # jobs is not part of the identity: the folder resumes with any jobs (nothing left to do)
    again = run_study(config.replace(jobs=1), tmp_path / "p", progress=False, stream=None)
    assert again.cells_run == [] and len(again.cells_skipped) == len(result.cells_run)
    assert config.replace(jobs=2).fingerprint() == config.fingerprint()
    assert "jobs" not in config.to_dict()  # (the default is left out, as before jobs existed)
    assert StudyConfig.from_toml(config.replace(jobs="auto").to_toml()).jobs == "auto"


def test_study_jobs_resume_a_partial_folder_and_a_failing_worker(
    tiny: tuple[StudyConfig, StudyResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, result = tiny
    out = tmp_path / "partial"
    first = run_study(config, out, shard="0/2", progress=False, stream=None)
    # a cell that fails in its worker fails the run with the worker's own error
    from advrobust.study import _cell

    original = _cell.run_cell
    cells = enumerate_cells(config)
    doomed = next(c.key for c in cells if c.key not in first.cells_run)

    def failing(config: StudyConfig, cell: object, *args: object) -> None:
        if getattr(cell, "key", None) == doomed:
            raise RuntimeError(f"boom in {doomed}")
        original(config, cell, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(_cell, "run_cell", failing)
    method = _parallel._start_method(torch.device("cpu")) or multiprocessing.get_start_method()
    if method != "fork":  # the patch reaches forked workers only
        pytest.skip("needs the fork start method")
    with pytest.raises(RuntimeError, match="boom in"):
        run_study(config.replace(jobs=2), out, progress=False, stream=None)
    assert not (out / "cells" / doomed / "cell.json").exists()
    monkeypatch.setattr(_cell, "run_cell", original)
    rest = run_study(config.replace(jobs=2), out, progress=False, stream=None)
    assert rest.complete and set(rest.cells_skipped) >= set(first.cells_run)
    assert doomed in rest.cells_run
    _same_study(result.out_dir, out)


@pytest.mark.parametrize("jobs", [0, -1, "many", True, 1.5])
def test_study_jobs_bad_values_name_the_field(jobs: object) -> None:
    with pytest.raises(ConfigError, match="jobs"):
        tiny_config(jobs=jobs)


def test_study_jobs_cli_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study", "run", "--preset", "digits", "--jobs", "0"]) == 2
    assert "--jobs" in capsys.readouterr().err


def test_study_jobs_auto_is_one_per_core_on_the_cpu_and_one_elsewhere() -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert _parallel.resolve_jobs("auto", 1, torch.device("cpu")) == cores
    assert _parallel.resolve_jobs("auto", 64, torch.device("cpu")) == 1
    assert _parallel.resolve_jobs("auto", 1, torch.device("meta")) == 1
    assert _parallel.resolve_jobs(3, 1, torch.device("cpu")) == 3


def test_study_jobs_refused_in_a_distributed_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from advrobust.study import _runner

    monkeypatch.setattr(_runner, "process_world", lambda: 2)
    with pytest.raises(ValueError, match="jobs"):
        run_study(tiny_config(jobs=2), tmp_path / "d", progress=False, stream=None)
    assert not (tmp_path / "d").exists()  # refused before anything was written


@pytest.mark.slow
def test_study_jobs_spawned_workers_give_the_sequential_study(
    tiny: tuple[StudyConfig, StudyResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the start method of accelerators (CUDA cannot be forked), exercised on the CPU
    spawn = multiprocessing.get_context("spawn")
    monkeypatch.setattr(_parallel.multiprocessing, "get_context", lambda method=None: spawn)
    config, result = tiny
    run_study(config.replace(jobs=2), tmp_path / "s", progress=False, stream=None)
    _same_study(result.out_dir, tmp_path / "s")


def test_study_jobs_start_method(monkeypatch: pytest.MonkeyPatch) -> None:
    # accelerators: spawn (CUDA cannot be forked); from Python 3.12 never fork (deprecated in
    # a process running threads), forkserver instead where it exists
    assert _parallel._start_method(torch.device("meta")) == "spawn"
    if multiprocessing.get_start_method(allow_none=True) not in (None, "fork"):
        pytest.skip("a start method other than fork was chosen for this process")
    monkeypatch.setattr(_parallel.sys, "version_info", (3, 11, 9))
    assert _parallel._start_method(torch.device("cpu")) is None  # the platform's default
    monkeypatch.setattr(_parallel.sys, "version_info", (3, 12, 0))
    if "forkserver" in multiprocessing.get_all_start_methods():
        assert _parallel._start_method(torch.device("cpu")) == "forkserver"


@pytest.mark.slow
def test_study_jobs_forkserver_workers_give_the_sequential_study(
    tiny: tuple[StudyConfig, StudyResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the start method of Python >= 3.12, exercised on this Python
    if "forkserver" not in multiprocessing.get_all_start_methods():
        pytest.skip("no forkserver on this platform")
    monkeypatch.setattr(_parallel, "_start_method", lambda device: "forkserver")
    config, result = tiny
    run_study(config.replace(jobs=2), tmp_path / "f", progress=False, stream=None)
    _same_study(result.out_dir, tmp_path / "f")


def test_study_jobs_idle_hook_runs_once_when_a_worker_is_free_and_cannot_fail_the_study(
    tmp_path: Path,
) -> None:
    # 4 cells on 2 workers: the hook runs once, when 1 cell is left (the other worker is free)
    config = tiny_config(name="idle", threads=1)
    cells = enumerate_cells(config)
    assert len(cells) == 4
    seen: list[int] = []
    finished: list[str] = []

    def done(key: str) -> None:
        finished.append(key)

    def idle() -> None:
        seen.append(len(finished))
        raise RuntimeError("a failing preparation is not the study's error")

    out = tmp_path / "s"
    out.mkdir()
    ran = _parallel.run_cells_parallel(config, out, cells, torch.device("cpu"), 2, done, idle)
    assert sorted(ran) == sorted(c.key for c in cells)
    assert seen == [3]  # once, after the third cell finished: fewer cells left than workers
    # the study's own results stage after it: the figure imports are in place (and harmless)
    from advrobust.study._plots import preload

    preload()
    import sys

    assert "matplotlib.backends.backend_pdf" in sys.modules


def test_study_jobs_workers_share_the_optimizers_imports() -> None:
    # fork: the parent imports torch._dynamo once before forking (a fresh process shows it)
    import subprocess
    import sys

    code = (
        "import multiprocessing, sys; from advrobust.study._parallel import _share_imports; "
        "before = 'torch._dynamo' in sys.modules; "
        "_share_imports(multiprocessing.get_context('fork')); "
        "print(before, 'torch._dynamo' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]

    # forkserver: the server preloads them, after __main__ (a script's own tasks) as by default
    class Server:
        preload: list[str] | None = None

        def get_start_method(self) -> str:
            return "forkserver"

        def set_forkserver_preload(self, names: list[str]) -> None:
            self.preload = names

    server = Server()
    _parallel._share_imports(server)
    assert server.preload is not None and server.preload[0] == "__main__"
    assert "torch._dynamo" in server.preload

    # spawn: nothing to share (its workers import for themselves)
    class Spawn(Server):
        def get_start_method(self) -> str:
            return "spawn"

    spawn = Spawn()
    _parallel._share_imports(spawn)
    assert spawn.preload is None
