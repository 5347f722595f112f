"""Bad-input matrix of the ``advrobust`` command line.

Every user or operating-system error must end as exactly one stderr line,
``advrobust: error: ...``, that names the option or file and says what to do, with exit
status 2 (a usage error) or 1 (a runtime error), no traceback, and nothing on disk lost.
Most cases run in-process through ``main(argv)``; a few run ``python -m advrobust`` for real
to check the exit status, the absence of a traceback and a closed stdout pipe.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from advrobust import metrics as M
from advrobust.attacks import list_attacks
from advrobust.models import create_model
from advrobust.study import StudyConfig, StudyResult, _cli, _cli_commands, enumerate_cells
from advrobust.study._cli import main

ROOT = Path(__file__).resolve().parents[2]


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("advrobust: error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def weights(tiny: tuple[StudyConfig, StudyResult]) -> Path:
    """A finished cell's model.pt (an mlp with a Normalize layer; model.json beside it)."""
    config, result = tiny
    return result.out_dir / "cells" / enumerate_cells(config)[0].key / "model.pt"


@pytest.fixture
def study_copy(tiny: tuple[StudyConfig, StudyResult], tmp_path: Path) -> tuple[Path, Path]:
    """``(config file, output folder)`` of a copy of the finished tiny study."""
    config, result = tiny
    out = tmp_path / "study"
    shutil.copytree(result.out_dir, out)
    return config.save(tmp_path / "tiny.toml"), out


def _evaluate(weights: Path, *options: str) -> list[str]:
    return [
        "evaluate",
        "--model",
        "mlp",
        "--weights",
        str(weights),
        "--dataset",
        "digits",
        "--device",
        "cpu",
        *options,
    ]


FAST = ("--attack", "FGSM", "--eps", "0.1", "--num-examples", "8")

