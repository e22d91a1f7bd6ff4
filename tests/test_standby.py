"""The standby (core/proc/standby.py): once a `run` at the prompt handed the terminal to a
program, the next program's process is started while the next line is typed.  These
tests wait for it (it is named nsshell-standby once ready) and check that it is the
program's process, with what a forked one gets: its own group in the foreground, the
context entered (the one current when the line runs), job control, statuses; that it
holds nothing of the shell's and sits in the shell's own namespaces while it waits;
that a killed one is replaced by a fork; and that nothing is left when the REPL ends.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest

pexpect = pytest.importorskip("pexpect")

from conftest import processes_named  # noqa: E402
from test_repl_pty import Term  # noqa: E402


@pytest.fixture
def term(tmp_path):
    terms = []

    def start():
        t = Term(tmp_path)
        terms.append(t)
        return t
    yield start
    for t in terms:
        t.close()


def _standby(t: Term, old: int | None = None, timeout: float = 15) -> int:
    """The shell's ready standby (another than OLD)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [p for p in processes_named("nsshell-standby", ppid=t.child.pid) if p != old]
        if found:
            time.sleep(0.1)   # named just before it says it is ready
            return found[0]
        assert time.monotonic() < deadline, "no standby was started"
        time.sleep(0.02)


def _sleep_started(t: Term, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not t.processes("sleep"):
        assert time.monotonic() < deadline, "sleep did not start"
        time.sleep(0.01)


def _context_with_standby(t: Term, types: str, name: str) -> int:
    """A new context NAME of TYPES (root mapped, hostname NAME when it has uts), one
    `run` in it, and the standby that then waits: its pid."""
    t.line(f"new {types} as {name}; map root; hostname {name}", name)
    t.line("run true", name)                    # the first run forks; then a standby waits
    return _standby(t)


STAT = ("sh -c 'read -r l < /proc/self/stat; set -- $l; "
        "echo pid=$1 ppid=$4 pgrp=$5 tpgid=$8 host=$(cat /proc/sys/kernel/hostname)'")


def _stat(out: str) -> dict:
    m = re.search(r"pid=(\d+) ppid=(\d+) pgrp=(\d+) tpgid=(\d+) host=(\S+)", out)
    assert m, out
    return dict(zip(("pid", "ppid", "pgrp", "tpgid", "host"),
                    [int(x) for x in m.groups()[:4]] + [m.group(5)]))


def test_the_standby_is_the_programs_process_in_the_context_current_at_the_line(term, prefix):
    t = term()
    a, b = f"{prefix}a", f"{prefix}b"
    first = _context_with_standby(t, "user+uts", a)
    s = _stat(t.line(f"run {STAT}", a))
    assert s["pid"] == first                    # the standby became the program
    assert s["ppid"] == t.child.pid             # the shell's child: its job
    assert s["pgrp"] == s["pid"] == s["tpgid"]  # its own group, in the foreground
    assert s["host"] == a                       # inside the context
    # the context changes: the next standby learns it with the run, never before
    t.line(f"new user+uts as {b}; map root; hostname {b}", b)
    second = _standby(t, old=first)
    s = _stat(t.line(f"run {STAT}", b))
    assert s["pid"] == second and s["host"] == b


def test_a_standby_holds_nothing_and_waits_in_the_shells_namespaces(term, prefix):
    t = term()
    pid = _context_with_standby(t, "user+mnt+uts+net+ipc", f"{prefix}c")
    fds = {int(f): os.readlink(f"/proc/{pid}/fd/{f}") for f in os.listdir(f"/proc/{pid}/fd")}
    others = {f: target for f, target in fds.items() if f > 2}
    assert len(others) == 1 and next(iter(others.values())).startswith("socket:"), fds
    for nstype in ("user", "mnt", "uts", "net", "ipc", "pid", "cgroup"):
        assert (os.readlink(f"/proc/{pid}/ns/{nstype}")
                == os.readlink(f"/proc/{t.child.pid}/ns/{nstype}")), nstype
    with open(f"/proc/{pid}/status") as f:
        ignored = int(re.search(r"^SigIgn:\s*([0-9a-f]+)$", f.read(), re.M).group(1), 16)
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP):
        assert ignored & (1 << (sig - 1)), sig
    os.kill(pid, signal.SIGINT)                 # what a Ctrl-C in cooked mode sends it
    time.sleep(0.2)
    assert pid in processes_named("nsshell-standby", ppid=t.child.pid)
    t.close()                                   # the REPL ends: the standby with it
    deadline = time.monotonic() + 5
    while processes_named("nsshell-standby", env_mark=f"NSSHELL_PTY_TEST={t.id}"):
        assert time.monotonic() < deadline, "a standby outlived the REPL"
        time.sleep(0.05)


