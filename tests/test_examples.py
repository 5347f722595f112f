"""Every script in ``examples/`` runs on its ``--quick`` settings, and so does the notebook."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py"))
# Scripts that need a launcher: DDP training runs under torchrun with two CPU (gloo) processes.
LAUNCH = {
    "train_ddp.py": [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
    ],
}


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "error"})
    return env


def test_examples_exist() -> None:
    expected = {
        "quickstart.py",
        "robustness_vs_data.py",
        "kurakin_training.py",
        "transfer_matrix.py",
        "label_leaking.py",
        "capacity.py",
        "train_ddp.py",
        "linear_regression.py",
    }
    assert expected <= set(SCRIPTS), f"missing examples: {sorted(expected - set(SCRIPTS))}"
    assert (EXAMPLES / "quickstart.ipynb").is_file()


@pytest.mark.parametrize("script", SCRIPTS)
def test_example_runs(script: str, tmp_path: Path) -> None:
    cmd = [*LAUNCH.get(script, [sys.executable]), str(EXAMPLES / script), "--quick"]
    env = _env()
    if script in LAUNCH:
        env.pop("PYTHONWARNINGS")
    proc = subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.stdout.strip(), f"{script} printed nothing"


def test_quickstart_notebook_executes(tmp_path: Path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(EXAMPLES / "quickstart.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert outputs, "the notebook produced no output"
