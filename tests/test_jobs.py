"""Ctrl-C and Ctrl-Z during `run` reach the program, never the shell (real pty)."""

import os
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


def test_program_on_a_terminal_inherits_only_0_1_2(pty_shell):
    # with a terminal `run` forks (it hands the terminal over); the batch path is in test_run
    child = pty_shell("new net+pid as a; new uts as b --no-join; "
                      "run /usr/bin/python3 -c 'import os; print(\"fds\", sorted(int(f) for f in "
                      "os.listdir(\"/proc/self/fd\")))'")
    child.expect(r"fds \[([0-9, ]*)\]")
    assert child.match.group(1) == "0, 1, 2, 3"  # 3 is listdir's own
    child.expect(pexpect.EOF)
