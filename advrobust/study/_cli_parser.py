"""The argument parser of the ``advrobust`` command line (commands, options, help texts)."""

from __future__ import annotations

import argparse

from ._cli_args import (
    attack_option,
    dataset_contract,
    dataset_name,
    device_option,
    fraction,
    int_at_least,
    jobs_option,
    positive_float,
    shard_option,
)
from ._errors import OneLineArgumentParser

__all__ = ["build_parser"]


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
        type=shard_option,
        help="run only shard i of n (0-based), e.g. 0/4; "
        "SLURM: $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT",
    )
    run.add_argument(
        "--device",
        type=device_option,
        help="auto, cpu, cuda, cuda:N, mps (overrides the config)",
    )
    run.add_argument("--root", help="dataset folder (overrides data.root)")
    run.add_argument(
        "--threads",
        type=int_at_least(1),
        help="torch CPU threads (overrides the config's threads)",
    )
    run.add_argument(
        "--jobs",
        type=jobs_option,
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
        type=device_option,
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
        "--confidence", type=fraction, default=0.95, help="confidence level (default 0.95)"
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
        type=dataset_contract,
        help="input contract of a dataset: digits, mnist, cifar10 (default), stl10, tiny-imagenet",
    )
    models.add_argument(
        "--num-classes", type=int_at_least(1), help="override the number of classes"
    )
    models.add_argument("--in-channels", type=int_at_least(1), help="override the input channels")
    models.add_argument(
        "--input-size", type=int_at_least(1), help="override the input height/width"
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
        "--dataset", required=True, type=dataset_name, help="dataset name (digits needs no files)"
    )
    ev.add_argument("--root", help="dataset folder")
    ev.add_argument(
        "--split", default="test", choices=("train", "test"), help="split (default: test)"
    )
    ev.add_argument(
        "--attack",
        action="append",
        default=None,
        type=attack_option,
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
        type=positive_float,
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
        type=int_at_least(1),
        default=None,
        help="examples to attack (default: 500, or the whole split when smaller)",
    )
    ev.add_argument("--batch-size", type=int_at_least(1), default=256)
    ev.add_argument(
        "--device",
        default="auto",
        type=device_option,
        help="auto (default), cpu, cuda, cuda:N, mps",
    )
    ev.add_argument("--seed", type=int_at_least(0), default=0, help="sampling and attack seed")
    ev.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bars (they are off anyway when stderr is not a terminal)",
    )
    _add_common(ev)
    return parser
