"""The creator (core/ns/creator.py): one long-lived helper makes the namespaces of a run of
`new`s, and its invariants hold for real: the shell never unshares, the helper is never
left inside a namespace it was not asked into, nothing stale after a `map` or a context
change, nothing left when the shell ends (also when it is killed), not dumpable."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from busybox_rootfs import rootfs  # noqa: F401 - a fixture
from conftest import NOBODY, _env, nsshell_argv, processes_named, run_nsshell
from nsshell.core.ns import create, creator
from nsshell.kernel import nsfs, nstypes

COMM = "nsshell-create"


def _ns(pid: int | str, t: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{t}")


def _gone(pid: int, timeout: float = 5.0) -> bool:
    """PID has ended (or is a zombie nobody reaps: not running any more)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return True
        if data[data.rfind(b")") + 2:][:1] in (b"Z", b"X"):
            return True
        time.sleep(0.02)
    return False


def _ids(pid: int) -> tuple[str, str]:
    with open(f"/proc/{pid}/status") as f:
        lines = {k: v.split() for k, _, v in (line.partition(":") for line in f)}
    return lines["Uid"][0], lines["Gid"][0]


def _new(shell, line: str) -> None:
    """One command through the engine's one path, without ending a line (which drops
    the creator): what the next command of the same batch sees."""
    status = shell.engine.run_words(line.split())
    assert status == 0, shell.err.getvalue()


@pytest.fixture
def nocreator():
    yield
    creator.drop()


def test_one_creator_serves_a_run_of_new_and_each_answer_is_right(shell, nocreator):
    _new(shell, "new net as crA --no-join")
    pid = creator.pid()
    assert pid is not None and pid != os.getpid()
    with open(f"/proc/{pid}/comm") as f:
        assert f.read().strip() == COMM
    _new(shell, "new net+uts+ipc+mnt+cgroup as crB --no-join")
    _new(shell, "new uts as crC --no-join")
    assert creator.pid() == pid  # the same helper made all three
    sets = shell.session.sets
    inodes = {h.nsid for s in ("crA", "crB", "crC") for h in sets[s].handles.values()}
    assert len(inodes) == 7  # every namespace a new one
    for s in ("crA", "crB", "crC"):
        for t, h in sets[s].handles.items():
            assert nsfs.type_of_fd(h.fd).name == t
            assert str(h.nsid) != _ns("self", t)  # not the shell's
            assert str(h.nsid) != _ns(pid, t)     # and the helper is not left in it
    # the shell itself never entered anything
    for t in ("net", "uts", "ipc", "mnt", "cgroup"):
        assert _ns("self", t) == str(shell.session.host.handles[t].nsid)
        assert _ns(pid, t) == _ns("self", t)  # the helper is home: the (host) context


def test_results_are_those_of_the_forked_helper(shell, nocreator, monkeypatch):
    """Same owner, same copied state (host name, mounts made private) as before."""
    r = run_nsshell("-c", "new uts+mnt as crctx; hostname crfast; "
                          "new uts+mnt as crm; run hostname; run cat /proc/self/mountinfo; "
                          "new mnt as crs --propagation shared; run cat /proc/self/mountinfo")
    assert r.rc == 0, r.err
    out = r.out.splitlines()
    assert "crfast" in out  # the new uts namespace copied the context's name
    private, shared = r.out.split("crs: ")
    root_line = next(l for l in private.splitlines() if l.split()[4:5] == ["/"])
    assert "shared:" not in root_line
    root_line = next(l for l in shared.splitlines() if l.split()[4:5] == ["/"])
    assert "shared:" in root_line
    # and the fork path gives the same kinds of namespaces, owned alike
    made = create.create([], [nstypes.NET, nstypes.UTS], create.CreateOptions())
    assert creator.pid() is not None
    monkeypatch.setattr(creator, "TYPES", ())
    forked = create.create([], [nstypes.NET, nstypes.UTS], create.CreateOptions())
    try:
        for t in ("net", "uts"):
            a, b = made[t], forked[t]
            assert a.type is b.type and a.nsid != b.nsid
            ua, ub = nsfs.owner_userns_fd(a.fd), nsfs.owner_userns_fd(b.fd)
            try:
                assert nsfs.nsid_of_fd(ua, "user") == nsfs.nsid_of_fd(ub, "user")
            finally:
                os.close(ua), os.close(ub)
    finally:
        for h in list(made.values()) + list(forked.values()):
            h.close()


