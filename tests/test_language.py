"""The language (issue 13): values are data, a pipe's commands run as they arrive, quotes
and blocks over lines, for/if/&&/||/!, errexit in conditions, JSON Lines, source ARGS."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from conftest import _env, nsshell_argv, run_nsshell

VALUES = ["a; echo b", "it's", 'say "hi"', "x # not a comment", "a && echo b || c",
          "$HOME", "{1..3}", "for i in 1; do echo no; done"]


# -- 1. expansions are data ------------------------------------------------------------------

@pytest.mark.parametrize("value", VALUES)
def test_a_variable_is_data_quoted_and_unquoted(value):
    d = run_nsshell("-c", 'echo "$LG_X"; echo $LG_X; echo [$LG_X]', env={"LG_X": value})
    assert d.rc == 0 and d.err == "", d
    lines = d.out.splitlines()
    assert lines[0] == value                                  # "$X": one word, as it is
    assert lines[1] == " ".join(value.split())                # $X: split at blanks only
    assert lines[2] == "[" + " ".join(value.split()) + "]"


@pytest.mark.parametrize("value", VALUES)
def test_script_arguments_are_data(tmp_path, value):
    script = tmp_path / "args.nss"
    script.write_text('echo "$1"\necho $#\nfor a in "$@"; do echo "<$a>"; done\necho $1\n')
    d = run_nsshell(str(script), value, "two words")
    assert d.rc == 0 and d.err == "", d
    assert d.out.splitlines() == [value, "2", f"<{value}>", "<two words>",
                                  " ".join(value.split())]


def test_unquoted_values_split_into_words_and_empty_ones_vanish():
    d = run_nsshell("-c", 'for w in $LG_X; do echo "<$w>"; done; for w in "$LG_E" $LG_E; '
                    'do echo "[$w]"; done; echo "$?" $#', env={"LG_X": "  a  b\tc ", "LG_E": ""})
    assert d.out.splitlines() == ["<a>", "<b>", "<c>", "[]", "0 0"], d


def test_a_value_with_a_nul_or_an_unknown_command_word_is_one_clear_error():
    d = run_nsshell("-c", "$LG_X", env={"LG_X": "frob; new net"})
    assert d.rc == 2 and d.err.count("\n") == 1 and "unknown command 'frob;'" in d.err, d


def test_status_and_count():
    d = run_nsshell("-k", "-c", "false; echo $?; true; echo $? $#")
    assert d.out.splitlines() == ["1", "0 0"], d


# -- 2. a pipe's commands run as they arrive --------------------------------------------------

def test_a_piped_command_runs_before_the_writer_closes(tmp_path):
    mark = tmp_path / "mark"
    p = subprocess.Popen(nsshell_argv(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=_env(), cwd="/tmp")
    try:
        p.stdin.write(f"run touch {mark}\n".encode())
        p.stdin.flush()
        deadline = time.monotonic() + 15
        while not mark.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert mark.exists(), "the first command did not run while the pipe was open"
        # a block runs once it is complete, not line by line
        p.stdin.write(b"for i in 1 2; do\n echo i$i\n")
        p.stdin.flush()
        time.sleep(0.3)
        out, err = p.communicate(b"done\necho end\n", timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0 and out.decode().splitlines() == ["i1", "i2", "end"], (out, err)


# -- 3. quotes over lines ---------------------------------------------------------------------

def test_quotes_span_lines_in_c_files_and_stdin(tmp_path):
    text = 'echo "a\nb"; echo \'c\nd\'\necho e\n'
    script = tmp_path / "q.nss"
    script.write_text(text)
    for d in (run_nsshell("-c", text), run_nsshell(str(script)), run_nsshell(input=text)):
        assert d.rc == 0 and d.out.splitlines() == ["a", "b", "c", "d", "e"], d


def test_an_unterminated_quote_or_block_is_one_error():
    for text, what in [("echo 'x", "unterminated single quote"),
                       ("for i in 1 2; do echo $i", "inside for"),
                       ("if true; then echo y", "inside if"), ("true &&", "after &&")]:
        d = run_nsshell("-c", text)
        assert d.rc == 2 and d.err.count("\n") == 1 and what in d.err and "hint:" in d.err, d
        assert d.out == "", d


def test_syntax_errors_are_one_line_and_run_nothing_of_their_command():
    for text in ["echo a; fi", "then echo x", "for 1 in a; do echo x; done", "&& echo x",
                 "if true; then; fi", "for i in a; echo x; done"]:
        d = run_nsshell("-c", text)
        assert d.rc == 2 and d.err.count("\n") == 1 and "Traceback" not in d.err, (text, d)
        assert "x" not in d.out, (text, d)


# -- 4. control flow -----------------------------------------------------------------------------

def test_for_over_a_brace_range_makes_100_sets(prefix):
    d = run_nsshell("--json", "-c", f"for i in {{1..100}}; do new net as {prefix}$i --no-join; "
                    "done; handles")
    assert d.rc == 0 and d.err == "", d
    handles = json.loads(d.out.splitlines()[-1])["handles"]
    names = {h["name"] for h in handles}
    assert names == {f"{prefix}{i}" for i in range(1, 101)}
    assert len({h["inode"] for h in handles}) == 100


def test_braces_lists_and_nesting_in_blocks():
    d = run_nsshell("-c", "for a in x{1,2} {c..a}; do for b in {2..1}; do echo $a$b; done; done")
    assert d.out.split() == ["x12", "x11", "x22", "x21", "c2", "c1", "b2", "b1", "a2", "a1"], d
    d = run_nsshell("-c", "for i in {1..999999999}; do echo x; done")
    assert d.rc == 2 and "more than" in d.err and d.out == "", d


def test_and_or_not():
    d = run_nsshell("-c", "true && echo 1; false && echo 2; false || echo 3; true || echo 4; "
                    "! false && echo 5; ! true || echo 6; false || false || echo 7")
    assert d.rc == 0 and d.out.split() == ["1", "3", "5", "6", "7"], d


def test_if_elif_else_over_lines():
    text = "for n in 1 2 3\ndo\n  if ! false\n  then echo no$n\n  fi\n  if false; then echo x; fi\ndone\n"
    d = run_nsshell("-c", text)
    assert d.out.split() == ["no1", "no2", "no3"] and d.rc == 0, d   # a failing condition is no failure
    d = run_nsshell("-c", "if false; then echo a; elif true; then echo b; else echo c; fi\n"
                    "if false; then echo a; elif false; then echo b; else echo c; fi")
    assert d.out.split() == ["b", "c"] and d.rc == 0, d


def test_bang_without_a_space_still_runs_a_program():
    d = run_nsshell("-c", "!echo hi; ! false && echo negated")
    assert d.out.split() == ["hi", "negated"] and d.rc == 0, d


def test_errexit_follows_sh_in_conditions():
    # none of these stop the batch
    d = run_nsshell("-c", "if false; then echo no; fi; false && echo no; ! true; "
                    "false || true; echo reached")
    assert d.out.split() == ["reached"] and d.rc == 0, d
    # the last of an && list, a loop body, a then-branch do stop it
    for text in ["true && false; echo no", "for i in 1; do false; echo no; done; echo no",
                 "if true; then false; echo no; fi; echo no", "false || false; echo no"]:
        d = run_nsshell("-c", text)
        assert d.rc == 1 and "no" not in d.out, (text, d)
    d = run_nsshell("-k", "-c", "false; echo went on")
    assert d.rc == 1 and d.out == "went on\n", d


def test_loop_commands_report_their_own_line(tmp_path):
    script = tmp_path / "l.nss"
    script.write_text("for i in 1\ndo\n  echo ok\n  frobnicate\ndone\n")
    d = run_nsshell(str(script))
    assert d.rc == 2 and f"{script}:4: unknown command 'frobnicate'" in d.err, d


# -- 5. JSON Lines ------------------------------------------------------------------------------

def test_json_lines_one_document_per_command_with_data(prefix):
    d = run_nsshell("--json", "-c", f"new net as {prefix}j --no-join; join {prefix}j; ctx; "
                    "leave; echo hi; handles")
    assert d.rc == 0, d
    docs = [json.loads(line) for line in d.out.splitlines()]     # each line parses alone
    assert len(docs) == len(d.out.splitlines()) >= 4
    assert any("context" in doc for doc in docs) and docs[-1]["handles"][0]["name"] == f"{prefix}j"


# -- 7. smaller things ------------------------------------------------------------------------------

def test_source_with_arguments(tmp_path):
    lib = tmp_path / "lib.nss"
    lib.write_text('echo "$# [$1] [$2]"\n')
    d = run_nsshell("-c", f"source {lib} 'a b' 'c;d'; echo after $#", "script", "x")
    assert d.out.splitlines() == ["2 [a b] [c;d]", "after 1"], d


def test_echo_prints_its_words():
    d = run_nsshell("-c", "echo ---; echo --help -x; echo -n a; echo b")
    assert d.rc == 0 and d.out == "---\n--help -x\nab\n", d


# -- the REPL and completion -------------------------------------------------------------------

def _drive(shell, keys):
    import sys
    sys.path.insert(0, os.path.dirname(__file__))
    from test_repl import drive
    return drive(shell, keys)


def test_the_repl_continues_an_open_quote_or_block(shell):
    pause = 0.3
    keys = ['echo "a\r', pause, 'b"\r', pause, "for i in 1 2\r", pause, "do echo i$i\r", pause,
            "done\r", pause, "if false\r", pause, "then echo no; else echo yes; fi\r", pause,
            "\x04"]
    assert _drive(shell, keys) == 0
    assert shell.out.getvalue().splitlines() == ["a", "b", "i1", "i2", "yes"], shell.err.getvalue()


def test_exit_with_unpersisted_sets_says_what_ends_once(shell, prefix):
    keys = [f"new uts as {prefix}e --no-join\r", 0.3, "exit 4\r", 0.3, "exit 5\r"]
    assert _drive(shell, keys) == 5
    warned = [line for line in shell.err.getvalue().splitlines() if f"{prefix}e" in line]
    assert len(warned) == 1 and "persist" in warned[0], shell.err.getvalue()


def test_ctrl_d_without_sets_made_here_leaves_at_once(shell):
    assert _drive(shell, ["echo x\r", 0.3, "\x04"]) == 0
    assert "warning" not in shell.err.getvalue()


def test_option_completion_follows_the_types_and_keywords():
    def words(line):
        d = run_nsshell("--complete", line)
        return [x.split("\t")[0] for x in d.out.splitlines()]
    assert "--mount-proc" not in words("new net --")
    assert "--monotonic" not in words("new net --")
    assert "--mount-proc" in words("new pid+mnt --")
    assert "--monotonic" in words("for i in 1; do new time --")
    assert "join" in words("true && jo")


def test_ctrl_r_then_enter_runs_the_line_found(shell):
    keys = ["echo marker-two\r", "echo other\r", 0.3, "\x12", "marker", 0.3, "\r", 0.3, "\x04"]
    assert _drive(shell, keys) == 0
    assert shell.out.getvalue().splitlines() == ["marker-two", "other", "marker-two"]


def test_status_after_blocks_and_negation():
    d = run_nsshell("-k", "-c", "if false; then echo x; fi; echo $?; ! true; echo $?; "
                    "for i in; do false; done; echo $?; false || true; echo $?")
    assert d.out.split() == ["0", "1", "0", "0"], d


def test_tab_typed_ahead_applies_before_the_next_keys(shell):
    assert _drive(shell, ["ech\t hi\r", 0.3, "\x04"]) == 0       # no pause after the Tab
    assert shell.out.getvalue() == "hi\n", shell.err.getvalue()