def test_job_control_and_statuses_through_the_standby_in_a_pid_context(term, prefix):
    t = term()
    name = f"{prefix}p"
    _context_with_standby(t, "user+mnt+pid+uts", name)
    assert "st 7" in t.line("run sh -c 'exit 7'; echo st $?", name)
    _standby(t)
    t.child.send("run sleep 30\r")
    _sleep_started(t)
    t.child.sendcontrol("z")
    t.child.expect("stopped")
    t.expect_prompt(name)
    t.child.send("fg\r")
    time.sleep(0.3)
    t.child.sendcontrol("c")
    t.expect_prompt(name, timeout=5)
    assert "st 130" in t.line("echo st $?", name)
    assert t.processes("sleep") == []


def test_a_killed_standby_is_replaced_by_a_fork(term, prefix):
    t = term()
    name = f"{prefix}k"
    dead = _context_with_standby(t, "user+uts", name)
    os.kill(dead, signal.SIGKILL)
    time.sleep(0.1)
    s = _stat(t.line(f"run {STAT}", name))
    assert s["pid"] != dead and s["host"] == name and s["pgrp"] == s["tpgid"]
    assert _standby(t, old=dead) != dead        # a new one for the next line


def test_a_repl_that_runs_no_program_starts_no_standby(term):
    t = term()
    for _ in range(3):
        t.line("echo hi")
    time.sleep(0.5)
    assert processes_named("nsshell-standby", ppid=t.child.pid) == []


def test_the_program_gets_what_a_fork_of_the_shell_would(term, prefix):
    # the fd limit nsshell started with (it raised its own for many handles), and no
    # parent-death signal (the standby has one while it waits: it must not outlive the shell)
    t = term()
    subprocess.run(["prlimit", "--pid", str(t.child.pid), "--nofile=200:4096"], check=True)
    t.line("new net --count 260 --no-join")
    name = f"{prefix}f"
    pid = _context_with_standby(t, "user+uts", name)
    out = t.line("run /usr/bin/python3 -c 'import ctypes, os, resource; v = ctypes.c_int(-1); "
                 "ctypes.CDLL(None).prctl(2, ctypes.byref(v), 0, 0, 0); "
                 "print(\"got\", os.getpid(), v.value, resource.getrlimit(resource.RLIMIT_NOFILE)[0])'",
                 name)
    assert re.search(rf"got {pid} 0 200\b", out), out


def test_ctrl_c_reaches_every_program_the_standby_starts(term, prefix):
    # the class a group shared by programs once lost (bench/README.md): each program
    # started by a standby is alone in its group, in the foreground; ten in a row
    t = term()
    name = f"{prefix}i"
    _context_with_standby(t, "user+mnt+pid+uts", name)
    for _ in range(10):
        _standby(t)
        t.child.send("run sh -c 'echo rea''dy; exec sleep 30'\r")
        t.child.expect("ready")
        _sleep_started(t)
        t.child.sendcontrol("c")
        t.expect_prompt(name, timeout=5)
        assert "st 130" in t.line("echo st $?", name)
    assert t.processes("sleep") == []


