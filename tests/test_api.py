"""The Python API (nsshell.api) and the pytest fixture (nsshell.pytest_plugin), on the
real kernel: the same engine as `nsshell -c`, the same JSON as `--json`, the same
errors and statuses, nothing left behind."""

from __future__ import annotations

import gc
import os
import shutil
import signal
import subprocess
import sys

import pytest

import nsshell
from conftest import _env, json_docs, marked_processes, run_nsshell
from nsshell import api
from test_signals import orphans

P = "apit"  # names of this file's namespaces


def _shape(value):
    """The structure (keys, nesting, types) of a document, for two processes' data about
    different namespaces: values (inodes, pids, how many holders) differ."""
    if isinstance(value, list):
        return sorted({repr(_shape(v)) for v in value})
    if isinstance(value, dict):
        if value and all(isinstance(k, str) and k.startswith("/") for k in value):
            # keyed by mount point: the keys are data (the host's mounts change meanwhile)
            return {"/PATH": sorted({repr(_shape(v)) for v in value.values()})}
        return {k: _shape(v) for k, v in value.items()}
    return type(value).__name__


def _ours(docs: list) -> list:
    """Without what other processes persisted meanwhile (`handles` lists the host's too)."""
    return [{"handles": [h for h in d["handles"] if h["name"].startswith(P)]}
            if isinstance(d, dict) and "handles" in d else d for d in docs]


def _cli_docs(text: str) -> list:
    done = run_nsshell("--json", "-c", text)
    assert done.rc == 0, done
    return json_docs(done.out)


@pytest.mark.parametrize("text", [
    "ctx",
    "handles",
    "echo hello world",
    "ctx; echo a; handles",
    "help new",
    "set errexit on; ctx",
])
def test_the_data_is_what_nsshell_json_prints(text):
    # `handles` lists what is persisted on the host, which other processes may change
    # between the two: equal to the CLI's before or after it
    with nsshell.Session() as s:
        before = s.run_all(text)
        cli = _cli_docs(text)
        assert cli in (before, s.run_all(text))


@pytest.mark.parametrize("text", [
    f"new user+uts as {P}1 --no-join; handles",
    f"new net as {P}2; ctx; show {P}2",
    f"new user+pid+mnt as {P}3 --no-join; handles; show {P}3",
])
def test_the_data_of_new_namespaces_has_the_cli_shape(text):
    with nsshell.Session() as s:
        ours = s.run_all(text)
    assert _shape(_ours(ours)) == _shape(_ours(_cli_docs(text)))


def test_run_returns_one_document_a_list_or_none():
    with nsshell.Session() as s:
        assert s.run("echo hi") == {"message": "hi"}
        assert s.run("echo a; echo b") == [{"message": "a"}, {"message": "b"}]
        assert s.run("run true") is None
        assert s.run_all("echo a") == [{"message": "a"}]


@pytest.mark.parametrize("text, cls", [
    ("new bogus", api.UsageError),
    ("frobnicate", api.UsageError),
    (f"show {P}-nothing", api.NotFoundError),
    ("run /nonexistent/prog", api.ProgramNotFound),
    ("run /etc/passwd", api.ProgramNotFound),
    ("run false", api.CommandFailed),
    ("run sh -c 'exit 5'", api.CommandFailed),
    ("exit 4", api.CommandFailed),
    ("echo a; new bogus; echo never", api.UsageError),
    ("echo 'unterminated", api.UsageError),
])
def test_errors_are_the_clis_classes_and_statuses(text, cls):
    cli = run_nsshell("-c", text)
    assert cli.rc != 0
    with nsshell.Session() as s:
        with pytest.raises(cls) as info:
            s.run(text)
        assert info.value.status == cli.rc
        if cli.err:  # the same one line the CLI prints
            assert f"nsshell: {info.value.where}\n" == cli.err
        assert s.last_status == cli.rc or text.startswith("exit")


def test_check_false_returns_the_data_of_the_commands_before_the_failure():
    with nsshell.Session() as s:
        assert s.run("echo a; run false; echo b", check=False) == {"message": "a"}
        assert s.last_status == 1
    with nsshell.Session(keep_going=True) as s:  # as nsshell -k
        assert s.run("echo a; run false; echo b", check=False) == [{"message": "a"},
                                                                   {"message": "b"}]


