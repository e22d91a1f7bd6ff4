"""Signals sent to nsshell while `run` waits reach the program (issue 13.6).

Real signals to real nsshell processes: in a pipe (the batch run helper,
core/proc/runner.py) and on a pseudo-terminal (the forked foreground path,
core/proc/program.py), with and without a PID namespace.  The program says which
signal it got and exits with a code of its own; nsshell must exit with that
status (128+N if the program died of signal N) and leave no process behind.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import time

import pytest

from conftest import RUN_MARK, _env, marked_processes, nsshell_argv

# prints READY, then on SIGNAL prints "got SIGNAL" and exits with 40+N
TRAPPER = "".join(f"trap 'echo got {s.name[3:]}; exit {40 + s}' {s.name[3:]}; "
                  for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT)) + \
    "echo READY; while :; do sleep 0.05; done"


def _quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


class Proc:
    """nsshell -c TEXT, started in a pipe or on a pseudo-terminal, output read as it comes."""

    def __init__(self, text: str, terminal: bool):
        argv = nsshell_argv() + ["-c", text]
        env = _env({"NO_COLOR": "1"})
        self.buf = b""
        if terminal:
            pid, fd = pty.fork()
            if pid == 0:
                try:
                    os.chdir("/tmp")
                    os.execvpe(argv[0], argv, env)
                finally:
                    os._exit(127)
            self.pid, self.fd, self.popen = pid, fd, None
        else:
            self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, env=env, cwd="/tmp")
            self.pid, self.fd = self.popen.pid, self.popen.stdout.fileno()

    def read_until(self, text: str, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while text.encode() not in self.buf:
            left = deadline - time.monotonic()
            assert left > 0, f"no {text!r} in {self.buf!r}"
            if not self._read_some(left):
                break
        assert text.encode() in self.buf, self.buf
        return self.buf.decode(errors="replace")

    def _read_some(self, timeout: float) -> bool:
        """Add what the program wrote within TIMEOUT to buf; False once its output ended."""
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return True
        try:
            chunk = os.read(self.fd, 4096)
        except OSError:
            chunk = b""
        self.buf += chunk
        return bool(chunk)

    def finish(self, timeout: float = 20) -> tuple[int, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._read_some(0.2):
                break
        if self.popen is not None:
            rc = self.popen.wait(timeout=max(deadline - time.monotonic(), 1))
            self.popen.stdout.close()
        else:
            rc = self._reap(max(deadline - time.monotonic(), 1))
            os.close(self.fd)
        return rc, self.buf.decode(errors="replace")

    def _reap(self, timeout: float) -> int:
        """The exit code of the nsshell on the terminal; one that is still there after
        TIMEOUT is killed with its session and the test fails (never hangs the suite)."""
        deadline = time.monotonic() + timeout
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            if time.monotonic() > deadline:
                for victim in _session_of(self.pid):
                    try:
                        os.kill(victim, signal.SIGKILL)
                    except OSError:
                        pass
                os.waitpid(self.pid, 0)
                raise AssertionError(f"nsshell still running after {timeout:.0f} s: {self.buf!r}")
            time.sleep(0.05)


def _session_of(sid: int) -> list[int]:
    """Every process of session SID (pty.fork made the nsshell a session leader)."""
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.getsid(int(name)) == sid:
                    out.append(int(name))
            except OSError:
                pass
    return out


def _ours(pid: int) -> bool:
    """Started by this test run (its mark is in the environment), not another's helper."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f"NSSHELL_TEST_RUN={RUN_MARK}".encode() in f.read()
    except OSError:
        return False


def orphans(before: set[int], timeout: float = 5.0) -> list[int]:
    """This run's processes that were not there BEFORE, once they had TIMEOUT to end."""
    deadline = time.monotonic() + timeout
    while True:
        left = sorted(p for p in marked_processes() - before if _ours(p))
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


@pytest.fixture
def no_orphans():
    before = marked_processes()
    yield
    left = orphans(before)
    assert not left, "left running: " + ", ".join(
        f"{p} {open(f'/proc/{p}/cmdline', 'rb').read()!r}" for p in left if os.path.exists(f"/proc/{p}"))


MODES = [pytest.param(False, id="pipe"), pytest.param(True, id="terminal")]
SETUPS = [pytest.param("", id="host"), pytest.param("new pid; ", id="pidns"),
          pytest.param("new user+pid+mnt; ", id="userpidns")]


@pytest.mark.parametrize("terminal", MODES)
@pytest.mark.parametrize("setup", SETUPS)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_to_nsshell_reaches_the_program_and_its_status_is_nsshells(
        terminal, setup, sig, no_orphans):
    p = Proc(f"{setup}run sh -c {_quote(TRAPPER)}; echo NOT-REACHED", terminal)
    p.read_until("READY")
    os.kill(p.pid, sig)
    rc, out = p.finish()
    name = signal.Signals(sig).name[3:]
    assert f"got {name}" in out
    assert rc == 40 + sig, out
    assert "NOT-REACHED" not in out  # the signal was for the shell: the batch ends


