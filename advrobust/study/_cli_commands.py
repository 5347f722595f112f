"""The commands of the ``advrobust`` command line: one ``_cmd_*`` handler per (sub)command.

A handler takes the parsed arguments and returns the exit status; it raises
:class:`~advrobust.study._errors.CLIError` (or lets a library error through) for
:func:`advrobust.study._cli.main` to print as one line. The checks every command shares (an
output folder that can be written, optional packages installed, progress bars only on a
terminal) come first.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from ._config import StudyConfig
from ._errors import INSTALL_HINT, USAGE, CLIError, missing_packages

__all__ = ["stderr_is_terminal"]


def _check_out_dir(out: Path, option: str = "--out") -> None:
    """Refuse an output folder that is a file or cannot be written, before any work starts."""
    import os

    if out.exists() and not out.is_dir():
        raise CLIError(
            f"{option} {out} is a file; {option} must name a folder (new, or holding this study)",
            USAGE,
        )
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise CLIError(f"{option} {out}: {existing} is a file, not a folder", USAGE)
    if existing.exists() and not os.access(existing, os.W_OK | os.X_OK):
        raise CLIError(
            f"{option} {out}: {existing} is not writable; choose a folder you can write to "
            f"or fix its permissions"
        )


def _require_packages(names: list[str], what: str) -> None:
    missing = missing_packages(names)
    if missing:
        raise CLIError(
            f"{what} needs {', '.join(missing)}, which is not installed; run: {INSTALL_HINT}"
        )


def _warn(message: str) -> None:
    print(f"advrobust: warning: {message}", file=sys.stderr)


def stderr_is_terminal() -> bool:
    """Whether ``sys.stderr`` is an interactive terminal (progress bars go there)."""
    try:
        return bool(sys.stderr.isatty())
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def _progress_wanted(args: argparse.Namespace) -> bool:
    """Progress bars unless --no-progress or stderr is not a terminal (a log file, a pipe)."""
    return not getattr(args, "no_progress", False) and stderr_is_terminal()


def _cmd_study_run(args: argparse.Namespace) -> int:
    from ._presets import load_preset
    from ._runner import run_study

    if (args.config is None) == (args.preset is None):
        raise CLIError("give either a CONFIG file or --preset NAME (not both)", USAGE)
    config = load_preset(args.preset) if args.preset else _load_config(args.config)
    if args.root:
        config = config.replace(data=dataclasses.replace(config.data, root=args.root))
    if args.threads is not None:
        config = config.replace(threads=args.threads)
    if args.jobs is not None:
        config = config.replace(jobs=args.jobs)
    out = Path(args.out) if args.out else Path(f"study-{config.name}")
    _check_out_dir(out)
    # check the optional packages before any cell trains
    needed = ["tomli_w"] + (["sklearn"] if config.data.name == "digits" else [])
    _require_packages(needed, f"study {config.name!r}")
    can_plot = not missing_packages(["matplotlib"])
    if not can_plot:
        _warn(
            "matplotlib is not installed: the study writes its tables and summary but no "
            f"figures; run {INSTALL_HINT}, then `advrobust study plot {out}`"
        )
    start = time.perf_counter()
    with _process_group(), _sigterm_as_interrupt():
        try:
            result = run_study(
                config,
                out,
                shard=args.shard,
                progress=_progress_wanted(args),
                device=args.device,
                stream=sys.stdout,
            )
        except ImportError as error:
            if can_plot or not (error.name or "").startswith("matplotlib"):
                raise
            _print_summary_without_figures(out)
            return 0
    if result.summary == "" and not result.rows:  # a rank > 0 under torchrun: rank 0 reports
        return 0
    elapsed = time.perf_counter() - start
    print(
        f"ran {len(result.cells_run)} cell(s), skipped {len(result.cells_skipped)} finished "
        f"cell(s) in {elapsed:.1f} s"
        + ("" if result.complete else "; the grid is not complete in this folder yet")
    )
    return 0


def _load_config(path: str) -> StudyConfig:
    """The study config at ``path``; a file that does not parse is named in the message."""
    try:
        return StudyConfig.load(path)
    except (ValueError, UnicodeDecodeError) as error:  # a field, TOML/JSON syntax, binary
        raise CLIError(f"study config {path}: {error}") from None


def _print_summary_without_figures(out: Path) -> None:
    """The summary of a study whose tables were written but whose figures could not be."""
    from ._results import format_summary, read_results

    rows = read_results(out)
    print(f"\nstudy in {out} (no figures: matplotlib is not installed)")
    print(format_summary(rows))
    print(f"results: {out / 'results.csv'}, {out / 'results.json'}")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (a scheduler's preemption or time limit) like Ctrl-C.

    The trainer answers KeyboardInterrupt by writing its checkpoint, so a preempted cell
    resumes where it stopped when the same command runs again.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _process_group() -> Iterator[None]:
    """Under torchrun (WORLD_SIZE > 1), initialise torch.distributed for the run."""
    import os

    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available() or dist.is_initialized():
        yield
        return
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def _cmd_study_merge(args: argparse.Namespace) -> int:
    from ._runner import merge_studies

    _check_out_dir(Path(args.out))
    _require_packages(["tomli_w", "matplotlib"], "study merge")
    result = merge_studies(
        args.sources, args.out, device=args.device, root=args.root, stream=sys.stdout
    )
    if not result.complete:
        print("note: some cells of the grid are still missing from the merged folder")
    return 0


def _cmd_study_plot(args: argparse.Namespace) -> int:
    from ._plots import plot_results
    from ._results import read_results

    folder = Path(args.dir)
    rows = read_results(folder)
    _require_packages(["matplotlib"], "study plot")
    figures = plot_results(rows, Path(args.out) if args.out else folder / "figures")
    for path in figures:
        print(path)
    return 0


def _cmd_study_report(args: argparse.Namespace) -> int:
    from ._report import write_report

    _require_packages(["matplotlib"], "study report")
    path = write_report(args.dir, confidence=args.confidence)
    print(f"report: {path}")
    print(f"tables: {path.parent / 'tables'}")
    return 0


def _cmd_study_presets(args: argparse.Namespace) -> int:
    from ._presets import list_presets, load_preset, preset_text

    if args.show:
        print(preset_text(args.show), end="")
        return 0
    for name in list_presets():
        cfg = load_preset(name)
        print(f"{name:20s} {cfg.data.name:10s} {_first_sentence(cfg.description)}")
    return 0


def _first_sentence(text: str, width: int = 100) -> str:
    """The first sentence of ``text``, at most ``width`` characters (cut at a word).

    A sentence ends at a period before a capital letter ("et al. 2016" and "eq. 4" do not).
    """
    import re

    first = re.split(r"(?<=\.)\s+(?=[A-Z])", " ".join(text.split()), maxsplit=1)[0]
    if len(first) <= width:
        return first
    return first[: width - 3].rsplit(" ", 1)[0] + " ..."


def _cmd_models(args: argparse.Namespace) -> int:
    import torch

    from advrobust.models import INPUT_SETTINGS, count_parameters, create_model, list_models

    setting = args.dataset or "cifar10"
    k, c, s = INPUT_SETTINGS[setting]
    k = k if args.num_classes is None else args.num_classes
    c = c if args.in_channels is None else args.in_channels
    s = s if args.input_size is None else args.input_size
    print(f"models for inputs {c}x{s}x{s}, {k} classes ({setting}):")
    names = list_models(args.filter)
    width = max([len(n) for n in names] + [5])
    print(f"{'model':{width}s}  {'parameters':>12s}")
    for name in names:
        try:
            with torch.device("meta"):
                model = create_model(name, num_classes=k, in_channels=c, input_size=s)
            count = f"{count_parameters(model):,}"
        except ValueError as error:  # e.g. input too small for the layout
            count = f"- ({str(error).splitlines()[0]})"
        print(f"{name:{width}s}  {count:>12s}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ._evaluate import evaluate_command

    return evaluate_command(args, progress=_progress_wanted(args))
