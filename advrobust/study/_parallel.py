"""Cells of one study run at the same time, each in a worker process (``jobs`` > 1).

A cell is independent of every other (its own seeds, its own folder, its own record), so the
grid parallelises over processes without changing a single number: a worker builds, trains
and evaluates a cell exactly as the sequential loop does. The parent process keeps the
folder lock and the progress bar, hands out the pending cells longest first (the largest
training subset first: longest-processing-time-first scheduling keeps both workers busy until
the end) and writes the tables when they are done.

Workers start with the platform's default method (``fork`` on Linux up to Python 3.11,
``forkserver`` from 3.12, ``spawn`` elsewhere), ``spawn`` whenever the device is an
accelerator (CUDA cannot be forked). On Linux a worker
dies with its parent (``PR_SET_PDEATHSIG``), so a study killed with ``kill -9`` leaves no
orphan writing into the folder.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import torch

from ._config import StudyConfig
from ._grid import Cell, enumerate_cells

__all__ = ["CellPool", "resolve_jobs", "run_cells_parallel"]


def resolve_jobs(jobs: int | str, threads: int | None, device: torch.device) -> int:
    """The number of worker processes ``jobs`` asks for (``"auto"``: one per core on the CPU)."""
    if jobs != "auto":
        return int(jobs)
    if device.type != "cpu":
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS and Windows have no affinity call
        cores = os.cpu_count() or 1
    return max(1, cores // (threads or 1))


# one study per worker process: set by the initializer, read by each task
_WORKER: dict[str, Any] = {}


def _die_with_parent() -> None:
    """Linux: ask the kernel to SIGKILL this process when its parent dies (best effort)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
        pass


def _init_worker(config_dict: dict[str, Any], out_dir: str, device: str, threads: int) -> None:
    from ._build import load_data

    _die_with_parent()
    # Ctrl-C reaches the whole foreground process group: the parent decides what to do,
    # and a worker interrupted mid-cell leaves only what a killed run leaves (resumable)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    config = StudyConfig.from_dict(config_dict)
    _WORKER.update(
        config=config,
        out_dir=Path(out_dir),
        device=torch.device(device),
        data=load_data(config),
        cells={c.key: c for c in enumerate_cells(config)},
    )


def _run_one(key: str) -> str:
    from ._cell import run_cell

    w = _WORKER
    run_cell(w["config"], w["cells"][key], w["out_dir"], w["data"], w["device"], False, None)
    return key


def _start_method(device: torch.device) -> str | None:
    """``spawn`` on accelerators; else the platform's default, but never ``fork`` from 3.12.

    From Python 3.12, forking a process that runs threads is deprecated (a warning, and a
    risk of deadlock), so ``forkserver`` replaces it there where it exists (Python 3.14 makes
    it the default on Linux); its workers import torch once each, as ``spawn``'s do.
    """
    if device.type != "cpu":
        return "spawn"
    fork_default = multiprocessing.get_start_method(allow_none=True) in (None, "fork")
    if sys.version_info >= (3, 12) and fork_default:
        if "forkserver" in multiprocessing.get_all_start_methods():
            return "forkserver"
    return None


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    stop = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if callable(stop):
        stop()
        return
    processes: dict[int, Any] = getattr(pool, "_processes", None) or {}
    for process in list(processes.values()):
        if process.is_alive():
            process.terminate()


def _order(cells: Sequence[Cell]) -> list[Cell]:
    """Largest training subset first (grid order among equals): the longest cells first."""
    return sorted(cells, key=lambda c: (-c.size_index, c.index))


#: Imported once for all workers: torch's optimizers import ``torch._dynamo`` when the first one
#: is built (1.6 s on one core, about 2.5 s each when two workers import it at once).
_SHARED_IMPORTS = ("torch._dynamo",)