def test_gone_before_any_other_command_and_after_a_context_change(shell, nocreator):
    _new(shell, "new net as crA --no-join")
    first = creator.pid()
    _new(shell, "ctx")  # any other command: it must not see the helper
    assert creator.pid() is None and _gone(first)
    _new(shell, "new net as crB --no-join")
    second = creator.pid()
    assert second != first
    _new(shell, "new net as crC")  # joins crC: the helper of the old context ends
    assert creator.pid() is None and _gone(second)
    _new(shell, "new uts as crD --no-join")
    third = creator.pid()
    assert _ns(third, "net") == str(shell.session.sets["crC"].handles["net"].nsid)
    _new(shell, "leave")
    assert creator.pid() is None and _gone(third)
    # the end of a line ends it too
    assert shell("new net as crE --no-join; new net as crF --no-join").rc == 0
    assert creator.pid() is None


def test_never_seen_inside_a_context_by_another_command():
    r = run_nsshell("--json", "-c", "new net as crin; new net as crx --no-join; "
                                    "new uts as cry --no-join; pids crin")
    assert r.rc == 0, r.err
    assert COMM not in r.out and "nsshell" not in r.out.split("cry:")[-1]


def test_a_map_written_after_the_helper_started_is_seen_by_the_next_new(shell, nocreator):
    _new(shell, "new user+net as crU")  # joined, not mapped yet
    _new(shell, "new net as crA --no-join")
    before = creator.pid()
    assert _ids(before) == ("0", "0")  # unmapped: it kept the caller's ids
    _new(shell, "map 0 100000 65536")
    assert _gone(before)
    _new(shell, "new net as crB --no-join")
    after = creator.pid()
    assert after != before
    assert _ids(after) == ("100000", "100000")  # the root the map now makes it
    owner = nsfs.owner_userns_fd(shell.session.sets["crB"].handles["net"].fd)
    try:
        assert nsfs.nsid_of_fd(owner, "user") == shell.session.sets["crU"].handles["user"].nsid
    finally:
        os.close(owner)


def _start_piped(user: int | None = None) -> subprocess.Popen:
    argv = nsshell_argv()
    env = _env()
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] + argv
        env["HOME"] = "/tmp"
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd="/tmp",
                            start_new_session=True)


def _wait_creator(p: subprocess.Popen, marker: str) -> int:
    line = p.stdout.readline()
    assert line.startswith(marker), (line, p.stderr.read() if p.poll() is not None else "")
    found = processes_named(COMM, ppid=p.pid)
    assert len(found) == 1
    return found[0]


