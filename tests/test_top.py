"""`top`: the live view through a real pseudo-terminal (pexpect), and its plain snapshot.

prompt_toolkit redraws only what changed, so a test reads the screen by asking for
a whole redraw (Ctrl-L, as in top) and taking everything up to the footer's last
words; names and labels are single fragments, so they arrive whole.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

pexpect = pytest.importorskip("pexpect")

from conftest import run_nsshell  # noqa: E402
from test_repl_pty import strip, term  # noqa: E402,F401 - term: the fixture

FOOTER_END = "q quit"


@pytest.fixture
def netns():
    made = []

    def add(name):
        subprocess.run(["ip", "netns", "add", name], check=True)
        made.append(name)
        return name

    def delete(name):
        subprocess.run(["ip", "netns", "del", name], check=True)
        made.remove(name)
    add.delete = delete
    yield add
    for name in made:
        subprocess.run(["ip", "netns", "del", name], check=False)


def screen(t) -> str:
    """The whole screen as text (escape codes removed), redrawn now."""
    t.child.sendcontrol("l")
    t.child.expect(re.escape(FOOTER_END), timeout=10)
    return strip(t.child.before)


def wait_screen(t, cond, timeout: float) -> tuple[str, float]:
    start = time.monotonic()
    while True:
        text = screen(t)
        took = time.monotonic() - start
        if cond(text) or took > timeout:
            return text, took
        time.sleep(0.1)


def start_top(t, args: str = "--interval 0.3"):
    t.child.send(f"top {args}\r")
    t.child.expect("nsshell top", timeout=20)
    t.child.expect(re.escape(FOOTER_END), timeout=20)


def filter_text(t, text: str):
    t.child.send("/")
    time.sleep(0.2)
    t.child.send(text)
    time.sleep(0.2)
    t.child.send("\r")


def test_top_draws_the_namespaces_that_exist(term, netns, prefix):
    name = netns(f"{prefix}a")
    t = term()
    start_top(t)
    text = screen(t)
    host_net = f"net:[{__import__('os').stat('/proc/self/ns/net').st_ino}]"
    assert "user:[" in text and host_net in text, text
    assert name in text, text
    assert "NAMESPACE" in text and "NPROCS" in text and "HELD" in text
    t.child.send("?")
    text, _ = wait_screen(t, lambda s: "only user, mnt, pid" in s, 5)
    assert "join the row's namespace" in text, text
    t.child.send("\x1b")        # Esc closes the pane first, then the view
    time.sleep(0.3)
    t.child.send("q")
    t.expect_prompt("host")
    assert "ok" in t.line("echo o''k")   # the prompt works after q


def test_a_namespace_made_outside_appears_and_one_deleted_goes(term, netns, prefix):
    name = f"{prefix}b"
    t = term()
    start_top(t, "--interval 0.3")
    filter_text(t, name[:-1])
    text, _ = wait_screen(t, lambda s: "no namespaces match" in s, 5)
    assert "no namespaces match" in text, text
    netns(name)
    text, took = wait_screen(t, lambda s: name in s and "no namespaces match" not in s, 5)
    assert name in text, text
    assert took < 2 * 0.3 + 2.0, f"appeared after {took:.2f} s"   # two refreshes, and a slow scan
    if took < 1.0:   # highlighted for 2 s from the refresh that found it
        assert "(new)" in text, repr(text)
    netns.delete(name)
    text, took = wait_screen(t, lambda s: "no namespaces match" in s, 5)
    assert "no namespaces match" in text and name not in text, text
    assert took < 3 * 0.3 + 2.0, f"went after {took:.2f} s"
    t.child.send("q")
    t.expect_prompt("host")


def test_enter_shows_the_details_of_the_row(term, netns, prefix):
    name = netns(f"{prefix}c")
    t = term()
    start_top(t)
    filter_text(t, name)
    wait_screen(t, lambda s: name in s, 5)
    t.child.send("\r")
    text, _ = wait_screen(t, lambda s: "show net:[" in s, 5)
    assert "show net:[" in text and "held:" in text and "links:" in text, text
    assert "lo " in text, text            # the namespace's loopback, read from inside
    t.child.send("q")
    t.expect_prompt("host")


def test_type_filter_and_text_filter_narrow_the_rows(term, netns, prefix):
    name = netns(f"{prefix}d")
    t = term()
    start_top(t)
    full = screen(t)
    assert "user:[" in full and "mnt:[" in full
    t.child.send("n")
    text, _ = wait_screen(t, lambda s: "type net" in s, 5)
    rows = text.split("COMMAND", 1)[1]
    assert "net:[" in rows and "user:[" not in rows and "mnt:[" not in rows, rows
    t.child.send("a")
    filter_text(t, name)
    text, _ = wait_screen(t, lambda s: name in s and "user:[" not in s.split("COMMAND", 1)[1], 5)
    rows = text.split("COMMAND", 1)[1]
    assert name in rows and "user:[" not in rows and "uts:[" not in rows, rows
    t.child.send("q")
    t.expect_prompt("host")


def test_j_joins_the_row_and_returns_to_the_prompt(term, netns, prefix):
    name = netns(f"{prefix}e")
    ino = __import__("os").stat(f"/run/netns/{name}").st_ino
    t = term()
    start_top(t)
    filter_text(t, name)
    wait_screen(t, lambda s: name in s, 5)
    t.child.send("j")
    t.child.expect(r"joined", timeout=20)
    t.expect_prompt(f"net:[{ino}]")            # the prompt shows the new context
    out = t.line("ctx", label=f"net:[{ino}]")
    assert str(ino) in out, out
    t.line("leave", label="host")


def test_q_keeps_the_session_and_its_handles(term, prefix):
    t = term()
    t.line(f"new net as {prefix}k --no-join")
    start_top(t)
    text = screen(t)
    assert f"{prefix}k" in text, text            # the session's set is named in the view
    t.child.send("q")
    t.expect_prompt("host")
    out = t.line("handles")
    assert f"{prefix}k" in out, out


def test_once_in_a_pipe_prints_one_plain_table(prefix):
    d = run_nsshell("-c", "top --once")
    assert d.rc == 0, d.err
    lines = d.out.splitlines()
    assert lines[0].split() == ["NAMESPACE", "TYPE", "NPROCS", "HELD", "NAMES", "COMMAND"]
    assert any(l.startswith("user:[") for l in lines), d.out
    assert any(l.startswith("  net:[") for l in lines), d.out     # owned rows indented
    assert "\x1b" not in d.out
    # in a pipe, without --once, the same: one snapshot, no full-screen view
    d2 = run_nsshell(input="top\n")
    assert d2.rc == 0 and d2.out.splitlines()[0].split() == lines[0].split(), d2.err


def test_once_json(prefix):
    import json
    d = run_nsshell("--json", "-c", "top --once")
    assert d.rc == 0, d.err
    rows = json.loads(d.out)["namespaces"]
    assert rows and {"label", "type", "ns", "depth", "held", "names"} <= set(rows[0])


def test_bad_interval_is_one_line():
    d = run_nsshell("-c", "top --interval 0 --once")
    assert d.rc == 2 and d.err.count("\n") == 1 and "hint:" in d.err, d.err


def test_top_once_in_a_batch_imports_no_full_screen_library():
    from test_imports import heavy, imported
    mods = imported("-c", "top --once")
    assert "nsshell.tui" not in mods and "nsshell.tui.top" not in mods
    assert [m for m in heavy(mods) if m.startswith("prompt_toolkit")] == []


def test_p_persists_the_row_under_a_name_and_x_closes_it(term, prefix):
    name = f"{prefix}s"
    t = term()
    t.line(f"new net as {name} --no-join")
    try:
        start_top(t)
        t.child.send("n")
        filter_text(t, name)
        wait_screen(t, lambda s: name in s.split("COMMAND", 1)[1], 5)
        t.child.send("p")
        t.child.expect("persist as:", timeout=10)
        t.child.send("\r")                                 # the set's own name, offered
        text, _ = wait_screen(t, lambda s: "persist net:[" in s, 10)
        assert f"as {name}" in text, text
        assert __import__("os").path.exists(f"/run/netns/{name}")
        t.child.send("x")
        text, _ = wait_screen(t, lambda s: "close net:[" in s, 10)
        t.child.send("q")
        t.expect_prompt("host")
        out = t.line("handles")
        assert name not in out, out                       # closed: no handle any more
    finally:
        t.line(f"unpersist {name}")
    assert not __import__("os").path.exists(f"/run/netns/{name}")


def test_d_on_two_rows_shows_their_diff(term, prefix):
    t = term()
    t.line(f"new net as {prefix}1 --no-join; new net as {prefix}2 --no-join")
    if "st 0" not in t.line(f"net up {prefix}2 lo; echo st $?"):
        pytest.skip("no net plugin")
    start_top(t)
    t.child.send("n")
    filter_text(t, prefix)
    wait_screen(t, lambda s: f"{prefix}2" in s.split("COMMAND", 1)[1], 5)
    t.child.send("d")
    text, _ = wait_screen(t, lambda s: "(marked)" in s, 5)
    t.child.send("\x1b[B")          # down
    time.sleep(0.2)
    t.child.send("d")
    text, _ = wait_screen(t, lambda s: "diff net:[" in s, 10)
    assert re.search(r"diff net:\[\d+\] net:\[\d+\]", text), text
    assert "lo" in text.split("diff net:[", 1)[1], text
    t.child.send("q")
    t.expect_prompt("host")


def test_g_draws_the_network_topology(term, prefix):
    t = term()
    t.line(f"new net as {prefix}a --no-join; new net as {prefix}b --no-join")
    if "st 0" not in t.line(f"net veth {prefix}a:e0 {prefix}b:e1; echo st $?"):
        pytest.skip("no net plugin")
    start_top(t)
    t.child.send("g")
    text, _ = wait_screen(t, lambda s: "network topology" in s, 10)
    assert f"{prefix}a:e0 <-> {prefix}b:e1" in text, text
    t.child.send("q")
    t.expect_prompt("host")


def test_light_refreshes_keep_what_only_a_full_scan_sees(prefix):
    """A namespace only an fd holds is invisible to the light scan between full ones:
    it is carried, with its fd holder, and goes when the fd closes."""
    import os
    name = f"{prefix}f"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        ino = os.stat(f"/run/netns/{name}").st_ino
        holder = subprocess.Popen(["sh", "-c", f"exec 3</run/netns/{name}; exec sleep 60"],
                                  env={"NSSHELL_TEST_RUN": "top"})
        time.sleep(0.3)
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)
    try:
        _carried_by_light_refreshes(("net", ino), "fd", holder)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def _carried_by_light_refreshes(key, kind: str, holder) -> None:
    """KEY, held as KIND by the process HOLDER only, is listed by every refresh (full,
    light x4, full) with that holder, and gone from the light ones once HOLDER is killed
    (as it cannot be opened any more)."""
    import nsshell.commands  # noqa: F401
    from nsshell.commands.top import Refresher
    from nsshell.engine import Engine
    from nsshell.render import Renderer
    from nsshell.session import Session
    sh = Session(interactive=False)
    Engine(sh, Renderer(mode="plain"))
    try:
        refresh = Refresher(sh)
        for i in range(refresh.FULL_EVERY + 1):
            rows = {r["key"]: r for r in refresh()}
            assert key in rows, f"refresh {i}: the namespace held by {kind} is missing"
            assert kind in rows[key]["held"], rows[key]
        holder.kill()
        holder.wait()
        for i in range(2):
            rows = {r["key"] for r in refresh()}
        assert key not in rows
    finally:
        sh.close_all()


def test_light_refreshes_keep_what_only_a_for_children_link_holds():
    """A time namespace made by unshare() without a fork is held only by the process's
    time_for_children link, which the light refreshes do not read (those links are a
    fifth of what they would read): it is carried from the full scan, with its holder,
    and goes with the process."""
    import os
    if not os.path.exists("/proc/self/ns/time"):
        pytest.skip("no time namespaces on this kernel")
    # (unshare(1) execs: that moves the process into the new namespace itself)
    code = ("import ctypes, time; assert ctypes.CDLL(None).unshare(0x80) == 0; "
            "time.sleep(60)")   # CLONE_NEWTIME, and neither exec nor fork
    holder = subprocess.Popen([sys.executable, "-c", code],
                              env={"NSSHELL_TEST_RUN": "top", "PATH": os.environ["PATH"]})
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                ino = os.stat(f"/proc/{holder.pid}/ns/time_for_children").st_ino
                if ino != os.stat(f"/proc/{holder.pid}/ns/time").st_ino:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "unshare(CLONE_NEWTIME) did not get going"
            time.sleep(0.05)
        _carried_by_light_refreshes(("time", ino), "children", holder)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_nsshell_c_top_on_a_terminal_draws_the_view_and_q_ends_it(tmp_path):
    from conftest import _env, nsshell_argv
    argv = nsshell_argv() + ["-c", "top --interval 0.3; echo af''ter"]
    env = _env({"TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1", "HOME": str(tmp_path)})
    child = pexpect.spawn(argv[0], argv[1:], env=env, encoding="utf-8", timeout=20,
                          dimensions=(40, 160))
    try:
        child.expect("nsshell top")
        child.expect(re.escape(FOOTER_END))
        child.send("q")
        child.expect("after")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def _rows_for_view():
    rows = []
    for i, t in enumerate(["user", "mnt", "pid", "net", "uts", "ipc", "cgroup", "time"]):
        rows.append({"key": (t, 100 + i), "depth": 0 if t == "user" else 1,
                     "parent": None if t == "user" else ("user", 100), "label": f"{t}:[{100 + i}]",
                     "type": t, "ns": 100 + i, "nprocs": 1, "pid": 1, "held": ["process"],
                     "names": [], "command": "init", "children": t == "user"})
    return rows


def test_every_key_of_the_view_means_one_thing():
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput
    from nsshell.tui.top import TYPE_KEYS, TopView
    assert sorted(TYPE_KEYS.values()) == sorted(
        ["user", "mnt", "pid", "net", "uts", "ipc", "cgroup", "time"])
    with create_pipe_input() as inp:
        view = TopView(source=_rows_for_view, details=lambda r: "", actions={
            "persist": None, "close": None, "diff": None, "graph": None},
            input=inp, output=DummyOutput())
        counts: dict = {}
        for b in view.app.key_bindings.bindings:
            if len(b.keys) == 1 and isinstance(b.keys[0], str) and len(b.keys[0]) == 1:
                counts[b.keys[0]] = counts.get(b.keys[0], 0) + 1
        clashes = {k: n for k, n in counts.items() if n > 1 and k not in ("\x1b",)}
        assert not clashes, clashes


def test_type_keys_and_the_model_in_process():
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput
    from nsshell.tui.top import TopView
    seen = {}
    with create_pipe_input() as inp:
        view = TopView(source=_rows_for_view, details=lambda r: f"details of {r['label']}",
                       interval=0.2, input=inp, output=DummyOutput())

        def after_keys():
            seen["visible"] = [r["type"] for r in view.model.visible()]
            seen["pane"] = view.pane
        inp.send_text("P\r")
        view.app.pre_run_callables.append(
            lambda: view.app.loop.call_later(0.5, lambda: (after_keys(), view.app.exit())))
        assert view.run() is None
    assert seen["visible"] == ["pid"], seen
    assert seen["pane"] == "details of pid:[102]", seen


def test_model_new_rows_highlighted_gone_rows_greyed_then_dropped_and_folding():
    from nsshell.tui.top import HIGHLIGHT_SECONDS, TopModel
    rows = _rows_for_view()
    m = TopModel()
    m.update(rows[:-1], now=0.0)
    assert not any(m.is_new(r, 0.0) for r in m.rows)          # the first load is not "new"
    m.update(rows, now=1.0)
    new = [r for r in m.rows if m.is_new(r, 1.5)]
    assert [r["type"] for r in new] == ["time"]
    assert not m.is_new(rows[-1], 1.0 + HIGHLIGHT_SECONDS)
    without_net = [r for r in rows if r["type"] != "net"]
    m.update(without_net, now=2.0)
    assert [r["type"] for r in m.rows] == [r["type"] for r in rows]   # still there, in place
    assert ("net", 103) in m.gone
    m.update(without_net, now=3.0)
    assert "net" not in [r["type"] for r in m.rows] and not m.gone
    changed = [dict(r, nprocs=5) if r["type"] == "uts" else r for r in without_net]
    m.update(changed, now=4.0)
    assert [r["type"] for r in m.rows if m.is_changed(r, 4.5)] == ["uts"]
    assert not m.is_changed(changed[0], 4.5)
    m.folded.add(("user", 100))
    assert [r["type"] for r in m.visible()] == ["user"]
    m.folded.clear()
    m.text_filter = "ipc:["
    assert [r["type"] for r in m.visible()] == ["ipc"]


def test_j_on_a_row_the_session_holds_joins_it_by_name(term, prefix):
    name = f"{prefix}h"
    t = term()
    t.line(f"new net as {name} --no-join")
    start_top(t)
    t.child.send("n")
    filter_text(t, name)
    wait_screen(t, lambda s: name in s.split("COMMAND", 1)[1], 5)
    t.child.send("j")
    t.child.expect("joined", timeout=20)
    t.expect_prompt(name)
    assert name in t.line("ctx", label=name)
    t.line("leave", label="host")
