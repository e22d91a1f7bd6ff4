"""prompt_toolkit adapter over nsshell.complete: the registry and the parameter types decide,
this only turns their candidates into Completion objects."""

from __future__ import annotations

import asyncio
import contextlib

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from ..complete import complete_line

_SPECIAL = set(" \t;'\"\\#")


@contextlib.contextmanager
def _outside_event_loop():
    """Run a completer as the commands run: in this thread, with no asyncio loop running.

    prompt_toolkit calls completers from inside its event loop; a parameter type may use a
    library that runs a loop of its own synchronously (pyroute2, for interface names) and
    keeps what it opened for the commands that follow, in this same thread.  So the
    prompt's loop is set aside while the candidates are computed (they are quick)."""
    loop = asyncio._get_running_loop()
    asyncio._set_running_loop(None)
    try:
        yield
    finally:
        asyncio._set_running_loop(loop)


def quote_word(text: str, raw_start: str) -> str:
    """TEXT as it must be typed, keeping an opening quote the user already typed."""
    if raw_start in ("'", '"'):
        return raw_start + text
    if any(c in _SPECIAL for c in text):
        return "".join("\\" + c if c in _SPECIAL else c for c in text)
    return text


class NsCompleter(Completer):
    def __init__(self, session):
        self.session = session

    def get_completions(self, document: Document, complete_event: CompleteEvent):
        text = document.text_before_cursor
        with _outside_event_loop():
            result = complete_line(self.session, text)
        start = result.start
        opening = text[start:start + 1] if start < len(text) else ""
        for c in result.candidates:
            typed = quote_word(c.text, opening)
            yield Completion(typed + c.suffix, start_position=start - len(text),
                             display=c.text, display_meta=c.meta)