# (case, argv builder from the weights file, status, words the line must hold)
USAGE_CASES: list[tuple[str, Callable[[Path], list[str]], int, tuple[str, ...]]] = [
    # was: silently used 10 classes
    (
        "models --num-classes 0",
        lambda w: ["models", "--num-classes", "0"],
        2,
        ("--num-classes", ">= 1"),
    ),
    (
        "models --input-size x",
        lambda w: ["models", "--input-size", "x"],
        2,
        ("--input-size", "'x'"),
    ),
    (
        "models --dataset svhn",
        lambda w: ["models", "--dataset", "svhn"],
        2,
        ("--dataset", "svhn", "mnist"),
    ),
    # was: a message naming neither the option nor the rule
    (
        "evaluate --seed -1",
        lambda w: _evaluate(w, "--seed", "-1", *FAST),
        2,
        ("--seed", ">= 0", "-1"),
    ),
    # was: RuntimeError traceback "Invalid device string"
    (
        "evaluate --device gpu0",
        lambda w: _evaluate(w, *FAST, "--device", "gpu0"),
        2,
        ("--device", "gpu0", "valid forms: auto, cpu, cuda, cuda:N, mps"),
    ),
    (
        "study run --device gpu0",
        lambda w: ["study", "run", "--preset", "digits", "--device", "gpu0"],
        2,
        ("--device", "gpu0"),
    ),
    # was: a traceback from inside the metrics (meta tensors hold no data)
    (
        "evaluate --device meta",
        lambda w: _evaluate(w, *FAST, "--device", "meta"),
        2,
        ("--device", "meta", "nothing to train or evaluate", "cpu"),
    ),
    (
        "evaluate --num-examples 0",
        lambda w: _evaluate(w, "--attack", "FGSM", "--num-examples", "0"),
        2,
        ("--num-examples", ">= 1"),
    ),
    # was: silently cut to the split size
    (
        "evaluate --num-examples 5000",
        lambda w: _evaluate(w, "--attack", "FGSM", "--num-examples", "5000"),
        2,
        ("--num-examples 5000", "test split of digits (400 examples)", "400 or fewer"),
    ),
    (
        "evaluate --attack nope",
        lambda w: _evaluate(w, "--attack", "nope"),
        2,
        ("--attack", "'nope'", ", ".join(list_attacks())),
    ),
    (
        "evaluate --attack-kwargs nope=",
        lambda w: _evaluate(w, "--attack-kwargs", "nope={}"),
        2,
        ("--attack-kwargs", "NAME=JSON"),
    ),
    (
        "evaluate --attack-kwargs bad JSON",
        lambda w: _evaluate(w, "--attack-kwargs", "fgsm={", *FAST),
        2,
        ("--attack-kwargs", "not valid JSON"),
    ),
    (
        "evaluate --attack-kwargs unknown key",
        lambda w: _evaluate(w, "--attack-kwargs", 'FGSM={"stepz": 1}', *FAST),
        2,
        ("--attack-kwargs for FGSM", "stepz"),
    ),
    (
        "evaluate --suite strong",
        lambda w: _evaluate(w, "--suite", "strong", "--eps", "0.1"),
        2,
        ("--suite", "'strong'", "standard", "fast"),
    ),
    (
        "evaluate --suite without --eps",
        lambda w: _evaluate(w, "--suite", "fast"),
        2,
        ("--suite fast", "--eps"),
    ),
    (
        "evaluate --eps -0.1",
        lambda w: _evaluate(w, "--attack", "FGSM", "--eps=-0.1"),
        2,
        ("--eps", "> 0"),
    ),
    (
        "evaluate --eps nan",
        lambda w: _evaluate(w, "--attack", "FGSM", "--eps", "nan"),
        2,
        ("--eps", "finite"),
    ),
    (
        "evaluate --split val",
        lambda w: _evaluate(w, "--split", "val", *FAST),
        2,
        ("--split", "'val'"),
    ),
    (
        "evaluate --dataset svhn",
        lambda w: _evaluate(w, *FAST, "--dataset", "svhn"),
        2,
        ("--dataset", "svhn", "digits"),
    ),
    (
        "evaluate --model-kwargs list",
        lambda w: _evaluate(w, *FAST, "--model-kwargs", "[1]"),
        2,
        ("--model-kwargs", "JSON object"),
    ),
    (
        "evaluate --model mismatch",
        lambda w: [*_evaluate(w, *FAST)[:2], "simple-cnn", *_evaluate(w, *FAST)[3:]],
        2,
        ("--model 'simple-cnn'", "model.json", "pass --model mlp"),
    ),
    (
        "evaluate --weights folder",
        lambda w: _evaluate(w.parent, *FAST),
        2,
        ("--weights", "is a folder", "model.pt"),
    ),
    ("study run without config", lambda w: ["study", "run"], 2, ("CONFIG", "--preset")),
    (
        "study run --shard 4/4",
        lambda w: ["study", "run", "--preset", "digits", "--shard", "4/4"],
        2,
        ("--shard", "[0, 4)", "got 4"),
    ),
    (
        "study run --shard x",
        lambda w: ["study", "run", "--preset", "digits", "--shard", "x"],
        2,
        ("--shard", "i/n", "'x'"),
    ),
    (
        "study report --confidence 1.5",
        lambda w: ["study", "report", str(w.parent), "--confidence", "1.5"],
        2,
        ("--confidence", "(0, 1)", "'1.5'"),
    ),
    (
        "study run --threads 0",
        lambda w: ["study", "run", "--preset", "digits", "--threads", "0"],
        2,
        ("--threads", ">= 1"),
    ),
    ("unknown command", lambda w: ["frobnicate"], 2, ("COMMAND", "frobnicate", "advrobust --help")),
    (
        "evaluate without --model",
        lambda w: _evaluate(w, *FAST)[:1] + _evaluate(w, *FAST)[3:],
        2,
        ("--model", "required"),
    ),
]


