"""The suggestion taken from the history while typing (Right arrow takes it), at a cost
that does not grow with the history on every key.

prompt_toolkit's AutoSuggestFromHistory copied the whole history twice and split every
entry into lines on each key, down to the oldest entry when nothing matched: typing
slowed as the history grew.  This one gives the same suggestion (the newest line that
starts with the text of the cursor's line: the rest of it) from

- the distinct lines of the history, newest first, kept up to date as lines are added
  (an accepted line is one insertion, not a new scan);
- the lines that matched the previous text: typing one more character only filters them;
- at most LIMIT distinct lines (the newest): the first key of a line scans no more.
"""

from __future__ import annotations

from itertools import islice

from prompt_toolkit.auto_suggest import AutoSuggest, Suggestion

# The newest distinct lines a suggestion is taken from.
LIMIT = 10_000


class HistorySuggest(AutoSuggest):
    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._lines: dict[str, None] = {}   # distinct lines, oldest first
        self._seen = None                   # (list, length, oldest entry) indexed so far
        self._prev: tuple[str, list[str]] | None = None   # text -> its matching lines

    def _sync(self, history) -> None:
        strings = getattr(history, "_loaded_strings", None)   # newest first
        if not isinstance(strings, list):
            strings = history.get_strings()[::-1]
            seen = None
        else:
            seen = (strings, len(strings), strings[-1] if strings else None)
        old = self._seen
        if seen is not None and old is not None and _same(old, seen):
            return
        if (seen is not None and old is not None and old[0] is seen[0]
                and seen[1] > old[1] and old[2] is seen[2]):
            new = strings[:seen[1] - old[1]]   # lines added at the newest end
        else:
            self._lines = {}
            new = strings
        lines = self._lines
        for string in reversed(new):   # oldest first: the newest line ends up last
            for line in string.splitlines():
                lines.pop(line, None)
                lines[line] = None
        self._seen = seen
        self._prev = None

    def candidates(self, history, text: str) -> list[str]:
        """The lines starting with TEXT, newest first (among the newest LIMIT)."""
        self._sync(history)
        prev = self._prev
        if prev is not None and text.startswith(prev[0]):
            found = [line for line in prev[1] if line.startswith(text)]
        else:
            found = [line for line in islice(reversed(self._lines), self.limit)
                     if line.startswith(text)]
        self._prev = (text, found)
        return found

    def get_suggestion(self, buffer, document) -> Suggestion | None:
        text = document.text.rsplit("\n", 1)[-1]
        if not text.strip():
            return None
        found = self.candidates(buffer.history, text)
        return Suggestion(found[0][len(text):]) if found else None


def _same(a, b) -> bool:
    return a[0] is b[0] and a[1] == b[1] and a[2] is b[2]
