"""The ``advrobust`` command line (also ``python -m advrobust``).

Commands::

    advrobust study run CONFIG | --preset NAME [--out DIR] [--shard i/n] [--device D] [--root DIR]
    advrobust study merge OUT_DIRS... --out DIR [--device D] [--root DIR]
    advrobust study plot DIR
    advrobust study presets [--show NAME]
    advrobust models [--dataset NAME | --num-classes K --in-channels C --input-size S] [--filter P]
    advrobust evaluate --model NAME --weights FILE --dataset NAME [--attack NAME ...] [--eps E ...]

Every command maps onto the Python API (:mod:`advrobust.study`); errors print one clear line
(naming the config field or listing the valid names) and exit with status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ._config import ConfigError, StudyConfig

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``advrobust`` command."""
    from advrobust import __version__

    parser = argparse.ArgumentParser(
        prog="advrobust",
        description="Adversarial robustness studies: train model grids on nested data subsets, "
        "attack them, and tabulate and plot accuracy and robustness.",
    )
    parser.add_argument("--version", action="version", version=f"advrobust {__version__}")
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
        help="run only shard i of n (0-based), e.g. 0/4; "
        "SLURM: $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT",
    )
    run.add_argument("--device", help="auto, cpu, cuda, cuda:1 ... (overrides the config)")
    run.add_argument("--root", help="dataset folder (overrides data.root)")
    run.add_argument(
        "--threads", type=int, help="torch CPU threads (overrides the config's threads)"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bars")

    merge = study_cmds.add_parser("merge", help="join shard folders of one study")
    merge.add_argument("sources", nargs="+", metavar="OUT_DIR", help="shard output folders")
    merge.add_argument("--out", required=True, help="merged output folder")
    merge.add_argument("--device", help="device for the cross-model tasks (transfer matrices)")
    merge.add_argument("--root", help="dataset folder for those tasks (overrides data.root)")

    plot = study_cmds.add_parser("plot", help="(re)draw the figures of a study folder")
    plot.add_argument("dir", help="study folder (holding results.json)")
    plot.add_argument("--out", help="figure folder (default: DIR/figures)")

    presets = study_cmds.add_parser("presets", help="list the shipped presets")
    presets.add_argument("--show", metavar="NAME", help="print a preset's TOML")

    models = commands.add_parser(
        "models",
        help="list registered models with parameter counts",
        description="List the registered models and their trainable parameter counts for a "
        "dataset's input contract (classes, channels, size).",
    )
    models.add_argument(
        "--dataset",
        default=None,
        help="input contract of a dataset: digits, mnist, cifar10 (default), stl10, tiny-imagenet",
    )
    models.add_argument("--num-classes", type=int, help="override the number of classes")
    models.add_argument("--in-channels", type=int, help="override the input channels")
    models.add_argument("--input-size", type=int, help="override the input height/width")
    models.add_argument("--filter", help="fnmatch pattern on names, e.g. 'resnet-*'")

    ev = commands.add_parser(
        "evaluate",
        help="attack a saved model and print its metrics",
        description="Load weights (a state_dict, e.g. cells/<key>/model.pt of a study) into a "
        "registered model and print clean accuracy plus, per attack, the adversarial accuracy "
        "at each --eps, or without --eps the mean minimal distortion (I-FGSM bisection for "
        "Linf attacks, the attack's own L2 for CWL2).",
    )
    ev.add_argument("--model", required=True, help="registered model name")
    ev.add_argument("--weights", required=True, help="state_dict file (.pt)")
    ev.add_argument("--dataset", required=True, help="dataset name (digits needs no files)")
    ev.add_argument("--root", help="dataset folder")
    ev.add_argument("--split", default="test", help="split to evaluate on (default: test)")
    ev.add_argument(
        "--attack",
        action="append",
        default=None,
        metavar="NAME",
        help="a registered attack (advrobust.attacks.list_attacks()); repeatable "
        "(default: BIM and CWL2; "
        "CWL2 runs its defaults, 9 x 1000 steps, unless --attack-kwargs says otherwise)",
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
        "--eps",
        type=float,
        action="append",
        default=None,
        help="eps for adversarial accuracy; repeatable",
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
    ev.add_argument("--num-examples", type=int, default=500, help="examples to attack")
    ev.add_argument("--batch-size", type=int, default=256)
    ev.add_argument("--device", default="auto")
    ev.add_argument("--seed", type=int, default=0)
    return parser


# --------------------------------------------------------------------------------------------


def _cmd_study_run(args: argparse.Namespace) -> int:
    from ._presets import load_preset
    from ._runner import run_study

    if (args.config is None) == (args.preset is None):
        raise ValueError("give either a CONFIG file or --preset NAME (not both)")
    config = load_preset(args.preset) if args.preset else StudyConfig.load(args.config)
    if args.root:
        config = config.replace(data=dataclasses.replace(config.data, root=args.root))
    if args.threads is not None:
        config = config.replace(threads=args.threads)
    out = Path(args.out) if args.out else Path(f"study-{config.name}")
    start = time.perf_counter()
    with _process_group(), _sigterm_as_interrupt():
        result = run_study(
            config,
            out,
            shard=args.shard,
            progress=not args.no_progress,
            device=args.device,
            stream=sys.stdout,
        )
    if result.summary == "" and not result.rows:  # a rank > 0 under torchrun: rank 0 reports
        return 0
    elapsed = time.perf_counter() - start
    print(
        f"ran {len(result.cells_run)} cell(s), skipped {len(result.cells_skipped)} finished "
        f"cell(s) in {elapsed:.1f} s"
        + ("" if result.complete else "; the grid is not complete in this folder yet")
    )
    return 0


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
    figures = plot_results(rows, Path(args.out) if args.out else folder / "figures")
    for path in figures:
        print(path)
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
    if setting not in INPUT_SETTINGS:
        raise ValueError(
            f"unknown dataset contract {setting!r}; valid: {', '.join(INPUT_SETTINGS)}"
        )
    k, c, s = INPUT_SETTINGS[setting]
    k = args.num_classes or k
    c = args.in_channels or c
    s = args.input_size or s
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


def _attack_name(name: str, option: str) -> str:
    """The registered name of an attack given on the command line (case-insensitive)."""
    from advrobust.attacks import attack_info, list_attacks

    try:
        return attack_info(name).name
    except ValueError:
        raise ValueError(
            f"unknown attack {name!r} in {option}; valid attacks: {', '.join(list_attacks())}"
        ) from None


def _parse_attack_kwargs(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Parse repeated ``NAME=JSON`` options into constructor kwargs per registered attack."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"--attack-kwargs must look like NAME=JSON, got {item!r}")
        registered = _attack_name(name.strip(), "--attack-kwargs")
        try:
            kwargs = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"--attack-kwargs {item!r}: not valid JSON ({error})") from None
        if not isinstance(kwargs, dict):
            raise ValueError(f"--attack-kwargs {item!r}: the JSON must be an object")
        out.setdefault(registered, {}).update(kwargs)
    return out


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ._evaluate import evaluate_saved_model

    names = [_attack_name(n, "--attack") for n in (args.attack or ["BIM", "CWL2"])]
    evaluate_saved_model(
        model=args.model,
        weights=Path(args.weights),
        dataset=args.dataset,
        root=args.root,
        split=args.split,
        attacks=names,
        attack_kwargs=_parse_attack_kwargs(args.attack_kwargs or []),
        eps=args.eps,
        model_kwargs=args.model_kwargs,
        no_normalize=args.no_normalize,
        num_examples=args.num_examples,
        batch_size=args.batch_size,
        device=args.device,
        seed=args.seed,
        stream=sys.stdout,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``advrobust`` command line; returns the exit status.

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        0 on success, 1 on an error (printed to stderr as one ``advrobust: error: ...`` line),
        2 on a usage error (argparse).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {
        ("study", "run"): _cmd_study_run,
        ("study", "merge"): _cmd_study_merge,
        ("study", "plot"): _cmd_study_plot,
        ("study", "presets"): _cmd_study_presets,
        ("models", None): _cmd_models,
        ("evaluate", None): _cmd_evaluate,
    }
    handler = handlers[(args.command, getattr(args, "study_command", None))]
    try:
        return handler(args)
    except (ConfigError, ValueError, TypeError, FileNotFoundError) as error:
        print(f"advrobust: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(_INTERRUPTED, file=sys.stderr)
        return 130
    except Exception as error:
        # Ctrl-C or SIGTERM inside a library's cleanup (e.g. torch.save closing a checkpoint
        # file) surfaces as that library's error raised while handling the interrupt
        if _caused_by_interrupt(error):
            print(_INTERRUPTED, file=sys.stderr)
            return 130
        raise


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