def _share_imports(context: Any) -> None:
    """Import :data:`_SHARED_IMPORTS` once where the workers will inherit them.

    With ``fork`` this process imports them before the workers are forked (one import instead
    of one per worker, and the workers start training at once); with ``forkserver`` the server
    imports them before it forks the workers. ``spawn`` workers import them themselves.
    """
    method = context.get_start_method()
    if method == "fork":
        for name in _SHARED_IMPORTS:
            importlib.import_module(name)
    elif method == "forkserver":
        # ("__main__" stays first, as by default: tasks a script registers reach the workers)
        context.set_forkserver_preload(["__main__", *_SHARED_IMPORTS, "advrobust.study._cell"])


class CellPool:
    """The worker processes of one study run: they run the cells, then help draw the figures.

    ``CellPool(config, out_dir, device, jobs, n_cells)`` starts ``min(jobs, n_cells)`` workers
    (the start method of :func:`_start_method`, each initialised with the study and its data);
    :meth:`run` hands them the cells; :attr:`executor` is then free for the results stage
    (the figures are drawn in parallel, see :func:`advrobust.study.plot_results`); :meth:`close`
    (or leaving the ``with`` block) shuts them down. An error stops the workers at once.
    """

    def __init__(
        self, config: StudyConfig, out_dir: Path, device: torch.device, jobs: int, n_cells: int
    ) -> None:
        threads = config.threads or max(1, torch.get_num_threads() // jobs)
        self.workers = max(1, min(jobs, n_cells))
        self._closed = False
        context = multiprocessing.get_context(_start_method(device))
        _share_imports(context)
        self.executor = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(config.to_dict(), str(out_dir), str(device), threads),
        )

    def run(
        self,
        cells: Sequence[Cell],
        done: Callable[[str], None],
        idle: Callable[[], None] | None = None,
    ) -> list[str]:
        """Run ``cells`` (largest subsets first); ``done(key)`` is called as each finishes.

        ``idle()``, when given, is called once in this process as soon as a worker has no cell
        left to take (fewer unfinished cells than workers): a core is free from then on, and
        the caller can use it to prepare the results stage. Its errors are not the study's:
        they are ignored (the results stage meets them again if they matter).

        Returns the keys of the cells run, in the order they finished. The first error of a
        worker (or a KeyboardInterrupt here) cancels the cells not started yet, stops the
        workers and is raised; the cells they were running are resumed by the next run, as
        after a crash (every file of a cell is written atomically).
        """
        finished: list[str] = []
        futures: list[Future[str]] = [self.executor.submit(_run_one, c.key) for c in _order(cells)]
        try:
            for future in as_completed(futures):  # each cell as it finishes (the progress bar)
                key = future.result()  # a worker's exception is raised here
                finished.append(key)
                done(key)
                if idle is not None and len(futures) - len(finished) < self.workers:
                    with contextlib.suppress(Exception):  # a preparation only (see above)
                        idle()
                    idle = None
        except BaseException:
            self.abort()
            raise
        return finished

    def abort(self) -> None:
        """Stop the workers now and cancel what they have not started (once)."""
        if not self._closed:
            self._closed = True
            _stop_workers(self.executor)
            self.executor.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        """Shut the workers down once their work is done."""
        if not self._closed:
            self._closed = True
            self.executor.shutdown(wait=True)

    def __enter__(self) -> CellPool:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            self.abort()
        else:
            self.close()


def run_cells_parallel(
    config: StudyConfig,
    out_dir: Path,
    cells: Sequence[Cell],
    device: torch.device,
    jobs: int,
    done: Callable[[str], None],
    idle: Callable[[], None] | None = None,
) -> list[str]:
    """Run ``cells`` in ``jobs`` worker processes; ``done(key)`` is called as each finishes.

    :meth:`CellPool.run` in a pool of its own (see there for ``idle`` and errors). Returns the
    keys of the cells run, in the order they finished.
    """
    with CellPool(config, out_dir, device, jobs, len(cells)) as pool:
        return pool.run(cells, done, idle)
