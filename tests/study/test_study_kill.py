"""Fault injection: ``kill -9`` a real study run at several moments, rerun, compare bit for bit.

A study process killed at any moment (while training a cell, between evaluation parts, while
writing a record) leaves only files that load; rerunning the same command resumes and writes a
results table identical, value for value, to the table of an uninterrupted run.
"""

from __future__ import annotations

import csv
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import tiny_config


def _table(out: Path) -> list[dict[str, str]]:
    with (out / "results.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return sorted(rows, key=lambda r: sorted(r.items()))


@pytest.mark.slow
def test_study_killed_at_any_moment_resumes_to_the_same_table(
    tmp_path: Path, study_run_command: Callable[..., tuple[list[str], dict[str, str]]]
) -> None:
    config = tiny_config(models=tiny_config().models[:1])
    path = config.save(tmp_path / "tiny.toml")
    reference = tmp_path / "reference"
    argv, env = study_run_command(path, reference)
    subprocess.run(argv, env=env, check=True, capture_output=True, timeout=600)
    expected = _table(reference)
    assert expected

    for delay in (2.0, 4.0, 6.0, 9.0):
        out = tmp_path / f"killed-{delay:g}"
        argv, env = study_run_command(path, out)
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        # whatever is on disk now must be loadable by the rerun, which finishes the study
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        assert _table(out) == expected, f"killed after {delay} s"
