"""Consecutive `run`s in a batch: the run helper starts the next one's program as soon
as the one before ends (core/proc/runner.py, FollowUp; engine.next_command), and that
must change nothing but the time: the order, errexit, a stopped program, a syntax error
further down, a signal to nsshell between two programs.

Real kernel, real nsshell processes, strace where the protocol itself is the point.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid

import pytest
from conftest import _env, nsshell_argv, processes_named, run_nsshell

SETUP = "new user+mnt+pid+uts as {p}f\nmap root\n"


def _script(tmp_path, text: str) -> str:
    path = tmp_path / "script.nss"
    path.write_text(text)
    return str(path)


def test_the_helper_starts_each_next_run_itself(tmp_path, prefix):
    # What the shell sends its run helper: the first `run` asks for its program and
    # names the next; every later one only says what follows it ("then").  Without
    # follow-ups each `run` would be a "run" request of its own.
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    n = 12
    text = SETUP.format(p=prefix) + "".join(f"run echo line{i}\n" for i in range(n))
    trace = tmp_path / "trace"
    p = subprocess.run([strace, "-f", "-qq", "-e", "trace=sendto,sendmsg", "-s", "64",
                        "-o", str(trace)] + nsshell_argv() + [_script(tmp_path, text)],
                       capture_output=True, text=True, env=_env(), timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-n:] == [f"line{i}" for i in range(n)]
    sent = trace.read_text()
    # pickled strings: \x8c, length, text
    assert sent.count(r"\214\4then") == n - 1, sent[-3000:]
    assert sent.count(r"\214\3run") == 1, sent[-3000:]


def test_errexit_stops_the_batch_before_the_next_program_starts(tmp_path, prefix):
    flag = tmp_path / "ran"
    text = SETUP.format(p=prefix) + f"run sh -c 'exit 3'\nrun touch {flag}\n"
    d = run_nsshell(_script(tmp_path, text))
    assert d.rc == 3, d
    assert not flag.exists()


def test_without_errexit_the_next_program_follows_a_failure(tmp_path, prefix):
    flag = tmp_path / "ran"
    text = ("set errexit off\n" + SETUP.format(p=prefix)
            + f"run false\nrun touch {flag}\nrun echo after\n")
    d = run_nsshell(_script(tmp_path, text))
    assert d.rc == 1, d   # the batch's status: its first failure
    assert flag.exists()
    assert d.out.splitlines()[-1] == "after"


def test_a_stopped_program_is_reported_and_the_next_run_still_runs(tmp_path, prefix):
    flag = tmp_path / "ran"
    mark = f"NSSHELL_FOLLOWUP={uuid.uuid4().hex}"
    text = ("set errexit off\n" + SETUP.format(p=prefix)
            + f"run sh -c 'kill -STOP $$'\nrun touch {flag}\n")
    d = run_nsshell(_script(tmp_path, text), env=dict([mark.split("=", 1)]))
    assert "stopped" in d.err, d
    assert flag.exists()
    assert processes_named("sh", env_mark=mark) == []   # the stopped one ended with nsshell


def test_a_syntax_error_further_down_is_told_in_its_turn(tmp_path, prefix):
    # The next line is read ahead to know whether it is a `run`; a line that does not
    # parse is not run ahead, and its error comes after the lines before it ran.
    text = SETUP.format(p=prefix) + "run echo first\nrun echo 'open\n"
    d = run_nsshell(_script(tmp_path, text))
    assert d.rc == 2, d
    assert d.out.splitlines()[-1] == "first"
    assert ":4:" in d.err, d


def test_lines_that_expand_or_chain_run_as_before(tmp_path, prefix):
    # Not run ahead (their words depend on what runs before them, or they may not
    # run at all), and still right.
    text = ("set errexit off\n" + SETUP.format(p=prefix)
            + "run false\nrun echo status $?\nrun true && run echo chained\n"
            "for w in a b; do run echo $w; done\nrun echo last\n")
    d = run_nsshell(_script(tmp_path, text))
    assert d.out.splitlines()[-5:] == ["status 1", "chained", "a", "b", "last"], d


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_between_programs_leaves_none_running(tmp_path, prefix, sig):
    # A signal can come while the shell is between two `run`s whose second program the
    # helper already started: the shell passes it on to that program as it would
    # during it.  SIGTERM: nsshell ends with that program's status; SIGINT: the program
    # ends (130) and errexit ends the batch.  Nothing of the batch runs on.
    mark = f"NSSHELL_FOLLOWUP={uuid.uuid4().hex}"
    text = SETUP.format(p=prefix) + "run sleep 0.05\n" * 400
    p = subprocess.Popen(nsshell_argv() + [_script(tmp_path, text)],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True,
                         env=_env(dict([mark.split("=", 1)])), start_new_session=True)
    try:
        time.sleep(1.0)   # well into the runs
        assert p.poll() is None, p.stderr.read()
        os.kill(p.pid, sig)
        rc = p.wait(timeout=30)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert rc == 128 + sig, (rc, p.stderr.read())
    deadline = time.monotonic() + 5
    while processes_named("sleep", env_mark=mark) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_named("sleep", env_mark=mark) == []
    assert processes_named("nsshell-run", env_mark=mark) == []


def test_a_program_the_helper_started_is_not_run_twice_when_the_helper_dies(tmp_path, prefix):
    # The second program kills the run helper that started it (its parent: no PID
    # namespace here) before the shell comes to its `run`.  That `run` fails (the helper
    # died), and does not start the program again through a new helper.
    out = tmp_path / "ran"
    text = (f"new user+mnt+uts as {prefix}k\nmap root\nrun true\n"
            f"run sh -c 'kill -KILL $PPID; echo once >> {out}'\n")
    d = run_nsshell(_script(tmp_path, text))
    assert d.rc != 0 and "run helper (nsshell-run) died" in d.err, d
    deadline = time.monotonic() + 5
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert out.read_text() == "once\n", d


def test_after_a_helper_killed_mid_program_the_next_run_starts_another(tmp_path, prefix):
    # The first program kills the helper that runs it: its `run` fails (the helper died,
    # its status lost); the next `run` (named to that helper as what follows) is asked
    # of a new helper, once.
    out = tmp_path / "after"
    text = (f"set errexit off\nnew user+mnt+uts as {prefix}g\nmap root\n"
            f"run sh -c 'kill -KILL $PPID; sleep 0.2'\nrun sh -c 'echo once >> {out}'\n")
    d = run_nsshell(_script(tmp_path, text))
    assert "run helper (nsshell-run) died" in d.err, d
    assert d.rc != 0, d
    assert out.read_text() == "once\n", d
