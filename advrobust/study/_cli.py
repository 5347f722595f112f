"""The ``advrobust`` command line (also ``python -m advrobust``).

Commands::

    advrobust study run CONFIG | --preset NAME [--out DIR] [--shard i/n] [--device D] [--root DIR]
    advrobust study merge OUT_DIRS... --out DIR [--device D] [--root DIR]
    advrobust study plot DIR
    advrobust study report DIR [--confidence C]
    advrobust study presets [--show NAME]
    advrobust models [--dataset NAME | --num-classes K --in-channels C --input-size S] [--filter P]
    advrobust evaluate --model NAME --weights FILE --dataset NAME [--attack NAME ...] [--eps E ...]
                       [--suite standard|fast --eps E [--norm linf|l2]]

Every command maps onto the Python API (:mod:`advrobust.study`). Every user or operating-system
error prints one line, ``advrobust: error: ...``, that says what to do, and exits with status 2
(a usage error: a bad option) or 1 (a runtime error: a file, the disk, a missing package); see
:mod:`advrobust.study._errors`. ``--traceback`` (or ``ADVROBUST_DEBUG=1``) re-raises instead.
Progress bars are drawn only when stderr is a terminal.

The parser is built in :mod:`._cli_parser` from the option types of :mod:`._cli_args`; the
commands are the ``_cmd_*`` handlers of :mod:`._cli_commands`; this module dispatches to them
and turns errors into exit statuses.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ._cli_commands import (
    _cmd_evaluate,
    _cmd_models,
    _cmd_study_merge,
    _cmd_study_plot,
    _cmd_study_presets,
    _cmd_study_report,
    _cmd_study_run,
)
from ._cli_parser import build_parser as build_parser
from ._errors import debug_requested, error_message

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``advrobust`` command line; returns the exit status.

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        0 on success; 1 on a runtime error and 2 on a usage error, each printed to stderr as
        one ``advrobust: error: ...`` line that says what to do; 130 when interrupted; 141 when
        stdout is closed early (``advrobust models | head``), quietly, as Unix tools do.
        With ``--traceback`` or ``ADVROBUST_DEBUG=1`` errors are re-raised instead.
    """
    debug = debug_requested(None if argv is None else list(argv))
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, --version, or a usage error already printed
        return stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 2
    handlers = {
        ("study", "run"): _cmd_study_run,
        ("study", "merge"): _cmd_study_merge,
        ("study", "plot"): _cmd_study_plot,
        ("study", "report"): _cmd_study_report,
        ("study", "presets"): _cmd_study_presets,
        ("models", None): _cmd_models,
        ("evaluate", None): _cmd_evaluate,
    }
    handler = handlers[(args.command, getattr(args, "study_command", None))]
    try:
        status = handler(args)
        sys.stdout.flush()  # a closed pipe surfaces here, not at interpreter exit
        return status
    except BrokenPipeError:
        _silence_stdout()
        return 141
    except KeyboardInterrupt:
        if debug:
            raise
        print(_INTERRUPTED, file=sys.stderr)
        return 130
    except Exception as error:
        # Ctrl-C or SIGTERM inside a library's cleanup (e.g. torch.save closing a checkpoint
        # file) surfaces as that library's error raised while handling the interrupt
        if _caused_by_interrupt(error) and not debug:
            print(_INTERRUPTED, file=sys.stderr)
            return 130
        found = error_message(error)
        if found is None or debug:
            raise
        message, status = found
        print(f"advrobust: error: {message}", file=sys.stderr)
        return status


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does not fail again."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (e.g. captured)
        pass


_INTERRUPTED = "advrobust: interrupted; rerun the same command to resume"


def _caused_by_interrupt(error: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
