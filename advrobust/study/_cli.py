"""The ``advrobust`` command line (also ``python -m advrobust``).

Commands::

    advrobust study run CONFIG | --preset NAME [--out DIR] [--shard i/n] [--device D] [--root DIR]
    advrobust study merge OUT_DIRS... --out DIR [--device D] [--root DIR]
    advrobust study plot DIR
    advrobust study report DIR [--confidence C]
    advrobust study presets [--show NAME]
    advrobust models [--dataset NAME | --num-classes K --in-channels C --input-size S] [--filter P]
    advrobust evaluate --model NAME --weights FILE --dataset NAME [--attack NAME ...] [--eps E ...]
                       [--suite standard|fast --eps E [--norm linf|l2]]

Every command maps onto the Python API (:mod:`advrobust.study`). Every user or operating-system
error prints one line, ``advrobust: error: ...``, that says what to do, and exits with status 2
(a usage error: a bad option) or 1 (a runtime error: a file, the disk, a missing package); see
:mod:`advrobust.study._errors`. ``--traceback`` (or ``ADVROBUST_DEBUG=1``) re-raises instead.
Progress bars are drawn only when stderr is a terminal.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from advrobust._device import check_device, device_available

from ._config import StudyConfig
from ._errors import (
    INSTALL_HINT,
    USAGE,
    CLIError,
    OneLineArgumentParser,
    debug_requested,
    error_message,
    missing_packages,
)

__all__ = ["build_parser", "main"]


# --------------------------------------------------------------------------------------------
# option types: a bad value is a usage error (status 2) that names the option


def _int_at_least(minimum: int) -> Any:
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = "int"
    return parse


def _jobs_option(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return _int_at_least(1)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1 or auto, got {text!r}") from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def _fraction(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {text!r}")
    return value


def _device_option(text: str) -> str:
    """An argparse type for ``--device``: ``auto`` or a real device this machine has.

    ``meta`` is refused: meta tensors hold no data, so there is nothing to train or measure.
    """
    if text == "auto":
        return text
    try:
        dev = check_device(text, "device")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid device {text!r}; valid forms: {_CLI_DEVICES}"
        ) from None
    if dev.type == "meta":
        raise argparse.ArgumentTypeError(
            f"meta tensors hold no data, so there is nothing to train or evaluate; valid "
            f"forms: {_CLI_DEVICES}"
        )
    reason = device_available(dev)
    if reason is not None:
        raise argparse.ArgumentTypeError(f"{text!r}: {reason}; use --device cpu (or auto)")
    return text


_CLI_DEVICES = "auto, cpu, cuda, cuda:N, mps"


def _shard_option(text: str) -> str:
    """An argparse type for ``--shard i/n`` (checked here, passed on as given)."""
    from ._grid import parse_shard

    try:
        parse_shard(text)
    except (ValueError, TypeError) as error:
        raise argparse.ArgumentTypeError(str(error).removeprefix("--shard ")) from None
    return text


def _attack_option(text: str) -> str:
    """An argparse type: a registered attack name (any case) -> its registry name."""
    from advrobust.attacks import attack_info, list_attacks

    try:
        return attack_info(text).name
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown attack {text!r}; valid attacks: {', '.join(list_attacks())}"
        ) from None


def _dataset_contract(text: str) -> str:
    from advrobust.models import INPUT_SETTINGS

    if text not in INPUT_SETTINGS:
        raise argparse.ArgumentTypeError(
            f"unknown dataset contract {text!r}; valid: {', '.join(INPUT_SETTINGS)}"
        )
    return text


def _dataset_name(text: str) -> str:
    from advrobust.data import list_datasets

    if text not in list_datasets():
        raise argparse.ArgumentTypeError(
            f"unknown dataset {text!r}; valid: {', '.join(list_datasets())}"
        )
    return text


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--traceback",
        action="store_true",
        help="show the full Python traceback on errors (also: ADVROBUST_DEBUG=1)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``advrobust`` command (its errors are one line, status 2)."""
    from advrobust import __version__

    parser = OneLineArgumentParser(
        prog="advrobust",
        description="Adversarial robustness studies: train model grids on nested data subsets, "
        "attack them, and tabulate and plot accuracy and robustness.",
    )
    parser.add_argument("--version", action="version", version=f"advrobust {__version__}")
    _add_common(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    study = commands.add_parser("study", help="run, merge and plot studies")
    study_cmds = study.add_subparsers(dest="study_command", metavar="SUBCOMMAND", required=True)

    run = study_cmds.add_parser(
        "run",
        help="run a study from a TOML/JSON config or a shipped preset",
        description="Train and evaluate every cell of a study grid. Rerunning the same command "
        "resumes: finished cells are skipped and an interrupted cell continues from its "
        "checkpoint.",
    )
    run.add_argument("config", nargs="?", help="study config file (.toml or .json)")
    run.add_argument(
        "--preset", help="a shipped preset instead of a config file (see `advrobust study presets`)"
    )
    run.add_argument("--out", help="output folder (default: ./study-<name>)")
    run.add_argument(
        "--shard",
        type=_shard_option,
        help="run only shard i of n (0-based), e.g. 0/4; "
        "SLURM: $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT",
    )
    run.add_argument(
        "--device",
        type=_device_option,
        help="auto, cpu, cuda, cuda:N, mps (overrides the config)",
    )
    run.add_argument("--root", help="dataset folder (overrides data.root)")
    run.add_argument(
        "--threads",
        type=_int_at_least(1),
        help="torch CPU threads (overrides the config's threads)",
    )
    run.add_argument(
        "--jobs",
        type=_jobs_option,
        help="cells run at the same time in worker processes: N or auto (one per core); "
        "overrides the config's jobs; the results do not depend on it",
    )
    run.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (they are off anyway when stderr is not a terminal)",
    )
    _add_common(run)

    merge = study_cmds.add_parser("merge", help="join shard folders of one study")
    merge.add_argument("sources", nargs="+", metavar="OUT_DIR", help="shard output folders")
    merge.add_argument("--out", required=True, help="merged output folder")
    merge.add_argument(
        "--device",
        type=_device_option,
        help="device for the cross-model tasks (transfer matrices)",
    )
    merge.add_argument("--root", help="dataset folder for those tasks (overrides data.root)")
    _add_common(merge)

    plot = study_cmds.add_parser("plot", help="(re)draw the figures of a study folder")
    plot.add_argument("dir", help="study folder (holding results.json)")
    plot.add_argument("--out", help="figure folder (default: DIR/figures)")
    _add_common(plot)

    report = study_cmds.add_parser(
        "report",
        help="write DIR/report.md, LaTeX tables and figures with confidence intervals",
        description="Summarise a study folder: mean and confidence interval per cell and metric, "
        "the turning points the intervals support, Su et al.'s scaling-law fit and Pareto "
        "frontier, the timings, figures (PNG, SVG, PDF) and LaTeX tables in DIR/tables.",
    )
    report.add_argument("dir", help="study folder (holding results.json)")
    report.add_argument(
        "--confidence", type=_fraction, default=0.95, help="confidence level (default 0.95)"
    )
    _add_common(report)

    presets = study_cmds.add_parser("presets", help="list the shipped presets")
    presets.add_argument("--show", metavar="NAME", help="print a preset's TOML")
    _add_common(presets)

    models = commands.add_parser(
        "models",
        help="list registered models with parameter counts",
        description="List the registered models and their trainable parameter counts for a "
        "dataset's input contract (classes, channels, size).",
    )
    models.add_argument(
        "--dataset",
        default=None,
        type=_dataset_contract,
        help="input contract of a dataset: digits, mnist, cifar10 (default), stl10, tiny-imagenet",
    )
    models.add_argument(
        "--num-classes", type=_int_at_least(1), help="override the number of classes"
    )
    models.add_argument("--in-channels", type=_int_at_least(1), help="override the input channels")
    models.add_argument(
        "--input-size", type=_int_at_least(1), help="override the input height/width"
    )
    models.add_argument("--filter", help="fnmatch pattern on names, e.g. 'resnet-*'")
    _add_common(models)

    ev = commands.add_parser(
        "evaluate",
        help="attack a saved model and print its metrics",
        description="Load weights (a state_dict, e.g. cells/<key>/model.pt of a study) into a "
        "registered model and print clean accuracy plus, per attack, the adversarial accuracy "
        "at each --eps for fixed-eps attacks, or the mean minimal distortion (I-FGSM "
        "bisection for fixed-eps attacks without --eps, the attack's own distances for "
        "minimal-norm attacks). --suite runs an attack ensemble at each --eps and prints the "
        "robust accuracy (advrobust.metrics.robust_accuracy).",
    )
    ev.add_argument("--model", required=True, help="registered model name")
    ev.add_argument("--weights", required=True, help="state_dict file (.pt)")
    ev.add_argument(
        "--dataset", required=True, type=_dataset_name, help="dataset name (digits needs no files)"
    )
    ev.add_argument("--root", help="dataset folder")
    ev.add_argument(
        "--split", default="test", choices=("train", "test"), help="split (default: test)"
    )
    ev.add_argument(
        "--attack",
        action="append",
        default=None,
        type=_attack_option,
        metavar="NAME",
        help="a registered attack, any case (see advrobust.attacks.list_attacks()); repeatable "
        "(default: BIM and CWL2 without --suite, none with it; CWL2 runs its defaults, "
        "9 x 1000 steps, unless --attack-kwargs says otherwise)",
    )
    ev.add_argument(
        "--attack-kwargs",
        action="append",
        default=None,
        metavar="NAME=JSON",
        help="constructor arguments for one attack, e.g. "
        '\'CWL2={"steps": 100, "binary_search_steps": 5}\'; repeatable',
    )
    ev.add_argument(
        "--suite",
        choices=("standard", "fast"),
        default=None,
        help="robust accuracy at each --eps from an attack ensemble: standard (APGD-CE, "
        "APGD-T, FAB-T, Square, as AutoAttack) or fast (APGD-CE, APGD-T)",
    )
    ev.add_argument(
        "--norm",
        choices=("linf", "l2"),
        default="linf",
        help="threat model of --suite (default: linf)",
    )
    ev.add_argument(
        "--eps",
        type=_positive_float,
        action="append",
        default=None,
        help="eps for adversarial (robust) accuracy; repeatable",
    )
    ev.add_argument(
        "--model-kwargs",
        default=None,
        help="create_model kwargs as JSON "
        "(default: from the model.json next to the weights, if any)",
    )
    ev.add_argument(
        "--no-normalize", action="store_true", help="the model has no Normalize first layer"
    )
    ev.add_argument(
        "--num-examples",
        type=_int_at_least(1),
        default=None,
        help="examples to attack (default: 500, or the whole split when smaller)",
    )
    ev.add_argument("--batch-size", type=_int_at_least(1), default=256)
    ev.add_argument(
        "--device",
        default="auto",
        type=_device_option,
        help="auto (default), cpu, cuda, cuda:N, mps",
    )
    ev.add_argument("--seed", type=_int_at_least(0), default=0, help="sampling and attack seed")
    ev.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (they are off anyway when stderr is not a terminal)",
    )
    _add_common(ev)
    return parser


