"""The REPL in-process: prompt_toolkit's pipe input and DummyOutput drive the real loop over
a real Engine and Session (tests/test_repl_pty.py does it through a pseudo-terminal)."""

from __future__ import annotations

import io
import os
import threading
import time

from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory, InMemoryHistory
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from nsshell import progress
from nsshell.registry import REGISTRY, Annotated
from nsshell.types import ParamType
from nsshell.render import choose_mode
from nsshell.repl.app import Repl, history_path, run_repl
from nsshell.repl.completer import NsCompleter

PAUSE = 0.4   # lets prompt_toolkit finish an asynchronous step (completion) before more keys


def drive(shell, keys, history=None, timeout=30):
    """Type KEYS (strings; floats are pauses) into the REPL; return its exit status."""
    result = {}
    with create_pipe_input() as inp:
        def feed():
            for k in keys:
                if isinstance(k, float):
                    time.sleep(k)
                else:
                    inp.send_text(k)
        t = threading.Thread(target=feed, daemon=True)
        t.start()

        def loop():
            result["rc"] = run_repl(shell.engine, input=inp, output=DummyOutput(),
                                    history=history if history is not None else InMemoryHistory())
        runner = threading.Thread(target=loop, daemon=True)
        runner.start()
        runner.join(timeout)
        assert not runner.is_alive(), "the REPL did not end"
        t.join(5)
    return result["rc"]


def test_ctrl_d_exits_0(shell):
    assert drive(shell, ["echo one\r", "\x04"]) == 0
    assert shell.out.getvalue() == "one\n"


def test_exit_status(shell):
    assert drive(shell, ["echo x\r", "exit 3\r", "echo never\r"]) == 3
    assert "never" not in shell.out.getvalue()


def test_ctrl_c_clears_the_line(shell):
    assert drive(shell, ["echo abc", PAUSE, "\x03", PAUSE, "echo def\r", "\x04"]) == 0
    assert shell.out.getvalue() == "def\n"


def test_errors_go_through_the_engine(shell):
    assert drive(shell, ["frobnicate\r", "echo status $?\r", "\x04"]) == 0
    assert "unknown command 'frobnicate'" in shell.err.getvalue()
    assert shell.out.getvalue() == "status 2\n"


def test_tab_completes_a_command(shell):
    assert drive(shell, ["ech", "\t", PAUSE, "hi\r", "\x04"]) == 0
    assert shell.out.getvalue() == "hi\n"


def test_tab_completes_a_name(shell, prefix):
    keys = [f"new uts as {prefix}tab --no-join\r", PAUSE, f"join {prefix}t", "\t", PAUSE,
            "\r", PAUSE, "hostname\r", "\x04", PAUSE, "\x04"]   # the 1st Ctrl-D warns
    assert drive(shell, keys) == 0
    assert shell.session.context_names["uts"] == f"{prefix}tab"


def test_ctrl_r_finds_an_earlier_command(shell):
    keys = ["echo marker-one\r", "echo other\r", PAUSE, "\x12", "marker", PAUSE, "\r", PAUSE,
            "\r", PAUSE, "\x04"]
    assert drive(shell, keys) == 0
    assert shell.out.getvalue().splitlines() == ["marker-one", "other", "marker-one"]


