"""The REPL through a real pseudo-terminal: the installed `nsshell`, driven by pexpect.

Typed words are split with '' (`echo mark''er`) so that the terminal's echo of the
input never matches what a test expects from the output.
"""

from __future__ import annotations

import re
import time
import uuid

import pytest

pexpect = pytest.importorskip("pexpect")

from conftest import _env, nsshell_argv, processes_named  # noqa: E402

ESC = r"(?:\x1b\[[0-9;?]*[A-Za-z])*"


def strip(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]", "", text)


def prompt_re(label: str) -> str:
    return re.escape(label) + ESC + r">"


class Term:
    def __init__(self, home, extra_env: dict | None = None):
        self.id = uuid.uuid4().hex[:12]
        self.n = 0
        env = _env({
            "HOME": str(home), "XDG_STATE_HOME": str(home / "state"),
            "XDG_CONFIG_HOME": str(home / "config"), "TERM": "xterm",
            "PROMPT_TOOLKIT_NO_CPR": "1", "NSSHELL_PTY_TEST": self.id,
        })
        env.pop("NO_COLOR", None)
        env.update(extra_env or {})
        argv = nsshell_argv()
        self.child = pexpect.spawn(argv[0], argv[1:], env=env, cwd=str(home), encoding="utf-8",
                                   timeout=20, dimensions=(40, 160))
        if env.get("PROMPT_TOOLKIT_NO_CPR") == "1":
            self.expect_prompt("host")
        else:
            _expect_answering_cpr(self, prompt_re("host"))

    def expect_prompt(self, label: str = "host", timeout: float = 20):
        self.child.expect(prompt_re(label), timeout=timeout)

    def line(self, text: str, label: str = "host") -> str:
        """Run TEXT; its output (up to a marker echoed after it), escape codes removed."""
        self.n += 1
        self.child.send(f"{text}; echo DO''NE{self.n}\r")
        self.child.expect(f"DONE{self.n}\r\n")
        out = self.child.before
        self.expect_prompt(label)
        return strip(out)

    def close(self):
        for _ in range(2):   # a second Ctrl-D leaves when the first warned of sets made here
            if not self.child.isalive():
                break
            self.child.sendcontrol("d")
            try:
                self.child.expect(pexpect.EOF, timeout=5)
            except pexpect.TIMEOUT:
                pass
        self.child.close(force=True)

    def processes(self, comm: str) -> list[int]:
        """Our processes named COMM (found by the mark in their environment)."""
        return processes_named(comm, env_mark=f"NSSHELL_PTY_TEST={self.id}")


@pytest.fixture
def term(tmp_path):
    terms = []

    def start(**env):
        t = Term(tmp_path, env)
        terms.append(t)
        return t
    yield start
    for t in terms:
        t.close()


def test_tab_completes_jo_to_join(term):
    t = term()
    t.child.send("jo\t")
    time.sleep(0.3)
    t.child.send(" host\r")
    t.child.expect("joined host")
    t.expect_prompt("host")


def test_tab_completes_a_namespace_name(term, prefix):
    t = term()
    name = f"{prefix}x"
    t.line(f"new net as {name} --no-join")
    t.child.send(f"join {name[:-1]}\t")
    time.sleep(0.3)
    t.child.send("\r")
    t.child.expect(f"joined {re.escape(name)}")
    t.expect_prompt(name)


def test_tab_completes_an_interface_name(term, prefix):
    t = term()
    if "net up" not in t.line("help n''et"):
        pytest.skip("no `net up` command (the net plugin is not installed)")
    name = f"{prefix}n"
    t.line(f"new net as {name} --no-join")
    t.child.send(f"net up {name} l\t")
    time.sleep(0.5)
    out = t.line(" ; echo st $?")   # `net up NAME l` alone would fail: there is no link `l`
    assert "st 0" in out, out
    out = t.line(f"net ls {name} --json")
    assert '"lo"' in out and re.search(r"\bup\b", out, re.I), out


def test_ctrl_r_finds_an_earlier_command(term):
    t = term()
    t.line("echo mark''er-77")
    t.line("echo other")
    t.child.send("\x12")
    time.sleep(0.2)
    t.child.send("er-7")
    time.sleep(0.3)
    t.child.send("\r")           # take the line found
    time.sleep(0.3)
    t.child.send("\r")           # and run it
    t.child.expect("marker-77")
    t.expect_prompt("host")


def test_history_survives_a_restart(term, tmp_path):
    t = term()
    t.line("echo hist''ory-1")
    t.close()
    assert t.child.exitstatus == 0
    with open(tmp_path / "state" / "nsshell" / "history") as f:
        assert "echo hist''ory-1" in f.read()
    t2 = term()
    t2.child.send("\x1b[A")
    time.sleep(0.3)
    t2.child.send("\r")
    t2.child.expect("history-1")
    t2.expect_prompt("host")


