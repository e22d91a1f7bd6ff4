"""Ctrl-C and Ctrl-Z during `run` reach the program, never the shell (real pty)."""

import os
import signal
import time

import pexpect
import pytest

from conftest import _env, nsshell_argv


@pytest.fixture
def pty_shell(tmp_path):
    """`nsshell -c TEXT` on a real pseudo-terminal."""
    children = []

    def spawn(text):
        argv = nsshell_argv()
        env = _env({"HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path)})
        child = pexpect.spawn(argv[0], argv[1:] + ["-c", text], env=env, encoding="utf-8",
                              timeout=10, cwd=str(tmp_path))
        children.append(child)
        return child

    yield spawn
    for c in children:
        if c.isalive():
            c.terminate(force=True)


def _wait_for_comm_in_session(sid: int, comm: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in os.listdir("/proc"):
            try:
                with open(f"/proc/{entry}/stat") as f:
                    head, _, rest = f.read().rpartition(")")
                if head.split("(", 1)[1] == comm and int(rest.split()[3]) == sid:
                    return
            except (OSError, IndexError, ValueError):
                continue
        time.sleep(0.02)
    raise AssertionError(f"no {comm} in session {sid}")


def test_ctrl_c_goes_to_the_program(pty_shell):
    child = pty_shell("set errexit off; new pid; run sh -c 'echo ready; sleep 30'; echo shell-alive $?")
    child.expect("ready")
    # Ctrl-C once sleep runs: one typed in the moment between dash's echo and its fork
    # is dash's to handle (it catches SIGINT under -c), not what this test is about
    _wait_for_comm_in_session(child.pid, "sleep")
    start = time.monotonic()
    child.sendintr()
    child.expect(r"shell-alive (\d+)")
    assert time.monotonic() - start < 2
    assert child.match.group(1) == "130"  # 128 + SIGINT: the program got it, the shell lives
    child.expect(pexpect.EOF)


def test_ctrl_z_stops_program_and_fg_resumes(pty_shell):
    child = pty_shell("set errexit off; run sh -c 'echo ready; sleep 1; echo finished'; "
                      "echo after-stop $?; fg; echo after-fg $?")
    child.expect("ready")
    child.sendcontrol("z")
    child.expect("stopped; `fg` resumes it")
    child.expect(r"after-stop (\d+)")
    assert child.match.group(1) == "148"  # 128 + SIGTSTP
    child.expect("finished")
    child.expect(r"after-fg (\d+)")
    assert child.match.group(1) == "0"
    child.expect(pexpect.EOF)


@pytest.mark.parametrize("setup", ["", "new pid; "])
def test_a_sigterm_while_fg_runs_a_job_reaches_it_and_ends_the_shell(pty_shell, setup):
    # `fg` waits as `run` does (core/proc/forwarding.py): the signal goes to the job, and
    # the shell leaves with its status, on the relay path (PID namespace) too.  The
    # program forks once: dash's vfork() parent cannot stop while its child, stopped by
    # the Ctrl-Z before its exec, holds it (a loop of `sleep`s hit that now and then).
    child = pty_shell(f"set errexit off; {setup}run sh -c "
                      "'trap \"echo got TERM; exit 44\" TERM; sleep 100 & echo ready; wait'; "
                      "echo after-stop $?; fg; echo NOT-REACHED")
    child.expect("ready")
    child.sendcontrol("z")
    child.expect(r"after-stop (\d+)")
    assert child.match.group(1) == "148"
    time.sleep(0.3)   # `fg` has continued it
    child.kill(signal.SIGTERM)
    child.expect("got TERM")
    child.expect(pexpect.EOF)
    assert "NOT-REACHED" not in child.before
    child.close()
    assert child.exitstatus == 44


def test_program_on_a_terminal_inherits_only_0_1_2(pty_shell):
    # with a terminal `run` forks (it hands the terminal over); the batch path is in test_run
    child = pty_shell("new net+pid as a; new uts as b --no-join; "
                      "run /usr/bin/python3 -c 'import os; print(\"fds\", sorted(int(f) for f in "
                      "os.listdir(\"/proc/self/fd\")))'")
    child.expect(r"fds \[([0-9, ]*)\]")
    assert child.match.group(1) == "0, 1, 2, 3"  # 3 is listdir's own
    child.expect(pexpect.EOF)


def test_started_as_a_job_of_bash_nsshell_is_never_stopped_by_its_own_run(tmp_path):
    # Under bash's job control the shell's group is not orphaned, so a tcsetpgrp() from
    # the background stops it with SIGTTOU.  The program's process takes the terminal
    # itself, often before the shell hands it over (the standby is quick): the shell's
    # own hand-over must not stop it (it did ~1 run in 20: bash said "Stopped").
    # pexpect's own shells lead their session (an orphaned group), which hid this.
    from test_repl_pty import prompt_re
    env = _env({"HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state"),
                "TERM": "xterm", "PS1": "BASH$ "})
    bash = pexpect.spawn("bash", ["--norc", "--noprofile", "-i"], env=env, encoding="utf-8",
                         timeout=20, dimensions=(40, 160), cwd=str(tmp_path))
    try:
        bash.expect_exact("BASH$ ")
        bash.send(" ".join(nsshell_argv()) + "\r")
        bash.expect(prompt_re("host"))
        for label, setup in (("host", ""), ("jb", "new user+mnt+pid as jb; map root")):
            if setup:
                bash.send(setup + "\r")
                bash.expect(prompt_re(label))
            for i in range(25):
                time.sleep(0.03)   # the standby gets ready while the line is "typed"
                bash.send("run true\r")
                got = bash.expect([prompt_re(label), "Stopped"], timeout=20)
                assert got == 0, f"nsshell was stopped at run {i} in {label}: {bash.before[-200:]!r}"
        for _ in range(2):
            bash.sendcontrol("d")
            if bash.expect([prompt_re("jb"), r"BASH\$ "], timeout=10) == 1:
                break
        bash.send("exit\r")
        bash.expect(pexpect.EOF, timeout=10)
    finally:
        bash.close(force=True)