def test_history_in_xdg_state_home_survives_a_restart(shell, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    path = history_path()
    assert path == str(tmp_path / "state" / "nsshell" / "history")
    with create_pipe_input() as inp:
        inp.send_text("echo remembered\r\x04")
        assert run_repl(shell.engine, input=inp, output=DummyOutput()) == 0
    assert "echo remembered" in open(path).read()
    assert oct(os.stat(os.path.dirname(path)).st_mode & 0o777) == "0o700"
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"     # others may not read it
    # a new REPL: Up brings the line back
    shell.out.seek(0), shell.out.truncate()
    assert drive(shell, ["\x1b[A", PAUSE, "\r", "\x04"], history=FileHistory(path)) == 0
    assert shell.out.getvalue() == "remembered\n"


def test_history_suggestions(shell):
    """Right arrow accepts the suggestion taken from the history."""
    h = InMemoryHistory()
    h.append_string("echo suggested-line")
    assert drive(shell, ["echo sug", PAUSE, "\x1b[C", PAUSE, "\r", "\x04"], history=h) == 0
    assert shell.out.getvalue() == "suggested-line\n"


def test_prompt_and_toolbar_show_context_map_and_status(shell, prefix):
    with create_pipe_input() as inp:
        repl = Repl(shell.engine, input=inp, output=DummyOutput(), history=InMemoryHistory())

        def text(fragments):
            return "".join(t for _, t in fragments)
        assert text(repl.message()) == "host> "
        assert "host" in text(repl.toolbar()) and "status 0" in text(repl.toolbar())
        assert shell(f"new user+uts as {prefix}u").rc == 0
        repl.refresh()
        assert text(repl.message()) == f"{prefix}u> "
        assert "uid unmapped" in text(repl.toolbar())
        assert shell("map 0 1000 1").rc == 0
        assert shell("frobnicate").rc == 2
        repl.refresh()
        bar = text(repl.toolbar())
        assert f"context {prefix}u" in bar
        assert "uid 0->1000" in bar
        assert "status 2" in bar
        assert shell("leave uts").rc == 0
        assert text(repl.message()) == f"{prefix}u:user> "


def test_completer_gives_descriptions():
    from nsshell.session import Session
    s = Session()
    try:
        got = list(NsCompleter(s).get_completions(Document("jo"), CompleteEvent(completion_requested=True)))
        assert [c.text for c in got] == ["join "]
        assert got[0].start_position == -2
        assert got[0].display_meta_text.startswith("Make REF")
        got = list(NsCompleter(s).get_completions(Document("new user+m"), CompleteEvent()))
        assert [(c.text, c.start_position) for c in got] == [("user+mnt", -6)]
        # an opening quote the user typed is kept
        got = list(NsCompleter(s).get_completions(Document("source '/et"), CompleteEvent()))
        assert [(c.text, c.start_position) for c in got] == [("'/etc/", -4)]
    finally:
        s.close_all()


def test_help_shows_examples(shell):
    r = shell("help new")
    assert r.rc == 0
    assert "Usage:" in r.out and "Examples:" in r.out
    assert "  new user+mnt" in r.out.splitlines()
    assert "--no-join" in r.out
    r = shell("help map")
    assert "map root" in r.out        # its sub-commands are listed
    r = shell("help")
    assert "join" in r.out and "help COMMAND" in r.out


# -- plain output, progress --------------------------------------------------------------------

def _tty():
    master, slave = os.openpty()
    return os.fdopen(master, "rb", buffering=0), os.fdopen(slave, "w")


def _read_all(master) -> str:
    import select
    data = b""
    while select.select([master], [], [], 0.3)[0]:
        chunk = master.read(4096)
        if not chunk:
            break
        data += chunk
    return data.decode()


def test_no_color_and_pipes_give_plain_text(monkeypatch):
    master, tty = _tty()
    try:
        monkeypatch.delenv("NO_COLOR", raising=False)
        monkeypatch.setenv("TERM", "xterm")
        assert choose_mode(tty, False) == "rich"
        monkeypatch.setenv("NO_COLOR", "1")
        assert choose_mode(tty, False) == "plain"
        assert choose_mode(io.StringIO(), False) == "plain"
    finally:
        tty.close(), master.close()


def test_progress_on_a_terminal_only(monkeypatch):
    monkeypatch.setenv("TERM", "xterm")
    master, tty = _tty()
    try:
        reporter = progress.for_stream(tty)
        assert isinstance(reporter, progress.TerminalProgress)
        reporter.delay = reporter.interval = 0
        with reporter.task("scanning", total=4) as task:
            for _ in range(4):
                task.advance()
        tty.flush()
        drawn = _read_all(master)
        assert "scanning: 4/4 (100%)" in drawn
        assert drawn.endswith("\r\x1b[K")          # erased at the end
    finally:
        tty.close(), master.close()
    r, w = os.pipe()
    with os.fdopen(w, "w") as pipe:
        assert progress.for_stream(pipe) is progress.NULL
        with progress.NULL.task("scanning", total=2) as task:
            task.advance()
    with os.fdopen(r) as f:
        assert f.read() == ""


def test_short_tasks_draw_nothing():
    master, tty = _tty()
    try:
        with progress.TerminalProgress(tty, delay=5).task("quick", total=2) as task:
            task.advance(2)
        tty.flush()
        assert _read_all(master) == ""
    finally:
        tty.close(), master.close()


def test_output_erases_the_progress_line_first():
    """A renderer writing a result clears a drawn progress line (clear_line), so the two
    never share a line; the task draws itself again at its next step."""
    from nsshell.render import Renderer
    from nsshell.results import Message
    master, tty = _tty()
    try:
        reporter = progress.TerminalProgress(tty, delay=0, interval=0)
        with reporter.task("batch", total=3) as task:
            task.advance()
            Renderer(out=tty, err=tty, mode="plain").show(Message("a result"))
            task.advance()
        tty.flush()
        drawn = _read_all(master)
        assert "batch: 1/3 (33%)\x1b[K\r\x1b[Ka result" in drawn
        assert "batch: 2/3" in drawn
    finally:
        tty.close(), master.close()


def test_the_session_reports_nothing_by_default(shell):
    assert shell.session.progress is progress.NULL


class LoopyType(ParamType):
    """Completes through asyncio.run, as a library with a loop of its own does (pyroute2)."""
    metavar = "THING"

    def complete(self, prefix, session):
        import asyncio

        async def names():
            return [("loopy-one", "from a loop of its own")]
        return asyncio.run(names())


def test_a_completer_may_run_its_own_event_loop(shell):
    """prompt_toolkit's loop is set aside while candidates are computed."""


    @REGISTRY.command("loopytest", group="loopytest")
    def loopy(sh, thing: Annotated[str, LoopyType()]):
        """Echo a thing."""
        from nsshell.results import Message
        return Message(f"got {thing}")
    try:
        assert drive(shell, ["loopytest loopy-o", "\t", PAUSE, "\r", "\x04"]) == 0
        assert shell.out.getvalue() == "got loopy-one\n"
    finally:
        REGISTRY.remove_group("loopytest")


class _Recorder(progress.Progress):
    """Records what a long operation reports (tasks, totals, steps)."""

    def __init__(self):
        self.tasks = []

    def task(self, what, total=None):
        t = progress.Task(what, total)
        self.tasks.append(t)
        return t


def test_discovery_reports_each_process_it_reads():
    from nsshell.core.look import discover
    rec = _Recorder()
    scan = discover.scan(progress=rec)
    (task,) = rec.tasks
    assert task.what == "scanning processes"
    assert task.total == task.done and task.done >= len({p for i in scan.namespaces.values()
                                                         for p in i.pids})


def test_new_count_reports_the_namespaces_it_made():
    from nsshell.core.ns import create
    from nsshell.kernel import nstypes
    rec = _Recorder()
    sets = create.create_many([], [nstypes.NET, nstypes.UTS], create.CreateOptions(), 40,
                              progress=rec)
    try:
        (task,) = rec.tasks
        assert task.what == "creating net+uts namespaces"
        assert task.total == task.done == 40 == len(sets)
    finally:
        for handles in sets:
            for h in handles.values():
                h.close()


def test_a_long_new_count_shows_progress_on_a_terminal_only():
    """The whole path: `new --count` at a terminal draws the counter on stderr (after
    the reporter's delay) and erases it; the same in a pipe writes nothing but the result."""
    import subprocess
    from conftest import nsshell_argv, run_on_a_terminal
    script = "new net --count 3000 --no-join"  # ~1 s on one CPU: past the 0.3 s delay
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | {"TERM": "xterm"}
    # One CPU: one helper at a time, so the work outlasts the delay on any machine.
    status, text = run_on_a_terminal(["taskset", "-c", "0", *nsshell_argv(), "-c", script], env)
    assert status == 0, text[-300:]
    assert "creating net namespaces:" in text and "/3000" in text, text[-300:]
    piped = subprocess.run([*nsshell_argv(), "-c", script], capture_output=True, text=True,
                           env=env, timeout=120)
    assert piped.returncode == 0 and piped.stderr == ""


def _drawings(repl, note) -> list:
    """What NOTE(is_done) says of each drawing of REPL's prompt, in order."""
    drawn = []
    renderer = repl.prompt_session.app.renderer
    render = renderer.render

    def watch(app_, layout, is_done=False):
        drawn.append(note(is_done))
        return render(app_, layout, is_done)
    renderer.render = watch
    return drawn


def test_an_accepted_line_is_drawn_only_as_done_on_one_loop(shell):
    """Once Enter accepted the line, the prompt is drawn once more, as done: the redraw
    the typed keys had scheduled is not drawn first, nor left queued for the next prompt
    (which drew itself twice); every prompt runs on one event loop."""
    with create_pipe_input() as inp:
        repl = Repl(shell.engine, input=inp, output=DummyOutput(), history=InMemoryHistory())
        app = repl.prompt_session.app
        drawn = _drawings(repl, lambda is_done: "done" if is_done else
                          "after accept" if app.future is not None and app.future.done()
                          else "editing")
        try:
            loops = set()
            lines = [f"echo {n}" for n in range(16)]   # the waste came often, not always
            for line in lines:
                inp.send_text(line + "\r")
                assert repl.read() == line
                loops.add(id(repl._loop))
            assert len(loops) == 1
        finally:
            repl.close()
        assert repl._loop is None
    assert drawn.count("done") == 16 and "after accept" not in drawn, drawn
    # nor drawn a second time by the next prompt, once it has drawn itself
    assert drawn == ["editing", "done"] * 16, drawn


def test_t2_what_a_prompt_shows_is_made_once_per_line(shell, monkeypatch):
    """The prompt's text and the toolbar are made once per line (they change only when a
    command has run), the layout's redraw events hooked once per prompt, not at every
    drawing; each prompt shows the status of the line before it."""
    from prompt_toolkit.application import Application
    counts = {"message": 0, "toolbar": 0, "hooked": 0}
    update = Application._update_invalidate_events

    def hooked(app):
        counts["hooked"] += 1
        return update(app)
    monkeypatch.setattr(Application, "_update_invalidate_events", hooked)
    with create_pipe_input() as inp:
        repl = Repl(shell.engine, input=inp, output=DummyOutput(), history=InMemoryHistory())
        for name in ("message", "toolbar"):
            def counted(f=getattr(repl, name), name=name):
                counts[name] += 1
                return f()
            setattr(repl, name, counted)
        statuses = []
        try:
            for line in ("false", "true", "false", "true"):
                for ch in line:
                    inp.send_text(ch)
                    time.sleep(0.005)
                inp.send_text("\r")
                text = repl.read()
                statuses.append(repl.prompt_session.bottom_toolbar[6][1])   # what it showed
                shell.engine.run_line(text)
        finally:
            repl.close()
    assert counts["message"] == 4 and counts["toolbar"] == 4, counts
    assert counts["hooked"] == 4, counts
    assert statuses == ["0", "1", "0", "1"], statuses   # the previous line's status


def test_ctrl_r_then_typing_uses_the_bindings_of_the_focused_window(shell):
    """Key bindings are looked up per focused window (the search field has its own)."""
    h = InMemoryHistory()
    h.append_string("echo found-it")
    assert drive(shell, ["\x12", PAUSE, "found", PAUSE, "\r", PAUSE, "\x04"], history=h) == 0
    assert shell.out.getvalue() == "found-it\n"


def test_t2_up_walks_the_history_in_order_at_every_prompt(shell, tmp_path):
    """Up at later prompts (the buffer's copy of the history made in one step once it is
    loaded, repl/app._history_at_once) gives what prompt_toolkit's own filling gives:
    newest first, the lines accepted here included, far back in a long history."""
    path = tmp_path / "history"
    h = FileHistory(str(path))
    for n in range(2000):
        h.store_string(f"echo old-{n}")
    up = "\x1b[A"
    keys = [up * 2 + "\r", PAUSE,            # old-1998
            up * 4 + "\r", PAUSE,            # old-1998 (this line), old-1998, old-1999, old-1997
            up * 1500 + "\r", PAUSE,         # 1500th newest: old-(2000 - 1500 + 2)
            "\x04"]
    history = FileHistory(str(path))
    loads = []
    load = history.load

    def counted():
        loads.append(1)
        return load()
    history.load = counted
    assert drive(shell, keys, history=history) == 0
    assert shell.out.getvalue().splitlines() == ["old-1998", "old-1997", "old-502"]
    assert len(loads) == 1   # taken one entry per await at the first prompt only


def test_t3_a_prompt_checks_its_signals_without_listing_them_again(shell, monkeypatch):
    """Each prompt adds and removes its SIGINT and SIGWINCH handlers; asyncio checked
    each number against signal.valid_signals(), a set of ~64 enums built per call
    (~70 us, four a line).  The REPL's loop checks against one set made once, with
    asyncio's own errors; a signal sent to the shell at the prompt still works."""
    import asyncio
    import signal
    stock = asyncio.new_event_loop()
    with create_pipe_input() as inp:
        repl = Repl(shell.engine, input=inp, output=DummyOutput(), history=InMemoryHistory())
        try:
            inp.send_text("echo 0\r")
            assert repl.read() == "echo 0"
            loop = repl._loop
            for bad in (0, 1000, -1, "x", 2.0, signal.SIGKILL, signal.SIGSTOP):
                errors = []
                for each in (stock, loop):
                    try:
                        each.add_signal_handler(bad, print)
                        errors.append(None)
                    except (TypeError, ValueError, RuntimeError) as e:
                        errors.append((type(e), str(e)))
                assert errors[0] == errors[1] and errors[0] is not None, (bad, errors)
            calls = []
            listing = signal.valid_signals
            monkeypatch.setattr(signal, "valid_signals", lambda: calls.append(1) or listing())
            for n in range(1, 4):
                inp.send_text(f"echo {n}\r")
                assert repl.read() == f"echo {n}"
            assert calls == []
            # SIGWINCH at the prompt still reaches prompt_toolkit's handler (a redraw)
            resized = []
            app = repl.prompt_session.app
            monkeypatch.setattr(app, "_on_resize", lambda: resized.append(1) or inp.send_text("echo 9\r"))
            threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGWINCH)).start()
            assert repl.read() == "echo 9" and resized
        finally:
            repl.close()
            stock.close()