def test_t2_nothing_in_the_environment_or_the_directory_steers_the_standby(tmp_path, monkeypatch):
    """The standby runs as the shell's user (root here): modules named as the ones it
    imports, in the current directory (`python -m` put it first on the path) or on a
    PYTHONPATH, a sitecustomize, PYTHONINSPECT, PYTHONHOME: none is run."""
    from nsshell.core.proc.standby import Standby
    evil = tmp_path / "evil"
    (evil / "nsshell").mkdir(parents=True)
    marker = tmp_path / "ran"
    for name in ("pickle", "socket", "array", "traceback", "signal", "enum", "dataclasses",
                 "typing", "ctypes", "struct", "sitecustomize", "usercustomize", "nsshell/__init__"):
        (evil / f"{name}.py").write_text(f"open({str(marker)!r}, 'a').write({name!r} + '\\n')\n")
    monkeypatch.chdir(evil)
    for var, value in (("PYTHONPATH", str(evil)), ("PYTHONSTARTUP", str(evil / "pickle.py")),
                       ("PYTHONINSPECT", "1"), ("PYTHONUSERBASE", str(evil))):
        monkeypatch.setenv(var, value)
    s = Standby()
    try:
        deadline = time.monotonic() + 15
        while not s.ready():
            assert s.alive() and time.monotonic() < deadline, "the standby did not start"
            time.sleep(0.01)
        with open(f"/proc/{s.pid}/comm") as f:
            assert f.read().strip() == "nsshell-standby"
    finally:
        s.close()
    assert not marker.exists(), marker.read_text()


def test_t3_the_standby_imports_nothing_from_the_context_it_enters(term, prefix, tmp_path):
    """After entering, the standby is in the context's mount namespace: a module it
    imported then would come from the context's files (its PATH search imported
    `warnings` that way).  A `warnings.py` planted over the standard library's in the
    context's mount namespace is never run, on the relay path (PID) and the plain one."""
    import warnings
    planted = tmp_path / "warnings.py"
    marker = tmp_path / "ran"
    planted.write_text(f"open({str(marker)!r}, 'a').write('planted\\n')\n")
    for types, tag in (("user+mnt+pid+uts", "w"), ("user+mnt+uts", "v")):
        t = term()
        name = f"{prefix}{tag}"
        _context_with_standby(t, types, name)
        t.line(f"run mount --bind {planted} {warnings.__file__}", name)
        _standby(t)
        assert "st 0" in t.line("run true; echo st $?", name)
        assert not marker.exists(), marker.read_text()


def _zombie_children(pid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "Z" and int(fields[1]) == pid:
                found.append(int(name))
    return found


def test_a_relay_says_the_status_before_it_exits_and_is_reaped_at_the_prompt(term, prefix):
    # In a PID namespace the program is the relay's child; the relay writes the exit
    # code on its pipe and the shell goes on without waiting for its teardown: the status
    # is the program's, and the relay is reaped once the prompt is drawn (no zombie).
    t = term()
    name = f"{prefix}r"
    _context_with_standby(t, "user+mnt+pid", name)
    for code in (0, 3, 255):
        _standby(t)
        assert f"st {code}" in t.line(f"run sh -c 'exit {code}'; echo st $?", name)
        assert _zombie_children(t.child.pid) == []
    _standby(t)
    assert "st 143" in t.line("run sh -c 'kill -TERM $$'; echo st $?", name)
    assert _zombie_children(t.child.pid) == []


def test_a_relay_that_does_not_exit_never_hangs_the_shell():
    # A relay has said its status and only has to exit; one stopped from outside in that
    # moment must not hang the prompt (reaped with a bound) nor be left (killed at the end).
    from nsshell.core.proc import program
    pid = os.fork()
    if pid == 0:
        os.kill(os.getpid(), signal.SIGSTOP)
        os._exit(0)
    os.waitpid(pid, os.WUNTRACED)
    terminal = program.Terminal()
    terminal.exiting.append(pid)
    start = time.monotonic()
    terminal.reap(wait=0.1)
    assert time.monotonic() - start < 1 and terminal.exiting == [pid]
    terminal.close()
    assert terminal.exiting == []
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