@pytest.mark.parametrize("how", ["exit", "killed"])
def test_nothing_left_when_the_shell_ends(how):
    p = _start_piped()
    try:
        p.stdin.write("new net as crk1 --no-join\nnew net as crk2 --no-join\n")
        p.stdin.flush()
        p.stdout.readline()
        pid = _wait_creator(p, "crk2:")
        if how == "killed":
            os.kill(p.pid, signal.SIGKILL)
        else:
            p.stdin.close()
        p.wait(timeout=20)
        assert _gone(pid)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_rootless_creator_is_not_dumpable_and_serves_its_user_namespace(rootless_ok):
    p = _start_piped(user=NOBODY)
    try:
        p.stdin.write("new user+uts as crR\nmap root\nnew net as crN --no-join\n"
                      "new uts as crU2 --no-join\n")
        p.stdin.flush()
        for _ in range(2):
            p.stdout.readline()
        p.stdout.readline()
        pid = _wait_creator(p, "crU2:")
        assert _ids(pid) == (str(NOBODY), str(NOBODY))
        # an attack from the same uid outside: its memory and fds are closed to it
        probe = subprocess.run(
            ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
             "/usr/bin/python3", "-c",
             f"import os\nfor p in ('mem', 'environ', 'fd/0'):\n"
             f"    try:\n        os.open('/proc/{pid}/' + p, os.O_RDONLY); print('OPEN', p)\n"
             f"    except PermissionError: print('refused', p)\n"],
            capture_output=True, text=True, timeout=20)
        assert "OPEN" not in probe.stdout and probe.stdout.count("refused") == 3, probe
        # it sits in the context's user namespace, and the uts it came home to is crR's
        assert _ns(pid, "user") != _ns("self", "user")
        assert _ns(pid, "uts") != _ns("self", "uts")
        # crR's network namespace is the host's, which it may not re-enter: it made a home
        # of its own (empty), so `new net` was made by it too
        assert _ns(pid, "net") != _ns("self", "net")
        p.stdin.write("pids crR\n")
        p.stdin.flush()
        p.stdin.close()
        out = p.stdout.read()
        assert p.wait(timeout=20) == 0, p.stderr.read()
        assert COMM not in out
        assert _gone(pid)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_run_sees_the_shell_environment_as_it_is_now(shell, monkeypatch):
    """`run` decodes the environment once and again only when it changed (commands/run.py)."""
    monkeypatch.setenv("CRTEST_ENV", "one")
    assert shell("run sh -c 'test \"$CRTEST_ENV\" = one'").rc == 0
    monkeypatch.setenv("CRTEST_ENV", "two")
    assert shell("run sh -c 'test \"$CRTEST_ENV\" = two'").rc == 0
    assert shell("run --env CRTEST_ENV=three sh -c 'test \"$CRTEST_ENV\" = three'").rc == 0
    assert shell("run sh -c 'test \"$CRTEST_ENV\" = two'").rc == 0  # --env did not stick
    monkeypatch.delenv("CRTEST_ENV")
    assert shell("run sh -c 'test -z \"${CRTEST_ENV+set}\"'").rc == 0
    assert shell("set run_cwd /proc; run sh -c 'test \"$PWD\" = /proc'").rc == 0


def test_made_ahead_only_for_the_same_request_and_each_is_new_and_empty(shell, nocreator):
    """From the second alike `new net` on, the creator makes the next one ahead: it is
    handed out only for the same request, and is what a request would make."""
    for n in range(1, 5):
        _new(shell, f"new net as crP{n} --no-join")
    pid = creator.pid()
    _new(shell, "new ipc as crQ --no-join")  # another request: the net made ahead is dropped
    _new(shell, "new net+uts as crR --no-join")
    assert creator.pid() == pid
    sets = shell.session.sets
    assert list(sets["crQ"].handles) == ["ipc"] and sorted(sets["crR"].handles) == ["net", "uts"]
    nets = [sets[f"crP{n}"].handles["net"].nsid for n in range(1, 5)] + \
        [sets["crR"].handles["net"].nsid]
    assert len(set(nets)) == 5
    # nothing handed out stays with the helper (it closes its copies right after the
    # answer, while the shell goes on: wait for that)
    end = time.monotonic() + 5
    while True:
        held = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                held.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
            except OSError:
                pass
        if not {str(n) for n in nets} & held or time.monotonic() > end:
            break
        time.sleep(0.01)
    assert not {str(n) for n in nets} & held
    for n in (1, 3, 4):  # made on request, and made ahead: only lo, down
        r = shell(f"join crP{n}; run sh -c 'test \"$(ip -o link | wc -l)\" = 1 && "
                  f"ip -o link | grep -q \"lo:.*state DOWN\"'; leave")
        assert r.rc == 0, r.err


def test_in_a_pivoted_container_without_python(rootless, rootfs, open_tmpdir):
    """The creator enters a mount namespace whose root is a busybox rootfs (no Python
    library to import from): what it needs was imported before it entered."""
    example = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                           "examples", "container.nss")
    script = os.path.join(open_tmpdir, "crbox.nss")
    with open(example) as f:
        text = f.read()
    with open(script, "w") as f:
        f.write(text + "new net as crIn1 --no-join\nnew uts as crIn2 --no-join\n"
                       "new net as crIn3 --no-join\nnew net as crIn4 --no-join\n"
                       "join crIn2; run hostname\n")
    os.chmod(script, 0o644)
    d = rootless(script, rootfs)
    assert d.rc == 0, d
    assert [l.split(":")[0] for l in d.out.splitlines() if l.startswith("crIn")] == \
        ["crIn1", "crIn2", "crIn3", "crIn4"]
    assert d.out.splitlines()[-1] == "box"  # the new uts copied the container's name