def _between_markers(t: Term, command: str) -> str:
    t.child.send(f"echo BEG''IN; {command}; echo EN''D\r")
    t.child.expect("BEGIN")
    t.child.expect("END")
    text = t.child.before
    t.expect_prompt("host")
    return text


def test_no_color_output_has_no_escape_codes(term):
    colour = _between_markers(term(), "ctx; help new")
    assert "\x1b[" in colour               # rich draws on a terminal...
    plain = _between_markers(term(NO_COLOR="1"), "ctx; help new")
    assert "\x1b" not in plain             # ...but not with NO_COLOR
    assert "TYPE" in plain and "new user+mnt" in plain


def test_help_new_shows_an_example(term):
    t = term()
    t.child.send("help n''ew\r")
    t.child.expect("Examples:")
    t.child.expect(r"new user\+mnt")
    t.expect_prompt("host")


def test_ctrl_c_during_run_returns_to_the_prompt(term):
    t = term()
    t.child.send("run sleep 30\r")
    deadline = time.monotonic() + 15
    while not t.processes("sleep"):
        assert time.monotonic() < deadline, "sleep did not start"
        time.sleep(0.05)
    t.child.sendcontrol("c")
    t.expect_prompt("host", timeout=5)     # far sooner than the 30 s sleep
    assert t.child.isalive()
    t.child.send("echo st $?\r")
    t.child.expect("st 130")
    t.expect_prompt("host")
    assert t.processes("sleep") == []


def test_ctrl_c_at_the_prompt_clears_the_line(term):
    t = term()
    t.child.send("echo abc")
    time.sleep(0.2)
    t.child.sendcontrol("c")
    time.sleep(0.2)
    out = t.line("echo d''ef")
    assert "def" in out.splitlines()
    assert "abcecho def" not in out   # what an uncleared line would have printed


def _expect_answering_cpr(t: Term, pattern: str, timeout: float = 20) -> None:
    """Expect PATTERN, answering prompt_toolkit's cursor-position requests on the way
    (the toolbar is drawn only once the terminal has told where the cursor is)."""
    deadline = time.monotonic() + timeout
    while True:
        i = t.child.expect([re.escape("\x1b[6n"), pattern], timeout=max(deadline - time.monotonic(), 0.1))
        if i == 1:
            return
        t.child.send("\x1b[1;1R")


def test_toolbar_shows_context_mapping_and_status(term, prefix):
    t = term(PROMPT_TOOLKIT_NO_CPR="0")
    name = f"{prefix}b"
    _expect_answering_cpr(t, r"context " + ESC + "host")
    t.child.send(f"new user+uts as {name}\r")
    _expect_answering_cpr(t, r"context " + ESC + re.escape(name))
    t.child.send("map 0 1000 1\r")
    _expect_answering_cpr(t, r"\|  uid 0->1000  \|")
    _expect_answering_cpr(t, r"status " + ESC + "0")
    t.child.send("frobnicate\r")
    _expect_answering_cpr(t, "unknown command")
    _expect_answering_cpr(t, r"status " + ESC + "2")


def test_ctrl_d_exits_0(term):
    t = term()
    t.line("echo one")
    t.child.sendcontrol("d")
    t.child.expect(pexpect.EOF)
    t.child.close()
    assert t.child.exitstatus == 0


def test_exit_n(term):
    t = term()
    t.child.send("exit 5\r")
    t.child.expect(pexpect.EOF)
    t.child.close()
    assert t.child.exitstatus == 5


def test_a_long_batch_shows_progress_on_a_terminal_only(tmp_path, nsshell):
    script = tmp_path / "many.nss"
    # long by the clock, whatever one `new` costs: a pause half way
    lines = ["new uts --no-join\n"] * 150 + ["run sleep 0.5\n"] + ["new uts --no-join\n"] * 150
    script.write_text("".join(lines) + "echo fin''ished\n")
    env = _env({"HOME": str(tmp_path), "TERM": "xterm"})
    argv = nsshell_argv()
    child = pexpect.spawn(argv[0], argv[1:] + [str(script)], env=env, encoding="utf-8",
                          timeout=60, dimensions=(24, 100))
    try:
        child.expect(r"many\.nss: \d+/302 \(\d+%\)")
        child.expect("finished")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    piped = nsshell(str(script))              # stdout and stderr are pipes: no progress
    assert piped.rc == 0 and "finished" in piped.out
    assert "302" not in piped.err and "\r" not in piped.out + piped.err


