"""Shared fixtures of the study tests: one tiny real study, run once per session."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from advrobust.study import (
    AttackSpec,
    DataSpec,
    EvalSpec,
    ModelSpec,
    StudyConfig,
    StudyResult,
    TrainingSpec,
    run_study,
)


def tiny_config(**changes: object) -> StudyConfig:
    """A real digits study small enough for the default test suite (seconds on one core)."""
    base: dict[str, object] = {
        "name": "tiny",
        "data": DataSpec(name="digits", sizes=(40, 80)),
        "models": (
            ModelSpec("mlp", {"hidden": 32}, label="mlp"),
            ModelSpec("simple-cnn", {"width": 0.25}, label="cnn"),
        ),
        "training": TrainingSpec(epochs=5, batch_size=16, lr=1e-2),
        "evaluation": EvalSpec(
            num_examples=24,
            accuracy_examples=200,
            linf_tol=0.01,
            l2_attack=AttackSpec("CWL2", {"steps": 10, "binary_search_steps": 2, "lr": 0.1}),
            deltas=(0.1, 0.2),
            delta_attack=AttackSpec("BIM", {"steps": 5, "rel_alpha": 0.2}),
            linf_attack=AttackSpec("BIM", {"steps": 5, "rel_alpha": 0.2}),
        ),
        "threads": 1,
    }
    base.update(changes)
    return StudyConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory: pytest.TempPathFactory) -> tuple[StudyConfig, StudyResult]:
    out = tmp_path_factory.mktemp("tiny") / "study"
    config = tiny_config()
    result = run_study(config, out, progress=False, stream=None)
    return config, result


@pytest.fixture
def tiny(tiny_study: tuple[StudyConfig, StudyResult]) -> tuple[StudyConfig, StudyResult]:
    return tiny_study


def _study_run_command(config: Path, out: Path, *launcher: str) -> tuple[list[str], dict[str, str]]:
    command = (
        [sys.executable, "-m", *launcher, "-m", "advrobust"]
        if launcher
        else [
            sys.executable,
            "-m",
            "advrobust",
        ]
    )
    command += ["study", "run", str(config), "--out", str(out), "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parents[2]))
    return command, env


@pytest.fixture
def study_run_command() -> Callable[..., tuple[list[str], dict[str, str]]]:
    """``(argv, env)`` of ``advrobust study run CONFIG --out OUT`` in a fresh interpreter.

    ``launcher`` (e.g. ``"torch.distributed.run", "--nproc_per_node=2"``) runs it under that
    module instead of plain ``python -m advrobust``.
    """
    return _study_run_command


@pytest.fixture
def make_config() -> Callable[..., StudyConfig]:
    """The tiny config builder, for tests that need variations."""
    return tiny_config
