"""prompt_toolkit adapter over nsshell.complete: the registry and the parameter types decide,
this only turns their candidates into Completion objects."""

from __future__ import annotations

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from ..complete import complete_line

_SPECIAL = set(" \t;'\"\\#")


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
        result = complete_line(self.session, text)
        start = result.start
        opening = text[start:start + 1] if start < len(text) else ""
        for c in result.candidates:
            typed = quote_word(c.text, opening)
            yield Completion(typed + c.suffix, start_position=start - len(text),
                             display=c.text, display_meta=c.meta)