@pytest.mark.parametrize("terminal", MODES)
@pytest.mark.parametrize("setup", SETUPS[:2])
def test_a_program_that_dies_of_the_forwarded_signal_gives_128_plus_n(terminal, setup, no_orphans):
    p = Proc(f"{setup}run sh -c 'echo READY; exec sleep 60'", terminal)
    p.read_until("READY")
    time.sleep(0.2)  # `exec sleep`: the trap-less program is in place
    os.kill(p.pid, signal.SIGTERM)
    rc, out = p.finish()
    assert rc == 128 + signal.SIGTERM, out


@pytest.mark.parametrize("terminal", MODES)
def test_sigquit_is_forwarded_too(terminal, no_orphans):
    p = Proc(f"run sh -c {_quote(TRAPPER)}", terminal)
    p.read_until("READY")
    os.kill(p.pid, signal.SIGQUIT)
    rc, out = p.finish()
    assert "got QUIT" in out and rc == 40 + signal.SIGQUIT, out


@pytest.mark.parametrize("setup", SETUPS[:2])
def test_sigint_goes_to_the_program_and_errexit_decides(setup, no_orphans):
    # SIGINT (kill -INT, or a Ctrl-C the shell got in a pipe) goes to the program; as in
    # sh the batch goes on when the program exits 0, and stops on its failure.
    script = f"trap 'echo got INT; exit {{code}}' INT; echo READY; while :; do sleep 0.05; done"
    p = Proc(f"{setup}run sh -c {_quote(script.format(code=0))}; echo GO-ON", False)
    p.read_until("READY")
    os.kill(p.pid, signal.SIGINT)
    rc, out = p.finish()
    assert "got INT" in out and "GO-ON" in out and rc == 0, out
    p = Proc(f"{setup}run sh -c {_quote(script.format(code=7))}; echo GO-ON", False)
    p.read_until("READY")
    os.kill(p.pid, signal.SIGINT)
    rc, out = p.finish()
    assert "got INT" in out and "GO-ON" not in out and rc == 7, out


def test_a_signal_before_the_program_starts_is_not_lost(no_orphans):
    # Sent while the run helper is still being set up: forwarded as soon as the
    # program exists, never dropped (a lost SIGTERM would leave `sleep 60` running).
    p = Proc("run true; run sh -c 'echo READY; exec sleep 60'", False)
    p.read_until("READY")
    os.kill(p.pid, signal.SIGTERM)
    rc, _ = p.finish(timeout=10)
    assert rc == 128 + signal.SIGTERM


@pytest.mark.parametrize("setup", ["", "new pid"])
def test_at_the_prompt_ctrl_c_goes_to_the_program_and_sigterm_ends_both(tmp_path, setup, no_orphans):
    pexpect = pytest.importorskip("pexpect")
    from test_repl_pty import Term
    t = Term(tmp_path)
    try:
        label = "host"
        if setup:
            t.child.send(setup + "\r")
            label = "ns1"
            t.expect_prompt(label)
        # Ctrl-C from the terminal: to the program only; the shell goes on
        t.child.send(f"run sh -c {_quote(TRAPPER)}\r")
        t.child.expect("READY\r\n")
        t.child.sendcontrol("c")
        t.child.expect("got INT\r\n")
        t.expect_prompt(label)
        # SIGTERM to the shell: forwarded, then the shell leaves with the program's status
        t.child.send(f"run sh -c {_quote(TRAPPER)}\r")
        t.child.expect("READY\r\n")
        os.kill(t.child.pid, signal.SIGTERM)
        t.child.expect("got TERM\r\n")
        t.child.expect(pexpect.EOF)
        t.child.close()
        assert t.child.exitstatus == 40 + signal.SIGTERM
    finally:
        t.close()


@pytest.mark.parametrize("terminal", MODES)
@pytest.mark.parametrize("setup", [SETUPS[0], SETUPS[2]])
def test_a_signal_sent_as_each_of_many_programs_starts_is_never_lost(terminal, setup, no_orphans):
    # Each program says READY the moment it runs, and gets SIGINT from the shell at once:
    # the shell is then between learning that it started and waiting for it, where a
    # Python signal handler's flag is not seen by a waitpid() or recv() already entered
    # (a lost signal hangs the batch).  The waiter sleeps in poll() on a wakeup pipe
    # instead (core/proc/forwarding.py); many runs put a signal at every point of that step.
    runs = 150
    one = "run sh -c 'trap \"exit 0\" INT; echo READY; while :; do sleep 0.01; done'"
    before = marked_processes()
    p = Proc(setup + "; ".join([one] * runs) + "; echo ALL-DONE", terminal)
    sent = 0
    try:
        while sent < runs:
            if p.buf.count(b"READY") > sent:
                os.kill(p.pid, signal.SIGINT)
                sent += 1
                continue
            # a lost signal: the program waits for it, nsshell for the program
            assert select.select([p.fd], [], [], 10)[0], \
                f"run {sent} of {runs} got its signal and nothing followed: {p.buf[-300:]!r}"
            assert p._read_some(0), f"nsshell ended after {sent} runs: {p.buf[-300:]!r}"
    except BaseException:
        for pid in marked_processes() - before:   # a hung batch: nothing of it stays
            if _ours(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        raise
    rc, out = p.finish()
    assert rc == 0 and out.count("READY") == runs and "ALL-DONE" in out, out[-300:]
