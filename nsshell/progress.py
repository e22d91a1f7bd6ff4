"""Progress of long operations, with no notion of a screen on the caller's side.

Core code reports through the session's reporter and never asks where it goes:

    with session.progress.task("scanning processes", total=len(pids)) as task:
        for pid in pids:
            ...
            task.advance()

On a terminal (stderr is a tty) a one-line counter appears after a short delay
and is erased when the task ends; in a pipe, under --json with stderr not a
terminal, or with TERM=dumb, nothing is written.  Code that has no session
takes a `progress: Progress = NULL` argument.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False   # typing is not imported to start (tests/test_imports.py)
if TYPE_CHECKING:
    from typing import TextIO


class Task:
    """One long operation; a context manager.  The base class draws nothing."""

    def __init__(self, what: str = "", total: int | None = None):
        self.what = what
        self.total = total
        self.done = 0

    def advance(self, n: int = 1, note: str | None = None) -> None:
        self.done += n

    def update(self, done: int | None = None, note: str | None = None) -> None:
        if done is not None:
            self.done = done

    def finish(self) -> None:
        pass

    def __enter__(self) -> "Task":
        return self

    def __exit__(self, *exc) -> None:
        self.finish()


class Progress:
    """The reporter that reports nothing (pipes, tests, core code without a session)."""

    def task(self, what: str, total: int | None = None) -> Task:
        return Task(what, total)


NULL = Progress()

_DRAWN: list = []   # the task whose line is on the screen now, if any


def clear_line() -> None:
    """Erase the progress line, if one is drawn, before other output is written (the task
    draws itself again at its next step).  Renderers call this; it costs nothing otherwise."""
    if _DRAWN:
        _DRAWN[0].erase()


class _TerminalTask(Task):
    def __init__(self, stream: TextIO, what: str, total: int | None, delay: float, interval: float):
        super().__init__(what, total)
        self.stream = stream
        self.started = time.monotonic()
        self.delay = delay
        self.interval = interval
        self.last_draw = 0.0
        self.note = ""
        self.drawn = False

    def advance(self, n: int = 1, note: str | None = None) -> None:
        self.done += n
        if note is not None:
            self.note = note
        self._maybe_draw()

    def update(self, done: int | None = None, note: str | None = None) -> None:
        if done is not None:
            self.done = done
        if note is not None:
            self.note = note
        self._maybe_draw()

    def _maybe_draw(self) -> None:
        now = time.monotonic()
        if now - self.started < self.delay or now - self.last_draw < self.interval:
            return
        self.last_draw = now
        if self.total:
            pct = min(100, int(100 * self.done / self.total))
            text = f"{self.what}: {self.done}/{self.total} ({pct}%)"
        else:
            text = f"{self.what}: {self.done}"
        if self.note:
            text += f" {self.note}"
        width = _width(self.stream)
        self._write("\r" + text[: width - 1] + "\x1b[K")
        self.drawn = True
        _DRAWN[:] = [self]

    def erase(self) -> None:
        """Take the line off the screen; the next step draws it again at once."""
        if self.drawn:
            self._write("\r\x1b[K")
            self.drawn = False
            self.last_draw = 0.0
        if _DRAWN and _DRAWN[0] is self:
            _DRAWN.clear()

    def finish(self) -> None:
        self.erase()
        self.started = float("inf")   # and never again

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass


def _width(stream: TextIO) -> int:
    try:
        cols = os.get_terminal_size(stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
        cols = 0
    return cols if cols > 10 else 80


class TerminalProgress(Progress):
    """A one-line counter on a terminal, shown only for tasks longer than DELAY seconds."""

    def __init__(self, stream: TextIO, delay: float = 0.3, interval: float = 0.1):
        self.stream = stream
        self.delay = delay
        self.interval = interval

    def task(self, what: str, total: int | None = None) -> Task:
        return _TerminalTask(self.stream, what, total, self.delay, self.interval)


def for_stream(stream: TextIO | None = None) -> Progress:
    """TerminalProgress when STREAM (default stderr) is a terminal that can draw, else NULL."""
    stream = stream or sys.stderr
    if os.environ.get("TERM") == "dumb":
        return NULL
    try:
        return TerminalProgress(stream) if stream.isatty() else NULL
    except (AttributeError, ValueError):
        return NULL
