"""The history suggestion (nsshell/repl/suggest.py): the same suggestion as
prompt_toolkit's AutoSuggestFromHistory, at a per-key cost that does not grow with the
history."""

from __future__ import annotations

import random
import time

from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.buffer import Buffer
from prompt_toolkit.document import Document
from prompt_toolkit.history import InMemoryHistory

from nsshell.repl.suggest import HistorySuggest


def _text(s) -> str | None:
    return None if s is None else s.text


def test_t2_same_suggestions_as_prompt_toolkit_while_typing_and_adding_lines():
    rng = random.Random(14)
    words = ["run", "ls", "new", "net", "ip", "a", "ab", "abc", "echo", "x", "", " "]
    h = InMemoryHistory()
    buf = Buffer(history=h)
    ours, theirs = HistorySuggest(), AutoSuggestFromHistory()
    for step in range(400):
        if rng.random() < 0.3:   # a line accepted (some of several lines, some repeated)
            n = rng.choice([1, 1, 1, 2, 3])
            h.append_string("\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(1, 4)))
                                      for _ in range(n)))
        typed = " ".join(rng.choice(words) for _ in range(rng.randint(1, 3)))
        if rng.random() < 0.2:
            typed = "for x in a\n" + typed
        # typed key by key, and edited back (a shorter text after a longer one)
        for end in list(range(len(typed) + 1)) + [len(typed) // 2, len(typed)]:
            doc = Document(typed[:end])
            assert _text(ours.get_suggestion(buf, doc)) == _text(theirs.get_suggestion(buf, doc)), \
                (step, typed[:end])


def test_t2_history_loaded_after_the_first_key_is_seen():
    """A FileHistory loads in the background: lines loaded later (older ones, appended at
    the list's end, or the list replaced) are suggested too."""
    h = InMemoryHistory()
    buf = Buffer(history=h)
    ours = HistorySuggest()
    assert ours.get_suggestion(buf, Document("ec")) is None
    h._loaded_strings.append("echo older")          # as History.load does, batch by batch
    assert _text(ours.get_suggestion(buf, Document("ec"))) == "ho older"
    h._loaded_strings = ["echo newer", "echo older"]
    assert _text(ours.get_suggestion(buf, Document("ec"))) == "ho newer"


def test_t2_typing_with_a_long_history_stays_cheap():
    """50 000 entries: once indexed, the keys of a line cost a small fraction of what the
    scan of the whole history on every key cost (compared in the same run: the machine's
    load cancels out)."""
    h = InMemoryHistory()
    for i in range(50_000):
        h.append_string(f"run cmd-{i % 25_000} --opt {i}")
    buf = Buffer(history=h)
    ours, theirs = HistorySuggest(), AutoSuggestFromHistory()
    ours.get_suggestion(buf, Document("r"))  # indexing, once
    lines = ["zzzzzzzzzzzzzzzz", "run cmd-1 --opt 1000", "ls -l /run/netns"]

    def typing(s) -> float:
        t = time.perf_counter()
        for line in lines:
            for end in range(1, len(line) + 1):
                s.get_suggestion(buf, Document(line[:end]))
        return time.perf_counter() - t

    assert typing(ours) * 10 < typing(theirs)
    # an accepted line is added, not a new scan of the history
    index = ours._lines
    h.append_string("zzz accepted")
    assert _text(ours.get_suggestion(buf, Document("zzz a"))) == "ccepted"
    assert ours._lines is index and len(index) == 50_001