def test_t3_key_bindings_are_merged_and_checked_once_per_prompt(shell, monkeypatch):
    """Each key looked its bindings up twice, and each lookup compared the versions of
    the whole tree of merged/conditional/dynamic binding sets.  They are compared once
    per prompt (and focused window); a binding added between prompts works at the next."""
    from prompt_toolkit.key_binding import key_bindings as kbmod
    with create_pipe_input() as inp:
        repl = Repl(shell.engine, input=inp, output=DummyOutput(), history=InMemoryHistory())
        try:
            inp.send_text("echo 1\r")
            assert repl.read() == "echo 1"
            checks = []
            update = kbmod._MergedKeyBindings._update_cache
            monkeypatch.setattr(kbmod._MergedKeyBindings, "_update_cache",
                                lambda self: checks.append(1) or update(self))
            line = "echo 'a longer line with many keys'"
            inp.send_text(line + "\r")
            assert repl.read() == line
            # one walk of the tree (it holds nested merges) for the prompt, not two per key
            assert 1 <= len(checks) < len(line), len(checks)
            added = repl.prompt_session.key_bindings

            @added.add("c-t")
            def _(event):
                event.current_buffer.insert_text("echo added")
            inp.send_text("\x14\r")
            assert repl.read() == "echo added"
        finally:
            repl.close()


