"""The advrobust command line through main([...]): commands, outputs and error messages."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from advrobust.attacks import list_attacks
from advrobust.study import StudyConfig, StudyResult, enumerate_cells, list_presets
from advrobust.study._cli import main


def test_study_cli_unknown_preset_lists_valid_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study", "run", "--preset", "digitz"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("advrobust: error: unknown preset 'digitz'")
    assert "digits" in err and "cifar10-000" in err and "kurakin-label-leak" in err


def test_study_cli_bad_config_value_names_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        'name = "x"\n[data]\nsizes = [10]\n[[models]]\nname = "mlp"\n[training]\nepochs = 0\n'
    )
    assert main(["study", "run", str(path), "--out", str(tmp_path / "o")]) == 1
    assert "training.epochs: must be >= 1, got 0" in capsys.readouterr().err
    path.write_text('name = "x"\n[data]\nsizes = [10]\n[[models]]\nname = "lenet"\n')
    assert main(["study", "run", str(path)]) == 1
    err = capsys.readouterr().err
    assert "models[0].name: unknown model 'lenet'" in err and "resnet-20" in err
    path.write_text('name = "x"\n[data]\nname = "svhn"\nsizes = [10]\n[[models]]\nname = "mlp"\n')
    assert main(["study", "run", str(path)]) == 1
    assert "data.name: unknown dataset 'svhn'; valid datasets:" in capsys.readouterr().err
    path.write_text(
        'name = "x"\n[data]\nsizes = [10]\n[[models]]\nname = "mlp"\n'
        '[evaluation]\nmetrics = ["accuracy", "fid"]\n'
    )
    assert main(["study", "run", str(path)]) == 1
    err = capsys.readouterr().err
    assert "evaluation.metrics[1]: unknown value 'fid'; valid values:" in err
    assert "robustness-linf" in err


def test_study_cli_subset_too_large_names_data_sizes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "big.toml"
    path.write_text('name = "x"\n[data]\nsizes = [5000]\n[[models]]\nname = "mlp"\n')
    assert main(["study", "run", str(path), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "data.sizes:" in err and "1340" in err
    assert not (tmp_path / "o").exists()


def test_study_cli_needs_config_or_preset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study", "run"]) == 2  # a usage error
    assert "CONFIG file or --preset" in capsys.readouterr().err
    assert main(["study", "frobnicate"]) == 2
    assert capsys.readouterr().err.startswith("advrobust: error: argument SUBCOMMAND")


def test_study_cli_missing_dataset_files_say_where(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "study",
            "run",
            "--preset",
            "mnist-000",
            "--root",
            str(tmp_path / "nodata"),
            "--out",
            str(tmp_path / "o"),
            "--no-progress",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert str(tmp_path / "nodata") in err
    assert "--root" in err
    assert not (tmp_path / "o").exists()  # nothing written before the data is there


def test_study_cli_run_resume_plot_merge(
    tiny: tuple[StudyConfig, StudyResult], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, result = tiny
    cfg_path = config.save(tmp_path / "tiny.toml")
    assert (
        main(["study", "run", str(cfg_path), "--out", str(result.out_dir), "--device", "cpu"]) == 0
    )
    out = capsys.readouterr().out
    assert "ran 0 cell(s), skipped 4 finished cell(s)" in out
    assert "model" in out and "accuracy" in out and "robustness_linf" in out
    assert main(["study", "plot", str(result.out_dir), "--out", str(tmp_path / "figs")]) == 0
    assert {"tiny-curves.png", "tiny-curves.svg", "tiny-curves.pdf"} <= {
        p.name for p in (tmp_path / "figs").iterdir()
    }
    capsys.readouterr()
    assert main(["study", "plot", str(tmp_path / "missing")]) == 1
    assert f"{tmp_path / 'missing'} does not exist" in capsys.readouterr().err
    assert main(["study", "plot", str(tmp_path / "figs")]) == 1
    assert "holds no results.json" in capsys.readouterr().err
    assert main(["study", "merge", str(result.out_dir), "--out", str(tmp_path / "m")]) == 0
    assert "4/4 cells finished" in capsys.readouterr().out
    assert (tmp_path / "m" / "results.csv").read_text() == (
        result.out_dir / "results.csv"
    ).read_text()


def test_study_cli_presets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study", "presets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list_presets()
    # the first sentence, not cut at "et al." or "eq. 4"
    leak = next(line for line in lines if line.startswith("kurakin-label-leak"))
    assert "Kurakin et al. 2016 sec. 4.2 on MNIST" in leak
    digits = next(line for line in lines if line.startswith("digits"))
    assert "(eq" not in digits or "(eq. " in digits
    assert all(len(line) <= 32 + 100 for line in lines)
    assert main(["study", "presets", "--show", "digits"]) == 0
    assert StudyConfig.from_toml(capsys.readouterr().out).name == "digits"


def test_study_cli_models_lists_parameter_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--dataset", "mnist", "--filter", "simple-*"]) == 0
    out = capsys.readouterr().out
    assert "simple-cnn" in out and "312,202" in out  # paper 000 table 1
    assert main(["models", "--dataset", "cifar10"]) == 0
    out = capsys.readouterr().out
    assert "3,157,002" in out  # the CIFAR-10 2-layer perceptron of table 1
    assert main(["models", "--dataset", "svhn"]) == 2
    assert "valid: digits, mnist, cifar10" in capsys.readouterr().err


def _evaluate(weights: Path, *options: str, model: str = "mlp") -> int:
    return main(
        ["evaluate", "--model", model, "--weights", str(weights), "--dataset", "digits", *options]
    )


def test_study_cli_evaluate_saved_weights(
    tiny: tuple[StudyConfig, StudyResult], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, result = tiny
    key = enumerate_cells(config)[0].key
    weights = result.out_dir / "cells" / key / "model.pt"
    small = ["--num-examples", "16", "--device", "cpu"]
    assert _evaluate(weights, "--attack", "BIM", "--attack", "fgsm", "--eps", "0.1", *small) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "adversarial accuracy linf eps=0.1 [BIM]" in out
    assert "[FGSM]" in out
    assert _evaluate(weights, "--attack", "BIM", *small) == 0
    assert "mean minimal linf distortion [BIM]" in capsys.readouterr().out
    cw = 'cwl2={"steps": 20, "binary_search_steps": 2}'
    assert _evaluate(weights, "--attack", "CWL2", "--attack-kwargs", cw, *small) == 0
    assert "mean minimal l2 distortion [CWL2]" in capsys.readouterr().out
    bad = 'CWL2={"stepz": 20}'
    assert _evaluate(weights, "--attack", "CWL2", "--attack-kwargs", bad, *small) == 2
    assert "--attack-kwargs for CWL2" in capsys.readouterr().err
    assert _evaluate(weights, "--attack-kwargs", "CWL2=[1]", *small) == 2
    assert "must be an object" in capsys.readouterr().err
    assert _evaluate(weights, "--attack", "DeepFool") == 2
    valid = ", ".join(list_attacks())  # the registry's names, not a list of the CLI's own
    assert f"unknown attack 'DeepFool'; valid attacks: {valid}" in capsys.readouterr().err
    # the model.json beside a study's weights names the model: a different --model is refused
    assert _evaluate(weights, *small, model="simple-cnn") == 2
    err = capsys.readouterr().err
    assert "--model 'simple-cnn' does not match" in err and "pass --model mlp" in err
    # weights without a model.json that do not fit the named model
    loose = tmp_path / "weights.pt"
    shutil.copy(weights, loose)
    assert _evaluate(loose, "--model-kwargs", "{}", *small, model="simple-cnn") == 1
    err = capsys.readouterr().err
    assert f"{loose} does not fit model 'simple-cnn': missing keys" in err
    assert "--model-kwargs" in err


def test_study_cli_python_dash_m(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "advrobust", "--version"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("advrobust ")


def test_study_cli_sigterm_checkpoints_and_rerun_resumes(
    tmp_path: Path,
    make_config: Callable[..., StudyConfig],
    study_run_command: Callable[..., tuple[list[str], dict[str, str]]],
) -> None:
    import signal
    import time

    from advrobust.study import DataSpec, EvalSpec, ModelSpec, TrainingSpec

    config = make_config(
        name="preempted",
        data=DataSpec(name="digits", sizes=(80,)),
        models=(ModelSpec("mlp", {"hidden": 16}, label="mlp"),),
        # a checkpoint every epoch (a study's default is at most one a minute): the signal is
        # sent once the first one exists
        training=TrainingSpec(epochs=300, batch_size=16, checkpoint_seconds=0.0),
        evaluation=EvalSpec(metrics=("accuracy",), num_examples=8),
    )
    path = config.save(tmp_path / "c.toml")
    out = tmp_path / "out"
    cmd, env = study_run_command(path, out)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ckpt = out / "cells" / "n0000080-mlp-clean" / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not ckpt.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    if proc.returncode == 0:  # finished before the signal arrived: nothing to resume
        pytest.skip("training finished before SIGTERM")
    assert proc.returncode == 130, err[-2000:]
    assert "rerun the same command to resume" in err
    assert ckpt.is_file()
    assert not (ckpt.parents[1] / "cell.json").exists()
    assert main(["study", "run", str(path), "--out", str(out), "--no-progress"]) == 0
    assert (ckpt.parents[1] / "cell.json").is_file()
    assert not ckpt.exists()


def test_study_cli_interrupt_inside_cleanup_still_means_resume(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGTERM during torch.save surfaces as torch's RuntimeError raised while handling it."""
    from advrobust.study import _cli

    def preempted(args: object) -> int:
        try:
            raise KeyboardInterrupt("signal 15")
        except KeyboardInterrupt:
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos") from None

    monkeypatch.setattr(_cli, "_cmd_study_run", preempted)
    assert main(["study", "run", "--preset", "digits"]) == 130
    assert "rerun the same command to resume" in capsys.readouterr().err

    def broken(args: object) -> int:
        raise RuntimeError("a real bug")

    monkeypatch.setattr(_cli, "_cmd_study_run", broken)
    with pytest.raises(RuntimeError, match="a real bug"):
        main(["study", "run", "--preset", "digits"])
