"""Developer sessions: tests, tests_slow, lint, typecheck, docs, benchmarks, study (the main job).

Every session installs torch==2.13.0 first (a CPU build where one lies on the machine's disk), so
that the package's own range requirement on torch never pulls a multi-GB CUDA build.
"""

from __future__ import annotations

import os

import nox

# virtualenv, not uv: uv ignores the pip configuration that points at the local torch build.
nox.options.default_venv_backend = "virtualenv"
nox.options.sessions = ["lint", "typecheck", "tests", "docs"]
nox.options.reuse_existing_virtualenvs = True

TORCH = os.environ.get("ADVROBUST_TORCH", "torch==2.13.0")
PY = "3.11"


def _install(session: nox.Session, extras: str) -> None:
    session.install(TORCH)
    session.install("-e", f".[{extras}]")


@nox.session(python=PY)
def tests(session: nox.Session) -> None:
    """The default (fast) test suite, warnings as errors."""
    _install(session, "test")
    session.run("pytest", *session.posargs)


@nox.session(python=PY)
def tests_slow(session: nox.Session) -> None:
    """The slow tests (paper phenomena on digits, full presets, distributed)."""
    _install(session, "test")
    session.run("pytest", "-m", "slow", *session.posargs)


@nox.session(python=PY)
def lint(session: nox.Session) -> None:
    """Ruff lint and format check."""
    session.install("ruff==0.17.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PY)
def typecheck(session: nox.Session) -> None:
    """Mypy with strict flags on the package."""
    _install(session, "test")
    session.run("mypy")


@nox.session(python=PY)
def docs(session: nox.Session) -> None:
    """Build the docs site with --strict (``nox -s docs -- --serve`` serves it)."""
    _install(session, "docs")
    session.env["NO_MKDOCS_2_WARNING"] = "1"
    if "--serve" in session.posargs:
        session.run("mkdocs", "serve")
    else:
        session.run("mkdocs", "build", "--strict", "--site-dir", "site")


@nox.session(python=PY)
def benchmarks(session: nox.Session) -> None:
    """Speed ratios measured in one run (``nox -s benchmarks -- --quick`` for a short run)."""
    _install(session, "bench")
    # For the side-by-side PGD timing: torchattacks' own requirements would pull torchvision
    # (which does not import beside every torch build), so it comes without them, best effort.
    session.run("python", "-m", "pip", "install", "--no-deps", "torchattacks", success_codes=[0, 1])
    for script in sorted(os.listdir("benchmarks")):
        if script.startswith("bench_") and script.endswith(".py"):
            session.run("python", f"benchmarks/{script}", *session.posargs)


@nox.session(python=PY)
def study(session: nox.Session) -> None:
    """The main job: the ``digits`` study preset, its table and its plots in ``study-digits/``."""
    _install(session, "study")
    args = session.posargs or ["--preset", "digits", "--out", "study-digits"]
    session.run("advrobust", "study", "run", *args)