def test_helpers_return_data():
    with nsshell.Session() as s:
        made = s.new("net+uts", f"{P}h", join=False)
        assert made["name"] == f"{P}h"
        assert sorted(h["type"] for h in made["handles"]) == ["net", "uts"]
        shown = s.show(f"{P}h")
        assert shown == s.run(f"show {P}h") or _shape(shown) == _shape(s.run(f"show {P}h"))
        assert any(r["ns"] == made["handles"][0]["inode"] for r in s.ls("net")["namespaces"])
        assert s.ctx()["context"][0]["name"] == "host"  # not joined
        anon = s.new(["uts"])  # default name, joined
        assert anon["name"] == "ns1"
        assert s.run_program(["hostname"]).stdout.strip() == os.uname().nodename
        s.run("hostname apit-box")
        assert s.run_program(["hostname"]).stdout == "apit-box\n"
        assert os.uname().nodename != "apit-box"


def test_run_program_captures_or_inherits_the_output(capfd):
    with nsshell.Session() as s:
        s.new("net", f"{P}n")
        done = s.run_program(["sh", "-c", "ip -o link; echo oops >&2; exit 3"])
        assert done.status == done.returncode == 3
        assert [line.split(":")[1].strip() for line in done.stdout.splitlines()] == ["lo"]
        assert done.stderr == "oops\n"
        with pytest.raises(api.CommandFailed) as info:
            done.check()
        assert info.value.status == 3
        capfd.readouterr()
        s.run("run sh -c 'echo to-stdout; echo to-stderr >&2'")  # as the CLI: inherited
        out, err = capfd.readouterr()
        assert out == "to-stdout\n" and err == "to-stderr\n"
        with pytest.raises(api.ProgramNotFound) as info:
            s.run_program(["/nonexistent/prog"])
        assert info.value.status == 127


def _init_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rfind(b")") + 2:].split()[0] not in (b"Z", b"X")


def _wait_gone(pid: int) -> bool:
    import time
    deadline = time.monotonic() + 5
    while _init_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _init_alive(pid)