def test_t3_a_redraw_asked_on_the_loop_does_not_wake_it_through_its_pipe(shell, monkeypatch):
    """Keys typed at a prompt ask for redraws on the loop's own thread: queued without
    call_soon_threadsafe (a write to the loop's self-pipe and one more wake-up each).
    A redraw asked from another thread still wakes the loop and is drawn."""
    with create_pipe_input() as inp:
        repl = Repl(shell.engine, input=inp, output=DummyOutput(), history=InMemoryHistory())
        app = repl.prompt_session.app
        drawn = _drawings(repl, lambda is_done: is_done)
        try:
            inp.send_text("echo 1\r")
            assert repl.read() == "echo 1"
            loop = repl._loop
            woken = []
            threadsafe = loop.call_soon_threadsafe
            monkeypatch.setattr(loop, "call_soon_threadsafe",
                                lambda *a, **k: woken.append(a) or threadsafe(*a, **k))
            for text in ("echo 2", "echo 3"):
                for ch in text:
                    inp.send_text(ch)
                    time.sleep(0.02)     # one key per read: each asks for a redraw
                inp.send_text("\r")
                assert repl.read() == text
            assert woken == []
            # from another thread: the loop is woken and the prompt drawn again
            drawn.clear()
            threading.Timer(0.3, app.invalidate).start()
            threading.Timer(0.8, inp.send_text, ("echo 4\r",)).start()
            assert repl.read() == "echo 4"
            assert woken and drawn.count(False) >= 2, (woken, drawn)
        finally:
            repl.close()
