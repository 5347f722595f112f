"""A study under torchrun: two gloo ranks train every cell together, rank 0 writes the records."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from advrobust.study import StudyConfig, enumerate_cells


@pytest.mark.slow
@pytest.mark.distributed
def test_study_runs_under_torchrun(
    tmp_path: Path,
    make_config: Callable[..., StudyConfig],
    study_run_command: Callable[..., tuple[list[str], dict[str, str]]],
) -> None:
    config = make_config(name="ddp")
    path = config.save(tmp_path / "ddp.toml")
    out = tmp_path / "out"
    cmd, env = study_run_command(
        path, out, "torch.distributed.run", "--nproc_per_node=2", "--standalone"
    )
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("cells finished in") == 1  # only rank 0 reports
    for cell in enumerate_cells(config):
        record = json.loads((out / "cells" / cell.key / "cell.json").read_text())
        assert record["key"] == cell.key
    assert (out / "results.csv").is_file()