def test_handles_close_with_the_session_when_closed_collected_or_at_exit():
    s = nsshell.Session()
    init = s.new("pid", f"{P}c", join=False)["handles"][0]["init_pid"]
    net = s.new("net", f"{P}cn", join=True)["handles"][0]["inode"]
    assert _init_alive(init)
    s.close()
    assert s.closed and _wait_gone(init)
    with nsshell.Session() as other:  # the network namespace is gone: nothing holds it
        assert net not in {r["ns"] for r in other.ls("net")["namespaces"]}
    with pytest.raises(api.NsshellError):
        s.run("ctx")
    s.close()  # twice is fine

    s = nsshell.Session()
    init = s.new("pid", f"{P}g", join=False)["handles"][0]["init_pid"]
    del s
    gc.collect()
    assert _wait_gone(init)

    code = ("import nsshell; s = nsshell.Session(); "
            f"print(s.new('pid', '{P}x', join=False)['handles'][0]['init_pid'], flush=True)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=_env(), timeout=60)
    assert p.returncode == 0, p.stderr
    assert _wait_gone(int(p.stdout))


def test_importing_nsshell_does_not_load_the_api():
    code = ("import sys, nsshell; assert 'nsshell.api' not in sys.modules; "
            "assert 'nsshell.engine' not in sys.modules; "
            "from nsshell.api import Session; assert nsshell.Session is Session; "
            "assert nsshell.UsageError is __import__('nsshell.errors').errors.UsageError; "
            "print('ok')")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.stdout == "ok\n", p.stderr
    with pytest.raises(AttributeError):
        nsshell.no_such_name  # noqa: B018


def _signalled(code: str, tmp_path) -> str:
    """CODE with TRAPPER (a program that exits 3 on SIGTERM once it says it is ready by
    making a file) and when_ready(send): SEND once the program is ready (never before
    its trap is set, however slow the machine)."""
    ready = str(tmp_path / "ready")
    return (f"READY = {ready!r}\n"
            "TRAPPER = \"trap 'echo got TERM; exit 3' TERM; : > \" + READY + "
            "\"; while :; do sleep 0.05; done\"\n"
            "def when_ready(send):\n"
            "    import os, time\n"
            "    while not os.path.exists(READY):\n"
            "        time.sleep(0.01)\n"
            "    send()\n") + code


def test_a_forwarded_signal_is_given_back_to_the_python_process(tmp_path):
    # SIGTERM to a Python program while a program runs: the program gets it first,
    # then the Python process (here its own handler), which sees the program's status.
    code = r"""
import os, signal, threading, nsshell
got = []
signal.signal(signal.SIGTERM, lambda n, f: got.append(n))
threading.Thread(target=when_ready, args=(lambda: os.kill(os.getpid(), signal.SIGTERM),)).start()
with nsshell.Session() as s:
    s.new("pid", join=True)
    done = s.run_program(["sh", "-c", TRAPPER])
print(done.status, done.stdout.strip(), got)
"""
    p = subprocess.run([sys.executable, "-c", _signalled(code, tmp_path)], capture_output=True,
                       text=True, env=_env(), timeout=60)
    assert p.stdout.strip() == "3 got TERM [15]", p.stderr


def test_a_signal_another_thread_takes_while_a_program_runs_is_forwarded_too(tmp_path):
    # The signal is taken by a thread that is not the one waiting for the program: the
    # interpreter's handler only sets a flag, which a thread blocked in waitpid() never
    # sees (the same as a signal landing just before the main thread enters waitpid(),
    # made certain).  The waiter must wake and pass it on (core/proc/forwarding.py).
    code = r"""
import os, signal, threading, nsshell
got = []
signal.signal(signal.SIGTERM, lambda n, f: got.append(n))
to_this_thread = lambda: signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
threading.Thread(target=when_ready, args=(to_this_thread,)).start()
with nsshell.Session() as s:
    s.new("pid", join=True)
    done = s.run_program(["sh", "-c", TRAPPER])
print(done.status, done.stdout.strip(), got)
"""
    p = subprocess.Popen([sys.executable, "-c", _signalled(code, tmp_path)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=_env(), start_new_session=True)
    try:
        out, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:  # the signal was lost: end the session, then fail
        for pid in [int(n) for n in os.listdir("/proc") if n.isdigit()]:
            try:
                if os.getsid(pid) == p.pid:
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        out, err = p.communicate()
    assert out.strip() == "3 got TERM [15]", err


# -- the pytest fixture -------------------------------------------------------------------

def test_the_fixture_gives_a_session(nsshell_session):
    assert isinstance(nsshell_session, api.Session)
    nsshell_session.new("uts", f"{P}f")
    assert nsshell_session.run_program(["true"]).status == 0


def test_a_project_tests_with_the_fixture_and_nothing_is_left(tmp_path):
    name = f"{P}p{os.getpid()}"
    shutil.copy(os.path.join(os.path.dirname(__file__), "data", "nsshell_fixture_example.py"),
                tmp_path / "test_example.py")
    before = marked_processes()
    # a pytest of its own in an empty directory: the fixture comes from the entry point
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "test_example.py"], cwd=tmp_path, capture_output=True, text=True,
                       env=_env({"NSSHELL_EXAMPLE_NAME": name}), timeout=120)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert "3 passed" in p.stdout
    assert not os.path.exists(f"/run/netns/{name}")
    assert not os.path.exists(f"/run/nsshell/{name}")
    assert not orphans(before)


def test_the_fixture_fails_a_test_that_leaves_a_persisted_set_it_cannot_remove(tmp_path):
    # what it could not clean up is a failure of the test, not silence
    (tmp_path / "test_bad.py").write_text(
        "def test_bad(nsshell_session):\n"
        "    nsshell_session._persisted['apit-gone'] = '/nonexistent/apit-gone'\n")
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "test_bad.py"], cwd=tmp_path, capture_output=True, text=True,
                       env=_env(), timeout=120)
    assert p.returncode == 1 and "nsshell_session: unpersist apit-gone" in p.stdout, p.stdout


def test_sigint_while_a_program_runs_reaches_it_then_raises_keyboardinterrupt():
    code = r"""
import os, signal, threading, nsshell
threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
with nsshell.Session() as s:
    try:
        s.run_program(["sh", "-c", "trap 'echo got INT >&2; exit 9' INT; while :; do sleep 0.05; done"],
                      capture=False)
    except KeyboardInterrupt:
        print("KeyboardInterrupt", s.last_status)
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=_env(), timeout=60)
    assert p.stdout.strip() == "KeyboardInterrupt 9" and "got INT" in p.stderr, p


def test_the_api_works_without_root(rootless_ok):
    code = ("import nsshell\n"
            "with nsshell.Session() as s:\n"
            "    s.run('new user+uts as r; map root; hostname apit-rootless')\n"
            "    print(s.run_program(['hostname']).stdout.strip(), s.show('r')['ref'])\n")
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        sys.executable, "-c", code], capture_output=True, text=True,
                       env=_env({"HOME": "/tmp"}), cwd="/tmp", timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split()[0] == "apit-rootless"