@pytest.mark.parametrize(
    ("case", "argv", "status", "words"), USAGE_CASES, ids=[c[0] for c in USAGE_CASES]
)
def test_cli_usage_errors_are_one_line_naming_the_option(
    case: str,
    argv: Callable[[Path], list[str]],
    status: int,
    words: tuple[str, ...],
    weights: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(argv(weights)) == status
    captured = capsys.readouterr()
    line = _one_error_line(captured.err)
    for word in words:
        assert word in line, (case, line)
    assert captured.out == ""


@pytest.fixture
def eps_required_attack() -> Iterator[str]:
    """A registered attack whose constructor requires eps (as APGD and Square do)."""
    from advrobust.attacks import FGSM, _registry

    class NeedsEps(FGSM):
        def __init__(self, model: torch.nn.Module, eps: float) -> None:
            super().__init__(model, eps=eps)

    _registry._REGISTRY["NeedsEps"] = _registry.AttackInfo("NeedsEps", NeedsEps, "test", "")
    try:
        yield "NeedsEps"
    finally:
        del _registry._REGISTRY["NeedsEps"]


def test_cli_attack_requiring_eps_takes_it_from_the_option(
    eps_required_attack: str, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_evaluate(weights, "--attack", "NEEDSEPS", "--num-examples", "8")) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "--attack NeedsEps needs an eps: pass --eps E" in line
    assert (
        main(_evaluate(weights, "--attack", "needseps", "--eps", "0.1", "--num-examples", "8")) == 0
    )
    assert "adversarial accuracy linf eps=0.1 [NeedsEps]" in capsys.readouterr().out


def test_cli_device_without_cuda_says_what_to_use(
    weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert main(_evaluate(weights, *FAST, "--device", "cuda:0")) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "--device" in line and "CUDA is not available" in line and "--device cpu" in line


# ------------------------------------------------------------------------------ files: status 1


def _truncate(path: Path, keep: int = 100) -> None:
    path.write_bytes(path.read_bytes()[:keep])


def test_cli_non_weights_file(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # was: a traceback (torch's KeyError) or a message without a hint
    text = tmp_path / "notes.pt"
    text.write_text("these are not weights\n")
    assert main(_evaluate(text, *FAST)) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert f"--weights {text} is not a readable weights file" in line
    assert "torch.save(model.state_dict(), PATH)" in line


def test_cli_truncated_model_pt(
    weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cell = tmp_path / "cell"
    shutil.copytree(weights.parent, cell)
    _truncate(cell / "model.pt")
    assert main(_evaluate(cell / "model.pt", *FAST)) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert f"{cell / 'model.pt'} is not a readable weights file (truncated" in line


def test_cli_checkpoint_dict_is_not_a_state_dict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "model": {"w": torch.zeros(2)}}, path)
    assert main(_evaluate(path, *FAST, "--model-kwargs", "{}")) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert f"--weights {path} holds a mapping with keys epoch, model" in line
    assert "not a model state_dict" in line


def _mlp_weights(tmp_path: Path, *, normalize: bool) -> Path:
    norm = ((0.3,), (0.4,)) if normalize else None
    model = create_model(
        "mlp", num_classes=10, in_channels=1, input_size=8, normalize=norm, hidden=16
    )
    path = tmp_path / ("with-norm.pt" if normalize else "no-norm.pt")
    torch.save(model.state_dict(), path)
    return path


def test_cli_weights_without_normalize_hint_no_normalize(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # was: "Error(s) in loading state_dict" with no key list and no hint
    path = _mlp_weights(tmp_path, normalize=False)
    kwargs = ("--model-kwargs", '{"hidden": 16}')
    assert main(_evaluate(path, *FAST, *kwargs)) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert f"--weights {path} does not fit model 'mlp'" in line
    assert "missing keys 0.mean, 0.std, 1.features.0.weight (+" in line
    assert "unexpected keys features.0.weight" in line
    assert "pass --no-normalize" in line
    assert main(_evaluate(path, *FAST, *kwargs, "--no-normalize")) == 0
    assert "adversarial accuracy linf eps=0.1 [FGSM]" in capsys.readouterr().out
    # and the other way round
    path = _mlp_weights(tmp_path, normalize=True)
    assert main(_evaluate(path, *FAST, *kwargs, "--no-normalize")) == 1
    assert "drop --no-normalize" in _one_error_line(capsys.readouterr().err)
    # a different architecture: same keys, other shapes
    assert main(_evaluate(path, *FAST, "--model-kwargs", '{"hidden": 8}')) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "differ in shape, e.g. 1.features.0.weight: (16, 64) in the file, (8, 64)" in line
    assert "--model-kwargs" in line


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"kwargs": [1]}', "\xff\xfe"])
def test_cli_corrupt_model_json_is_named(
    content: str, weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # was: "Expecting value: line 1 column 1" naming neither the file nor what to do
    cell = tmp_path / "cell"
    shutil.copytree(weights.parent, cell)
    (cell / "model.json").write_bytes(content.encode("latin-1"))
    assert main(_evaluate(cell / "model.pt", *FAST)) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert str(cell / "model.json") in line and "--model-kwargs" in line


def test_cli_missing_weights_and_config_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_evaluate(tmp_path / "nope.pt", *FAST)) == 1
    assert f"--weights {tmp_path / 'nope.pt'} does not exist" in _one_error_line(
        capsys.readouterr().err
    )
    assert main(["study", "run", str(tmp_path / "nope.toml")]) == 1
    assert "nope.toml' does not exist" in _one_error_line(capsys.readouterr().err)
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    assert main(["study", "run", str(bad)]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert f"study config {bad}: " in line and "invalid TOML" in line


def test_cli_truncated_npz_is_named(
    study_copy: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # was: zipfile.BadZipFile traceback
    cfg, out = study_copy
    npz = sorted(out.glob("cells/*/per_example.npz"))[0]
    _truncate(npz)
    assert main(["study", "run", str(cfg), "--out", str(out)]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert f"{npz} is corrupt" in line


def test_cli_num_examples_larger_than_the_split_names_the_field(
    tmp_path: Path, make_config: Callable[..., StudyConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    # was: silently cut to the 400 test images of digits
    from advrobust.study import EvalSpec

    cfg = make_config(evaluation=EvalSpec(num_examples=1000)).save(tmp_path / "c.toml")
    assert main(["study", "run", str(cfg), "--out", str(tmp_path / "o")]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "evaluation.num_examples: 1000 examples asked" in line
    assert "test split of digits has 400" in line
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------------- the output folder


def test_cli_out_is_a_file(
    tmp_path: Path, make_config: Callable[..., StudyConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    # was: NotADirectoryError traceback
    cfg = str(make_config().save(tmp_path / "c.json"))
    target = tmp_path / "results.txt"
    target.write_text("keep me\n")
    assert main(["study", "run", cfg, "--out", str(target)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"--out {target} is a file" in line and "folder" in line
    assert main(["study", "run", cfg, "--out", str(target / "sub")]) == 2
    assert f"{target} is a file" in _one_error_line(capsys.readouterr().err)
    assert main(["study", "merge", str(tmp_path), "--out", str(target)]) == 2
    assert "--out" in _one_error_line(capsys.readouterr().err)
    assert target.read_text() == "keep me\n"


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.EROFS, ("read-only file system", "--out")),
        (errno.EACCES, ("permission denied", "--out")),
        (errno.ENOSPC, ("no space left", "rerun the same command", "finished work is kept")),
    ],
    ids=["read-only", "permission", "disk-full"],
)
def test_cli_write_failures_keep_every_file(
    code: int,
    words: tuple[str, ...],
    study_copy: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # was: a traceback; a root user cannot make a folder read-only, so the write fails here
    cfg, out = study_copy
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def failing_fsync(fd: int) -> None:
        raise OSError(code, os.strerror(code), str(out / "results.csv"))

    monkeypatch.setattr(os, "fsync", failing_fsync)  # every atomic write fsyncs
    assert main(["study", "run", str(cfg), "--out", str(out)]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert str(out / "results.csv") in line
    for word in words:
        assert word in line
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # nothing lost, no temporary file left behind


def test_cli_torch_writer_failure_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def full(args: object) -> int:
        raise RuntimeError(
            "[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing "
            "file data/0: file write failed"
        )

    monkeypatch.setattr(_cli, "_cmd_study_run", full)
    assert main(["study", "run", "--preset", "digits"]) == 1
    assert "is the disk full" in _one_error_line(capsys.readouterr().err)


# ---------------------------------------------------------------------- optional packages


def test_cli_missing_scikit_learn_refused_before_anything_is_written(
    tmp_path: Path,
    make_config: Callable[..., StudyConfig],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = str(make_config().save(tmp_path / "c.json"))
    monkeypatch.setitem(sys.modules, "sklearn", None)
    out = tmp_path / "o"
    assert main(["study", "run", cfg, "--out", str(out)]) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "scikit-learn" in line and 'pip install "advrobust[study]"' in line
    assert not out.exists()
    assert main(_evaluate(tmp_path / "w.pt", *FAST)) == 1  # (checked before the weights)
    assert "scikit-learn" in _one_error_line(capsys.readouterr().err)


def test_cli_missing_matplotlib_still_writes_tables_and_summary(
    tmp_path: Path,
    make_config: Callable[..., StudyConfig],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # was: every cell trained, then an ImportError traceback before the summary
    from advrobust.study import DataSpec, EvalSpec, ModelSpec, TrainingSpec

    config = make_config(
        name="noplot",
        data=DataSpec(name="digits", sizes=(40,)),
        models=(ModelSpec("mlp", {"hidden": 8}, label="mlp"),),
        training=TrainingSpec(epochs=1, batch_size=20),
        evaluation=EvalSpec(metrics=("accuracy",), num_examples=8, accuracy_examples=50),
    )
    cfg = config.save(tmp_path / "c.toml")
    out = tmp_path / "o"
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["study", "run", str(cfg), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    warning = captured.err.splitlines()
    assert len(warning) == 1 and warning[0].startswith("advrobust: warning: matplotlib")
    assert 'pip install "advrobust[study]"' in warning[0] and f"study plot {out}" in warning[0]
    assert "accuracy" in captured.out and "results.csv" in captured.out
    assert (out / "results.csv").is_file() and (out / "results.json").is_file()
    assert not list(out.glob("figures/*.png"))
    assert main(["study", "plot", str(out)]) == 1
    assert "matplotlib" in _one_error_line(capsys.readouterr().err)


def test_cli_missing_tomli_w(
    tmp_path: Path,
    make_config: Callable[..., StudyConfig],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = str(make_config().save(tmp_path / "c.json"))
    monkeypatch.setitem(sys.modules, "tomli_w", None)
    assert main(["study", "run", cfg, "--out", str(tmp_path / "o")]) == 1
    assert "tomli-w" in _one_error_line(capsys.readouterr().err)


# ------------------------------------------------------------ pipes, tracebacks, progress


class _ClosedPipe:
    def write(self, text: str) -> int:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")


def test_cli_closed_stdout_exits_quietly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert main(["models", "--dataset", "digits"]) == 141
    assert capsys.readouterr().err == ""


def test_cli_traceback_escape_hatch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "notes.pt"
    text.write_text("not weights")
    with pytest.raises(Exception, match="not a readable weights file"):
        main(_evaluate(text, *FAST, "--traceback"))
    monkeypatch.setenv("ADVROBUST_DEBUG", "1")
    with pytest.raises(Exception, match="not a readable weights file"):
        main(_evaluate(text, *FAST))
    capsys.readouterr()


def test_cli_evaluate_progress_only_on_a_terminal(
    weights: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_evaluate(weights, *FAST)) == 0  # stderr captured: not a terminal
    captured = capsys.readouterr()
    assert captured.err == "" and "[FGSM]" in captured.out
    monkeypatch.setattr(_cli_commands, "stderr_is_terminal", lambda: True)
    assert main(_evaluate(weights, *FAST)) == 0
    captured = capsys.readouterr()
    assert "evaluate" in captured.err and "metric" in captured.err  # the bar
    assert "[FGSM]" in captured.out
    assert main(_evaluate(weights, *FAST, "--no-progress")) == 0
    assert capsys.readouterr().err == ""


def test_library_progress_bars_stay_off_when_stderr_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x, y = torch.rand(8, 1, 2, 2), torch.arange(8) % 3
    M.accuracy(model, (x, y), batch_size=2, progress=True)
    assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------- --suite, --attack


def test_cli_evaluate_suite_calls_robust_accuracy(
    weights: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # evaluate runs the study's adversarial-accuracy task with robust_suite set: the ensemble
    # attacks the correctly classified examples of the sample, the eps in increasing order,
    # each on the examples still robust at the eps before
    calls: list[dict[str, object]] = []

    class Result:
        def __init__(self, n: int) -> None:
            self.robust = torch.ones(n, dtype=torch.bool)
            self.attacks: list[object] = []

    def robust_accuracy(
        model: object, data: tuple[torch.Tensor, torch.Tensor], eps: float, *,
        norm: str = "linf", suite: object = "standard", generator: object = None, **_: object,
    ) -> Result:  # fmt: skip
        calls.append({"n": len(data[1]), "eps": eps, "norm": norm, "suite": suite})
        assert isinstance(generator, torch.Generator)
        return Result(len(data[1]))

    monkeypatch.setattr(M, "robust_accuracy", robust_accuracy, raising=False)
    argv = _evaluate(weights, "--suite", "fast", "--eps", "0.1", "--eps", "0.2", "--norm", "l2")
    assert main([*argv, "--num-examples", "8"]) == 0
    out = capsys.readouterr().out
    correct = calls[0]["n"]
    assert isinstance(correct, int) and 0 < correct <= 8
    assert calls == [
        {"n": correct, "eps": 0.1, "norm": "l2", "suite": "fast"},
        {"n": correct, "eps": 0.2, "norm": "l2", "suite": "fast"},
    ]
    line = next(ln for ln in out.splitlines() if "robust accuracy l2 eps=0.1 [fast]" in ln)
    assert f"{correct / 8:.4f}" in line
    assert "[BIM]" not in out  # --suite alone runs no default attacks


def test_cli_evaluate_suite_without_robust_accuracy_says_so(
    weights: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delattr(M, "robust_accuracy", raising=False)
    assert main(_evaluate(weights, "--suite", "fast", "--eps", "0.1")) == 1
    assert "advrobust.metrics.robust_accuracy" in _one_error_line(capsys.readouterr().err)


@pytest.mark.skipif(not hasattr(M, "robust_accuracy"), reason="robust_accuracy not merged yet")
def test_cli_evaluate_suite_end_to_end(weights: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = _evaluate(weights, "--suite", "fast", "--eps", "0.2", "--num-examples", "8")
    assert main(argv) == 0
    out = capsys.readouterr().out
    value = float(next(ln for ln in out.splitlines() if "[fast]" in ln).split()[-2])
    assert 0.0 <= value <= 1.0


@pytest.mark.parametrize("name", list_attacks())
def test_cli_accepts_every_registered_attack_in_any_case(name: str) -> None:
    parser = _cli.build_parser()
    args = parser.parse_args(
        ["evaluate", "--model", "m", "--weights", "w", "--dataset", "digits",
         "--attack", name.lower(), "--attack", name.upper()]
    )  # fmt: skip
    assert args.attack == [name, name]


# ------------------------------------------------------------------------- real processes


def _run(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("ADVROBUST_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "advrobust", *argv],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        env=env,
        timeout=300,
    )


@pytest.mark.slow  # two fresh interpreters importing torch
def test_cli_real_process_exit_status_and_no_traceback(weights: Path, tmp_path: Path) -> None:
    proc = _run(*_evaluate(weights, *FAST, "--device", "gpu0"), cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "--device" in _one_error_line(proc.stderr)
    text = tmp_path / "notes.pt"
    text.write_text("not weights")
    proc = _run(*_evaluate(text, *FAST), cwd=tmp_path)
    assert proc.returncode == 1
    assert "not a readable weights file" in _one_error_line(proc.stderr)


@pytest.mark.slow  # a fresh interpreter importing torch
def test_cli_real_process_closed_pipe_is_quiet(tmp_path: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "advrobust", "models"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # as `head` does after its lines; before the first write here
    _, err = proc.communicate(timeout=120)
    assert err == b""
    assert proc.returncode == 141


# ------------------------------------------------------------------------------ the mapping


def test_error_message_mapping() -> None:
    from advrobust._device import check_device, device_available
    from advrobust.study._errors import error_message, one_line

    assert one_line("refusing. Changed fields:\n  a\n  b\nUse another --out") == (
        "refusing. Changed fields: a; b; Use another --out"
    )
    full = OSError(errno.ENOSPC, "No space left on device", "/x/results.csv")
    assert error_message(full) == (
        "no space left on the device while writing /x/results.csv; free some space (or pass "
        "an --out folder on another disk) and rerun the same command: finished work is kept",
        1,
    )
    assert error_message(FileNotFoundError("study config 'c.toml' does not exist")) == (
        "study config 'c.toml' does not exist",
        1,
    )
    missing = ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib.pyplot")
    message, status = error_message(missing) or ("", 0)
    assert status == 1 and message.startswith("matplotlib is not installed")
    assert error_message(RuntimeError("a real bug")) is None  # bugs keep their traceback
    broken = ImportError("cannot import name 'x' from 'advrobust.metrics'", name="advrobust")
    assert error_message(broken) is None
    assert error_message(KeyError("x")) is None
    if not torch.cuda.is_available():
        assert device_available(check_device("cuda:3")) == "CUDA is not available on this machine"
    assert device_available(check_device("cpu")) is None
    with pytest.raises(TypeError, match=r"device must be a str or torch\.device, got int 3"):
        check_device(3)
    with pytest.raises(ValueError, match=r"device must be one of .* got ' cpu'"):
        check_device(" cpu")
