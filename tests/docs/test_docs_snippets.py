"""Every ```python block of README.md and docs/**/*.md runs on its own, in a fresh interpreter.

A block is a complete program: a reader who copies it into a file gets the output it promises.
Blocks run from a temporary folder (whatever they write lands there) with the worktree on
``PYTHONPATH``. The whole set takes a few minutes on two CPU cores, so it is marked slow
(``nox -s tests_slow`` runs it). A block can opt out with an HTML comment
``<!-- snippet: skip -->`` on the line before its fence (none does today).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_FENCE = re.compile(r"(?P<skip><!-- snippet: skip -->\n)?```python\n(?P<code>.*?)\n```", re.DOTALL)


def _snippets() -> list[tuple[str, str]]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    out: list[tuple[str, str]] = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for i, match in enumerate(_FENCE.finditer(text)):
            if match.group("skip"):
                continue
            line = text[: match.start()].count("\n") + 1
            out.append((f"{page.relative_to(ROOT)}:{line}#{i}", match.group("code")))
    return out


SNIPPETS = _snippets()


def test_docs_have_python_snippets() -> None:
    names = {name.split(":")[0] for name, _ in SNIPPETS}
    assert "README.md" in names and len(SNIPPETS) >= 20


@pytest.mark.slow
@pytest.mark.parametrize(("name", "code"), SNIPPETS, ids=[name for name, _ in SNIPPETS])
def test_docs_snippet_runs_alone(name: str, code: str, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "OMP_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
    }
    proc = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stderr[-3000:]}"
