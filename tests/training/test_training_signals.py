"""SIGTERM (and SIGINT) mid-step: the checkpoint resumes bit for bit (real subprocesses)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from advrobust.training import load_checkpoint
from advrobust.training._interrupts import DeferredInterrupt

EPOCH_STEPS = 5
WORKER = Path(__file__).resolve().parent / "_training_signal_worker.py"


def _run(ckpt: Path, out: Path, mode: str, point: str = "none", at: int = 0) -> tuple[int, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, str(WORKER), str(ckpt), str(out), mode, point, str(at)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )
    assert proc.returncode in (0, 3, -signal.SIGTERM), proc.stdout + proc.stderr
    return proc.returncode, proc.stdout


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    folder = tmp_path_factory.mktemp("reference")
    assert _run(folder / "ckpt", folder / "final.pt", "cli")[0] == 0
    return torch.load(folder / "final.pt", weights_only=True)


# 5 steps per epoch, 3 epochs (15 steps); the cosine LR changes every epoch
CASES = [
    ("cli", "optimizer", 7),  # mid-epoch, right after the weights moved
    ("cli", "attack", 3),  # inside the attack, before the update
    ("cli", "scheduler", 2),  # inside the end-of-epoch commit
    ("default", "optimizer", 8),  # killed at once: the last epoch's checkpoint resumes
]


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "point", "at"), CASES)
def test_training_sigterm_mid_step_resumes_bit_exact(tmp_path, reference, mode, point, at):
    ckpt, final = tmp_path / "ckpt", tmp_path / "final.pt"
    status, out = _run(ckpt, final, mode, point, at)
    if mode == "cli":  # SIGTERM -> KeyboardInterrupt after the step; resumed in-process
        assert status == 3
        # the step SIGTERM came in was committed (and checkpointed) before it acted
        done = at * EPOCH_STEPS if point == "scheduler" else at
        assert f"checkpoint at step {done}\n" in out
    else:  # the operating system's SIGTERM: dead at once, resumed by a new process
        assert status == -signal.SIGTERM and not final.exists()
        assert load_checkpoint(ckpt / "last.pt")["counters"]["step"] == EPOCH_STEPS
        assert [p.name for p in ckpt.iterdir()] == ["last.pt"]  # no temporary file left
        assert _run(ckpt, final, "resume")[0] == 0
    resumed = torch.load(final, weights_only=True)
    assert resumed.keys() == reference.keys()
    for key, value in reference.items():
        assert torch.equal(resumed[key], value), key


def test_training_deferred_interrupt_delays_python_handlers_until_the_step_ends():
    calls: list[str] = []

    def handler(signum: int, frame: object) -> None:
        calls.append(signal.Signals(signum).name)

    old_int = signal.signal(signal.SIGINT, handler)
    old_term = signal.signal(signal.SIGTERM, handler)
    try:
        with DeferredInterrupt() as guard:
            with guard.critical():
                signal.raise_signal(signal.SIGTERM)
                signal.raise_signal(signal.SIGINT)
                signal.raise_signal(signal.SIGTERM)  # a repeat is delivered once
                assert calls == [] and guard.pending
            assert calls == ["SIGTERM", "SIGINT"]
            signal.raise_signal(signal.SIGTERM)  # outside a step: at once
            assert calls == ["SIGTERM", "SIGINT", "SIGTERM"]
        assert signal.getsignal(signal.SIGTERM) is handler  # restored
        assert signal.getsignal(signal.SIGINT) is handler
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


def test_training_deferred_interrupt_ctrl_c_raises_after_the_step():
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finished = False
    with DeferredInterrupt() as guard, pytest.raises(KeyboardInterrupt), guard.critical():
        signal.raise_signal(signal.SIGINT)
        finished = True
    assert finished
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_training_deferred_interrupt_leaves_os_dispositions_alone():
    old = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with DeferredInterrupt():
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, old)
