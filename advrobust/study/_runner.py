"""Running a study: every cell of the grid, resumably and shardably, then tables and figures.

The concerns live in their own modules: the folder, its state record and lock
(:mod:`._folder`), building components from the config (:mod:`._build`), the evaluation tasks
(:mod:`._tasks`), one cell (:mod:`._cell`) and the cross-model transfer task
(:mod:`._transfer`). This module runs the grid: :func:`run_study`, :func:`merge_studies` and
:func:`finalize_study`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch

from advrobust._distributed import barrier
from advrobust._distributed import rank as process_rank
from advrobust._distributed import world_size as process_world

from ._analysis import summarize
from ._build import check_buildable, evaluation_sample, load_cell_model, load_data, resolve_device
from ._cell import run_cell, stage_count
from ._config import StudyConfig, config_diff
from ._folder import (
    FolderLock,
    StudyConfigMismatchError,
    StudyFolderBusyError,
    accepted_fingerprints,
    cell_dir,
    check_cell_record,
    copy_folder_atomic,
    load_state_config,
    prepare_out_dir,
    remove_stale_temporaries,
)
from ._grid import Cell, Shard, enumerate_cells, shard_cells
from ._parallel import CellPool, resolve_jobs
from ._plots import plot_results, preload
from ._results import (
    build_rows,
    example_values,
    finished_cells,
    format_summary,
    write_example_values,
    write_results,
)
from ._timings import format_timings, timing_rows, write_timings
from ._transfer import pending_groups, run_transfer

__all__ = [
    "StudyConfigMismatchError",
    "StudyFolderBusyError",
    "StudyResult",
    "evaluation_sample",
    "format_timings",
    "finalize_study",
    "load_cell_model",
    "merge_studies",
    "run_study",
]


@dataclass(frozen=True)
class StudyResult:
    """What :func:`run_study` (or :func:`merge_studies`) produced.

    Attributes:
        out_dir: the study folder.
        rows: the tidy result rows (as in ``results.json``).
        figures: figure files written.
        summary: the printed summary table.
        cells_run: keys of the cells trained/evaluated by this call.
        cells_skipped: keys of the cells that were already finished.
        complete: whether every cell of the grid is finished in ``out_dir``.
        timings: one row per cell and stage (``cell``, ``replicate``, ``stage``, ``seconds``),
            as in ``timings.csv``: data, training, the clean pass and each evaluation task.
    """

    out_dir: Path
    rows: list[dict[str, Any]]
    figures: list[Path]
    summary: str
    cells_run: list[str] = field(default_factory=list)
    cells_skipped: list[str] = field(default_factory=list)
    complete: bool = False
    timings: list[dict[str, Any]] = field(default_factory=list)


def _checked_cells(config: StudyConfig, out_dir: Path, cells: Sequence[Cell]) -> dict[str, Any]:
    """The finished cells' records, each checked against the folder's config fingerprint."""
    done = finished_cells(out_dir, cells)
    accepted = accepted_fingerprints(config, out_dir)
    for key, record in done.items():
        check_cell_record(cell_dir(out_dir, key), record, accepted)
    return done


# --------------------------------------------------------------------------------------------
# progress


class _Progress:
    """An overall bar over cells and a nested bar for the stages of the current cell."""

    def __init__(self, total: int, enabled: bool, desc: str) -> None:
        self.enabled = enabled
        self.bar: Any = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=total,
                desc=desc,
                unit="cell",
                position=0,
                dynamic_ncols=True,
                disable=None,  # no bar when stderr is not a terminal (a log file, a pipe)
            )

    def stage(self, cell: Cell, total: int) -> Any:
        if not self.enabled:
            return None
        from tqdm.auto import tqdm

        return tqdm(
            total=total,
            desc=f"  {cell.key}",
            unit="stage",
            position=1,
            leave=False,
            dynamic_ncols=True,
            disable=None,
        )

    def advance(self, key: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(key, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------------------------
# entry points


def finalize_study(
    out_dir: str | Path,
    *,
    device: str | None = None,
    root: str | None = None,
    progress: bool = False,
    stream: TextIO | None = None,
) -> StudyResult:
    """Run the pending cross-model tasks, then write the results table, figures and summary.

    Called at the end of :func:`run_study` and by :func:`merge_studies`; also useful after
    copying shard folders together by hand. ``root`` overrides the recorded ``data.root`` (the
    transfer matrices load the test data) on a machine that keeps the data elsewhere.

    Raises:
        StudyConfigMismatchError: a cell folder holds a cell of another config.
    """
    out_dir = Path(out_dir)
    config = load_state_config(out_dir)
    if root is not None:
        config = config.replace(data=dataclasses.replace(config.data, root=root))
    _checked_cells(config, out_dir, enumerate_cells(config))
    pending = pending_groups(config, out_dir, None)
    if pending:
        dev = resolve_device(device or config.device)
        data = load_data(config)
        for key, members in pending:
            run_transfer(config, key, members, out_dir, data, dev)
    return _write_outputs(config, out_dir, [], [], stream, {})


def _write_outputs(
    config: StudyConfig,
    out_dir: Path,
    ran: list[str],
    skipped: list[str],
    stream: TextIO | None,
    study_timings: dict[str, float],
    executor: Executor | None = None,
) -> StudyResult:
    start = time.perf_counter()
    _checked_cells(config, out_dir, enumerate_cells(config))  # (other shards' cells too)
    rows = build_rows(config, out_dir)
    write_results(out_dir, rows)
    # per-example values behind the mean-valued rows: the bootstrap intervals of single runs
    examples = example_values(config, out_dir)
    write_example_values(out_dir, examples)
    stats = summarize(rows, examples)  # once, for the figures and the printed table
    figures = (
        plot_results(rows, out_dir / "figures", examples=examples, summary=stats, executor=executor)
        if rows
        else []
    )
    cells = enumerate_cells(config)
    done = len(finished_cells(out_dir, cells))
    complete = done == len(cells)
    summary = format_summary(rows, examples, summary=stats)
    timings = timing_rows(config, out_dir)
    study_timings = {**study_timings, "results": time.perf_counter() - start}
    write_timings(out_dir, timings, study_timings)
    if stream is not None:
        print(
            f"\nstudy {config.name!r}: {done}/{len(cells)} cells finished in {out_dir}", file=stream
        )
        print(summary, file=stream)
        if timings:
            print("\ntimings (seconds):", file=stream)
            print(format_timings(timings), file=stream)
            print(
                "study: " + ", ".join(f"{k} {v:.2f}" for k, v in study_timings.items()),
                file=stream,
            )
        print(
            f"results: {out_dir / 'results.csv'}, {out_dir / 'results.json'}, "
            f"{out_dir / 'timings.csv'}",
            file=stream,
        )
        if figures:
            print(
                "figures: " + ", ".join(str(p) for p in figures if p.suffix == ".png"), file=stream
            )
    return StudyResult(out_dir, rows, figures, summary, ran, skipped, complete, timings)


def run_study(
    config: StudyConfig,
    out_dir: str | Path,
    *,
    shard: Shard | str | None = None,
    progress: bool = True,
    device: str | None = None,
    stream: TextIO | None = sys.stdout,
    wait: float = 0.0,
) -> StudyResult:
    """Train and evaluate every cell of the grid and write the tables and figures.

    Args:
        config: the study.
        out_dir: output folder (created; an existing folder must hold the same study).
        shard: run only a deterministic slice of the cells, ``Shard(i, n)`` or ``"i/n"``
            (0-based); the shards of one ``n`` partition the grid. Join shards with
            :func:`merge_studies`.
        progress: show an overall bar over cells and a nested one inside each cell.
        device: override ``config.device`` (not part of the study's identity).
        stream: where the summary and timing tables are printed (None: print nothing).
        wait: seconds to wait for another run holding the folder (or the same shard of it)
            before giving up with :class:`StudyFolderBusyError`.

    Returns:
        A :class:`StudyResult` with the rows, the figure paths, the summary and the timings.

    Raises:
        StudyConfigMismatchError: ``out_dir`` holds a study with another config (or a cell of
            another config).
        StudyFolderBusyError: another live process is running the same cells in ``out_dir``.
        ConfigError: a model, recipe or attack setting cannot be built (names the field);
            raised before anything is written.
        FileNotFoundError: the dataset files are missing (says where to put them).

    Example:
        >>> from advrobust.study import load_preset, run_study
        >>> result = run_study(load_preset("digits"), "study-digits")  # doctest: +SKIP
    """
    if not isinstance(config, StudyConfig):
        raise TypeError(f"config must be a StudyConfig, got {type(config).__name__}")
    if isinstance(shard, str):
        from ._grid import parse_shard

        shard = parse_shard(shard)
    out_dir = Path(out_dir)
    with _threads(config.threads):
        return _run_study(config, out_dir, shard, progress, device, stream, wait)


@contextlib.contextmanager
def _threads(count: int | None) -> Iterator[None]:
    """Set torch's intra-op thread count for the block and restore it afterwards."""
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _jobs(config: StudyConfig, dev: torch.device) -> int:
    """Worker processes for the cells: ``config.jobs`` resolved (1 in a distributed run)."""
    if process_world() > 1:
        if config.jobs not in (1, "auto"):
            raise ValueError(
                f"jobs must be 1 or 'auto' in a distributed run (got jobs={config.jobs!r} with "
                f"{process_world()} processes): all the processes of such a run train one cell"
            )
        return 1
    return resolve_jobs(config.jobs, config.threads, dev)


def _run_study(
    config: StudyConfig,
    out_dir: Path,
    shard: Shard | None,
    progress: bool,
    device: str | None,
    stream: TextIO | None,
    wait: float,
) -> StudyResult:
    start = time.perf_counter()
    data = load_data(config)
    study_timings = {"data": time.perf_counter() - start}
    check_buildable(config, data)  # before anything is written
    dev = resolve_device(device or config.device)
    jobs = _jobs(config, dev)  # (before anything is written)
    rank = process_rank()
    lock = FolderLock(out_dir, shard, wait=wait)
    if rank == 0:
        lock.acquire()
    try:
        if rank == 0:
            prepare_out_dir(config, out_dir)
            remove_stale_temporaries(out_dir)
        barrier()
        return _run_cells(
            config, out_dir, shard, progress and rank == 0, dev, stream, data, study_timings, jobs
        )
    finally:
        lock.release()


def _run_cells(
    config: StudyConfig,
    out_dir: Path,
    shard: Shard | None,
    progress: bool,
    dev: torch.device,
    stream: TextIO | None,
    data: Any,
    study_timings: dict[str, float],
    jobs: int = 1,
) -> StudyResult:
    rank = process_rank()
    cells = shard_cells(enumerate_cells(config), shard)
    done = _checked_cells(config, out_dir, cells)
    bars = _Progress(len(cells), progress, f"{config.name}" + (f" shard {shard}" if shard else ""))
    ran: list[str] = []
    skipped: list[str] = []
    pending = [c for c in cells if c.key not in done]
    # the worker pool (jobs > 1) lives until the figures are drawn; leaving the block on an
    # error stops its workers at once, else they are shut down after their work
    with contextlib.ExitStack() as workers:
        pool: CellPool | None = None
        try:
            for cell in cells:
                if cell.key in done:
                    skipped.append(cell.key)
                    bars.advance(cell.key)
            if jobs > 1 and len(pending) > 1:
                pool = workers.enter_context(CellPool(config, out_dir, dev, jobs, len(pending)))

                def idle(pool: CellPool = pool) -> None:
                    # a core is free: import what the figures need, here and in the free worker
                    preload()
                    pool.executor.submit(preload)

                finished = set(pool.run(pending, bars.advance, idle))
                ran = [c.key for c in pending if c.key in finished]  # (grid order)
                pending = []
            for cell in pending:
                stage = bars.stage(cell, stage_count(config))
                try:
                    run_cell(config, cell, out_dir, data, dev, progress, stage)
                finally:
                    if stage is not None:
                        stage.close()
                ran.append(cell.key)
                bars.advance(cell.key)
            if rank == 0:
                start = time.perf_counter()
                for key, members in pending_groups(config, out_dir, shard):
                    run_transfer(config, key, members, out_dir, data, dev)
                if "transfer-matrix" in config.evaluation.metrics:
                    study_timings["transfer-matrix"] = time.perf_counter() - start
        finally:
            bars.close()
        if rank != 0:
            barrier()
            return StudyResult(out_dir, [], [], "", ran, skipped, False)
        executor = None if pool is None else pool.executor  # (the workers draw figures too)
        result = _write_outputs(config, out_dir, ran, skipped, stream, study_timings, executor)
    barrier()
    return result


def merge_studies(
    sources: Sequence[str | Path],
    out_dir: str | Path,
    *,
    device: str | None = None,
    root: str | None = None,
    stream: TextIO | None = sys.stdout,
) -> StudyResult:
    """Join the folders of shards (or partial runs) of one study into ``out_dir``.

    Finished cells are copied (a cell present in several sources is taken from the first);
    every source must hold the same config, and every copied cell must have been written for
    it. Cross-model tasks that became possible are run, and the results table, figures and
    summary are written for the merged grid.

    Raises:
        StudyConfigMismatchError: the sources hold different studies, or a source's cell folder
            holds a cell of another config (the message names the folder).
    """
    if not sources:
        raise ValueError("sources must name at least one study folder")
    configs = [load_state_config(Path(s)) for s in sources]
    config = configs[0]
    for src, other in zip(sources[1:], configs[1:], strict=True):
        if other.fingerprint() != config.fingerprint():
            diffs = config_diff(config.identity(), other.identity())
            raise StudyConfigMismatchError(
                f"{src} holds another config than {sources[0]}; cannot merge. Changed fields:\n  "
                + "\n  ".join(diffs[:12])
            )
    out = Path(out_dir)
    cells = enumerate_cells(config)
    found = {Path(src): _checked_cells(config, Path(src), cells) for src in sources}
    resolved_sources = {Path(s).resolve() for s in sources}
    with FolderLock(out, None):
        if out.resolve() not in resolved_sources:
            prepare_out_dir(config, out)
        for src_path, done in found.items():
            if src_path.resolve() == out.resolve():
                continue
            for key in done:
                target = cell_dir(out, key)
                if not (target / "cell.json").is_file():
                    copy_folder_atomic(cell_dir(src_path, key), target)
            groups = src_path / "groups"
            if groups.is_dir():
                for group in sorted(groups.iterdir()):
                    target = out / "groups" / group.name
                    if (group / "group.json").is_file() and not (target / "group.json").is_file():
                        copy_folder_atomic(group, target)
        return finalize_study(out, device=device, root=root, stream=stream)
