"""The per-command path made cheap (issue 14): what it keeps for the next command is
never stale, and the fast lexer reads every line as the character-at-a-time one did.

Real kernel, real sessions: the context's entries are kept between `run`s while the
context holds the same handles; a join, a leave, a closed handle or a dead PID init
are seen at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest
from conftest import _env, nsshell_argv

from nsshell import lexer
from nsshell.errors import StaleError


def _toks(text: str) -> list:
    out = []
    for t in lexer.tokens(text):
        out.append(t if isinstance(t, str) else
                   [(p.kind, p.text, p.quoted) for p in t.parts])
    return out


def lit(text: str, quoted: bool = False) -> tuple:
    return ("lit", text, quoted)


@pytest.mark.parametrize("text,want", [
    ("run true", [[lit("run")], [lit("true")]]),
    ("a#b #c d", [[lit("a#b")]]),                      # `#` mid-word is itself, else a comment
    ("x&y a&&b", [[lit("x&y")], [lit("a")], "&&", [lit("b")]]),
    ("b|c||d", [[lit("b|c")], "||", [lit("d")]]),
    ("a;b\tc\rd", [[lit("a")], ";", [lit("b")], [lit("c")], [lit("d")]]),
    ("a\\ b$ c$", [[lit("a b$")], [lit("c$")]]),
    ("p'q r's", [[lit("p"), lit("q r", True), lit("s")]]),
    ('u"$V w"x$Y.z', [[lit("u"), lit("", True), ("var", "V", True), lit(" w", True),
                       lit("x"), ("var", "Y", False), lit(".z")]]),
    ("10.9.0.18/16 n1:eth0 {1..3}", [[lit("10.9.0.18/16")], [lit("n1:eth0")], [lit("{1..3}")]]),
    ("é→x\nnext", [[lit("é→x")], "\n", [lit("next")]]),
])
def test_runloop_lexer_reads_runs_of_plain_characters_as_before(text, want):
    assert _toks(text) == want


def _session_with(shell, line: str):
    d = shell(line)
    assert d.rc == 0, d
    return shell.session


def test_runloop_entries_are_kept_only_while_the_context_holds_the_same_handles(shell, prefix):
    s = _session_with(shell, f"new net+uts as {prefix}a; new net+uts as {prefix}b --no-join")
    first = s.entries()
    assert [e.label for e in first] == [str(s.context["net"].nsid), str(s.context["uts"].nsid)]
    assert s.entries() == first and s.entries() is not first   # a copy: callers may keep it
    assert shell(f"join {prefix}b").rc == 0
    other = s.entries()
    assert {e.label for e in other} == {str(s.sets[f"{prefix}b"].handles[t].nsid)
                                        for t in ("net", "uts")}
    assert shell("leave net").rc == 0
    assert [e.nstype.name for e in s.entries()] == ["uts"]
    assert shell("leave").rc == 0
    assert s.entries() == []
    # a subset asked for is never served from what was kept for the whole context
    assert shell(f"join {prefix}a").rc == 0
    assert [e.nstype.name for e in s.entries(["uts"])] == ["uts"]
    assert len(s.entries()) == 2


def test_runloop_a_handle_closed_under_the_kept_entries_is_refused(shell, prefix):
    s = _session_with(shell, f"new net as {prefix}c")
    s.entries()
    s.context["net"].close()   # closed behind the session's back: the kept entry is stale
    with pytest.raises(StaleError):
        s.entries()


def test_runloop_a_dead_pid_init_is_seen_by_the_next_run(shell, prefix):
    s = _session_with(shell, f"new user+pid as {prefix}p; map root; run true")
    holder = s.context["pid"].holder
    assert holder is not None and s.entries()
    os.kill(holder.pid, signal.SIGKILL)
    for _ in range(500):
        if not holder.alive():
            break
        time.sleep(0.01)
    d = shell("run true")
    assert d.rc != 0 and "init process has exited" in d.err, d


@pytest.mark.parametrize("text,fields", [
    ("x", ["x"]), ("''", [""]), ("'a{1,2}'", ["a{1,2}"]), ("{1,2}", ["1", "2"]),
    ("a{b", ["a{b"]), ('""', [""]), ('"{x,y}"', ["{x,y}"]), ("p{1..2}q", ["p1q", "p2q"]),
])
def test_runloop_one_literal_word_expands_as_before(text, fields):
    (word,) = lexer.parse(text)[0].first.command.words
    assert lexer.expand_word(word, lambda name: "", []) == fields


def test_runloop_without_path_the_default_path_is_searched():
    """PATH unset: the helper searches os.defpath (/bin:/usr/bin), as execvpe does."""
    env = _env()
    env.pop("PATH", None)
    p = subprocess.run(nsshell_argv() + ["-c", "new net; run true; run sh -c 'echo ok'"],
                       capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
                       timeout=60)
    assert p.returncode == 0 and p.stdout.splitlines()[-1] == "ok", p


def test_runloop_one_simple_command_parses_as_the_parser_parses_it():
    """lexer.parse takes a line of one simple command without the parser: for lines of
    words, keywords, `!`, operators, quotes and newlines (seeded, so the same each run),
    what the short way gives (when it takes the line) is what the parser gives."""
    import random
    rng = random.Random(14)
    pieces = ["run", "true", "echo", "x", "for", "in", "do", "done", "if", "then", "fi",
              "else", "!", "!x", "'a b'", '"$V"', "$1", ";", "&&", "||", "\n", "#c", "a#b",
              "{1,2}", "''", "do1", "\\!"]
    taken = 0
    for _ in range(3000):
        text = " ".join(rng.choice(pieces) for _ in range(rng.randint(1, 6)))
        if rng.random() < 0.5:
            text += "\n"
        try:
            toks = lexer.tokens(text, True, 3)
        except lexer.Incomplete:
            continue
        fast = lexer._one_simple(toks)
        if fast is None:
            continue
        taken += 1
        assert fast == lexer._Parser(toks).program(), text
    assert taken > 300   # the short way was tried, often
