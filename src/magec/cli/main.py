"""Entry point of the ``magec`` command.

Start-up is kept light: the sub-command modules only declare their options, and each imports the
library (and torch) inside its ``run``. Every failure ends as one line on stderr:
``magec: error: <file>: <problem>`` and exit 1 for refused input or environment problems (``MagecError``,
operating-system errors, exhausted memory), argparse's exit 2 for a malformed command line, and
``magec: interrupted`` with exit 130 for Ctrl-C at any moment. SIGTERM (``kill``) is handled as Ctrl-C is, so
the same cleanup runs (temporary files removed, unwritten claims withdrawn), and exits 143 (128 + 15, the
shell's code for a terminated command) with the same line. A second Ctrl-C or SIGTERM during that cleanup
ends the process at once. ``MAGEC_DEBUG=1`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from magec import __version__
from magec.errors import MagecError

#: Sub-command modules, in help order; each has ``register(subparsers)`` setting ``func`` on its parser.
COMMAND_MODULES: tuple[str, ...] = (
    "magec.cli.cmd_demo",
    "magec.cli.cmd_prepare",
    "magec.cli.cmd_preview",
    "magec.cli.cmd_invert",
    "magec.cli.cmd_edit",
    "magec.cli.cmd_export_directions",
    "magec.cli.cmd_evaluate",
    "magec.cli.cmd_studio",
    "magec.cli.cmd_study",
    "magec.cli.cmd_bench",
    "magec.cli.cmd_convert",
    "magec.cli.cmd_align",
    "magec.cli.cmd_train_describer",
    "magec.cli.cmd_train_encoder",
    "magec.cli.cmd_doctor",
)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a malformed command line is one ``magec: error:`` line (plus where to find help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"magec: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="magec", description="Editable GAN inversion with the MAGEC loss.")
    parser.add_argument("--version", action="version", version=f"magec {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


class _CurrentStderr(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is when a line is logged: a program that runs ``main`` twice may have
    swapped it in between (a handler bound to the first one would write into a closed stream)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _setup_logging() -> None:
    """Library notes (e.g. a perceptual-loss fallback) reach the user as ``magec: ...`` lines on stderr."""
    logger = logging.getLogger("magec")
    if not logger.handlers:
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("magec: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` as one line.

    An error raised in a worker process (a DataLoader worker) arrives wrapped with the worker's
    traceback; the original error is its last line, ``module.Type: message``.
    """
    text = str(exc).strip()
    if "Original Traceback" in text or "Traceback (most recent call last)" in text:
        last = [line for line in text.splitlines() if line.strip()][-1].strip()
        text = (
            last.split(": ", 1)[1]
            if last.split(": ", 1)[0].endswith(("MagecError", "Error")) and ": " in last
            else last
        )
    return " ".join(text.split())


def _os_error_line(exc: OSError) -> str:
    where = exc.filename if exc.filename is not None else None
    problem = exc.strerror or one_line(exc) or type(exc).__name__
    return f"{where}: {problem}" if where is not None else problem


#: Exit codes: Ctrl-C (SIGINT) and SIGTERM.
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be, so that the same cleanup runs."""


@contextmanager
def interrupt_handlers(restore: bool = True) -> Iterator[None]:
    """For the command's duration (main thread only): SIGINT raises KeyboardInterrupt and SIGTERM
    :class:`Terminated`; a second signal, arriving while the first one's cleanup runs, ends the process at once.
    The previous handlers are restored afterwards (``main`` may run inside another program); ``restore=False``
    (the program itself, which ends next) keeps ours, so that a second signal is never a traceback."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        received.append(signum)
        if len(received) > 1:
            os.write(2, b"magec: interrupted\n")
            os._exit(EXIT_TERMINATED if signum == signal.SIGTERM else EXIT_INTERRUPTED)
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in (previous if restore else {}).items():
            if handler is not None:  # None: a handler not installed from Python, which cannot be put back
                signal.signal(sig, handler)


def _close_progress_bars() -> None:
    """Close the progress bars an interrupt left open, so that ``magec: interrupted`` starts its own line."""
    std = sys.modules.get("tqdm.std")  # never imported here: only if a command used it
    for bar in list(getattr(getattr(std, "tqdm", None), "_instances", ())):
        try:
            bar.close()
        except Exception:  # a bar that cannot be closed must not hide the interrupt
            pass


def _exit_now(code: int) -> NoReturn:
    """End an interrupted program at once: the cleanup it needs already ran while the interrupt unwound (temporary
    files, claims, worker pools), then the exit handlers (Ray, multiprocessing, logging) run here; what is skipped
    is the interpreter's teardown of every loaded module, which takes seconds once torch is loaded.

    Prints ``magec: interrupted``; a second signal from then on (e.g. while Ray shuts down) ends the process at
    once, with that one line."""
    import atexit

    printed: list[bool] = []

    def on_second(signum: int, frame: object) -> None:
        if not printed:
            os.write(2, b"magec: interrupted\n")
        os._exit(code)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_second)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})  # the line and its mark, together
    try:
        print("magec: interrupted", file=sys.stderr, flush=True)
        printed.append(True)
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _out_of_memory(exc: BaseException) -> bool:
    """MemoryError, torch's ``OutOfMemoryError`` or a RuntimeError saying so (checked without importing torch)."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "allocate memory" in text)


def _out_of_memory_line(exc: BaseException) -> str:
    """One line for an out-of-memory that no chunking caught: where, and the option to lower."""
    text = str(exc).lower()
    where = "GPU memory" if ("cuda" in text or "gpu" in text or type(exc).__name__ == "OutOfMemoryError") else "memory"
    return f"out of {where}: lower --batch-size (or use a smaller image or model)"


def main(argv: list[str] | None = None) -> int:
    debug = os.environ.get("MAGEC_DEBUG", "") not in ("", "0")
    try:
        with interrupt_handlers(restore=argv is not None):
            parser = build_parser()
            args = parser.parse_args(argv)
            _setup_logging()
            return int(args.func(args) or 0)
    except KeyboardInterrupt as exc:
        _close_progress_bars()
        code = EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
        if argv is None:  # the program itself (not a call from Python): end now
            _exit_now(code)
        print("magec: interrupted", file=sys.stderr)
        return code
    except SystemExit:
        raise
    except Exception as exc:
        if debug:
            raise
        if isinstance(exc, MagecError) or "MagecError" in str(exc):
            line = one_line(exc)
        elif isinstance(exc, OSError):
            line = _os_error_line(exc)
        elif _out_of_memory(exc):
            line = _out_of_memory_line(exc)
        else:
            line = (
                f"unexpected {type(exc).__name__}: {one_line(exc)} "
                "(this is a bug in magec; please report it, with MAGEC_DEBUG=1 for the traceback)"
            )
        print(f"magec: error: {line}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