def test_ctrl_c_of_a_program_is_not_glued_to_the_prompt(term):
    t = term()
    t.child.send("run sleep 30\r")
    time.sleep(1)
    t.child.sendintr()
    t.child.expect(r"\^C\r?\n" + ESC + r"(?:\r|\x1b\[[0-9;?]*[A-Za-z])*" + prompt_re("host"))


def test_an_open_quote_or_block_continues_at_a_second_prompt(term):
    t = term()
    t.child.send('echo "one\r')
    t.child.expect(r"\r\n" + ESC + r">")            # the continuation prompt
    t.child.send('tw""o"\r')   # `tw""o` is two: the echo of the input never matches
    t.child.expect(r"one\r\ntwo\r\n")
    t.expect_prompt("host")
    t.child.send("for i in x''1 x''2\r")
    t.child.expect(ESC + r">")
    t.child.send("do echo $i; done\r")
    t.child.expect(r"x1\r\nx2\r\n")
    t.expect_prompt("host")


def test_ctrl_d_with_unpersisted_sets_warns_once(term, prefix):
    t = term()
    t.line(f"new uts as {prefix}d --no-join")
    t.child.sendcontrol("d")
    t.child.expect(f"did not persist: {re.escape(prefix)}d")
    t.expect_prompt("host")
    t.child.sendcontrol("d")
    t.child.expect(pexpect.EOF)
    t.child.close()
    assert t.child.exitstatus == 0


def _screen_of(t: Term):
    """A terminal emulator (pyte) fed everything the REPL writes from now on; it answers
    the REPL's cursor position requests (CPR) as a terminal does."""
    pyte = pytest.importorskip("pyte")

    class _Screen(pyte.Screen):
        def write_process_input(self, data):
            t.child.send(data)
    screen = _Screen(160, 40)
    stream = pyte.Stream(screen)

    screen.raw = []   # what came, as it came

    class _Feed:
        def write(self, data):
            screen.raw.append(data)
            stream.feed(data)

        def flush(self):
            pass
    t.child.logfile_read = _Feed()
    return screen


def _rows(screen) -> list[str]:
    return [row.rstrip() for row in screen.display]


def _pump(t: Term, seconds: float = 0.5) -> None:
    """Read what the REPL writes for SECONDS (the emulator sees it, and answers CPR)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            t.child.read_nonblocking(1 << 16, timeout=0.05)
        except pexpect.TIMEOUT:
            pass


@pytest.mark.parametrize("how", ["typed", "pasted", "cursor-inside"])
def test_an_accepted_line_stays_as_typed_and_nothing_of_its_prompt_below_it(term, how):
    # The line typed and drawn, then Enter, is finished in place (repl/app.py:
    # _finish_in_place): the suggestion after the cursor and the toolbar below are erased,
    # the line is not drawn again.  A line pasted with its Enter was never drawn, and
    # Enter with the cursor inside the line leaves the suggestion elsewhere: prompt_toolkit
    # draws those.  The screen must be the same every way.
    t = term(PROMPT_TOOLKIT_NO_CPR="0")   # with CPR: the toolbar sits on the bottom row
    screen = _screen_of(t)
    t.line("echo sugg''est-me-please")   # history: `echo sugg` suggests the rest
    t.child.send("\x0c")                # Ctrl-L: a clean screen, the prompt on row 0
    _pump(t)
    assert "Ctrl-D leaves" in _rows(screen)[-1], _rows(screen)
    pasted = how == "pasted"
    if pasted:
        t.child.send("echo sugg\r")
    else:
        t.child.send("echo sugg" + ("\x1b[D\x1b[D" if how == "cursor-inside" else ""))
        _pump(t)
        # (the history's line is the one Term.line sent, its marker included; a cursor
        # inside the line shows no suggestion)
        shown = "host> echo sugg" + ("''est-me-please" if how == "typed" else "")
        assert _rows(screen)[0].startswith(shown), _rows(screen)[:3]
        del screen.raw[:]
        t.child.send("\r")
    _pump(t)
    if how == "typed":   # finished in place: the line is not drawn again before its output
        after_enter = "".join(screen.raw).split("sugg\r\n")[0]
        assert "echo" not in strip(after_enter), repr(after_enter)
    rows = _rows(screen)
    assert rows[0] == "host> echo sugg", rows[:6]    # no suggestion left after it
    assert rows[1] == "sugg", rows[:6]               # the output right below it
    assert rows[2].startswith("host>"), rows[:6]     # and the next prompt
    # the toolbar is drawn once, on the bottom row, for the prompt now editable
    assert [i for i, r in enumerate(rows) if "Ctrl-D leaves" in r] == [len(rows) - 1], rows
    assert rows[3:-1] == [""] * (len(rows) - 4), rows
