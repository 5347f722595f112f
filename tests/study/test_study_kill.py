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


def _children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc")
def test_study_killed_with_workers_leaves_no_orphan_and_resumes(
    tmp_path: Path, study_run_command: Callable[..., tuple[list[str], dict[str, str]]]
) -> None:
    # jobs = 2: a kill -9 of the study process takes its workers with it (no orphan goes on
    # writing into the folder), and the rerun finishes the same table as one process
    config = tiny_config()
    path = config.save(tmp_path / "tiny.toml")
    reference = tmp_path / "reference"
    argv, env = study_run_command(path, reference)
    subprocess.run(argv, env=env, check=True, capture_output=True, timeout=600)
    expected = _table(reference)

    out = tmp_path / "killed"
    argv, env = study_run_command(path, out)
    proc = subprocess.Popen(
        [*argv, "--jobs", "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    workers: list[int] = []
    deadline = time.monotonic() + 120
    while len(workers) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
        workers = _children(proc.pid)
    assert len(workers) == 2, "the study did not start two workers"
    time.sleep(1.0)  # (mid-cell)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    deadline = time.monotonic() + 30
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), "a worker outlived the killed study"
    done = subprocess.run(
        [*argv, "--jobs", "2"], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert _table(out) == expected