# --------------------------------------------------------------------------------------------


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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``advrobust`` command line; returns the exit status.

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        0 on success; 1 on a runtime error and 2 on a usage error, each printed to stderr as
        one ``advrobust: error: ...`` line that says what to do; 130 when interrupted; 141 when
        stdout is closed early (``advrobust models | head``), quietly, as Unix tools do.
        With ``--traceback`` or ``ADVROBUST_DEBUG=1`` errors are re-raised instead.
    """
    debug = debug_requested(None if argv is None else list(argv))
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version, or a usage error already printed
        return stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 2
    handlers = {
        ("study", "run"): _cmd_study_run,
        ("study", "merge"): _cmd_study_merge,
        ("study", "plot"): _cmd_study_plot,
        ("study", "report"): _cmd_study_report,
        ("study", "presets"): _cmd_study_presets,
        ("models", None): _cmd_models,
        ("evaluate", None): _cmd_evaluate,
    }
    handler = handlers[(args.command, getattr(args, "study_command", None))]
    try:
        status = handler(args)
        sys.stdout.flush()  # a closed pipe surfaces here, not at interpreter exit
        return status
    except BrokenPipeError:
        _silence_stdout()
        return 141
    except KeyboardInterrupt:
        if debug:
            raise
        print(_INTERRUPTED, file=sys.stderr)
        return 130
    except Exception as error:
        # Ctrl-C or SIGTERM inside a library's cleanup (e.g. torch.save closing a checkpoint
        # file) surfaces as that library's error raised while handling the interrupt
        if _caused_by_interrupt(error) and not debug:
            print(_INTERRUPTED, file=sys.stderr)
            return 130
        found = error_message(error)
        if found is None or debug:
            raise
        message, status = found
        print(f"advrobust: error: {message}", file=sys.stderr)
        return status


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not fail again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (e.g. captured)
        pass


_INTERRUPTED = "advrobust: interrupted; rerun the same command to resume"


def _caused_by_interrupt(error: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
