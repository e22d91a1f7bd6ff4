"""Rootless persisting (uid 65534): the per-user keeper holds the fds; a later nsshell of the
same user finds the set by name (PID namespace included); unpersist releases it and the keeper
leaves; another uid (65533) can reach neither the keeper nor the namespaces."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile

import pytest

from conftest import NOBODY, ROOT, Done, _env, nsshell_argv
from test_persist import alive, comm_of, last_json, marked, nsfs_mounts, wait_gone

OTHER = 65533
KEEPER_DIR = f"/tmp/nsshell-keeper-{NOBODY}"


def keepers(uid: int = NOBODY) -> list[int]:
    return [p for p in marked("nsshell-keeper") if os.stat(f"/proc/{p}").st_uid == uid]


@pytest.fixture
def clean_keeper(rootless_ok):
    """Whatever a failing test left: the keeper (by pid, this run's only) and its directory."""
    before = set(keepers())
    yield
    left = [p for p in keepers() if p not in before]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    wait_gone(left)
    wait_gone(marked("nsshell-init"), 5)
    if not keepers():
        shutil.rmtree(KEEPER_DIR, ignore_errors=True)


def as_user(uid: int, code: str) -> subprocess.CompletedProcess:
    """Run python CODE as UID (for probes that nsshell itself would not do)."""
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                           sys.executable, "-c", code], capture_output=True, text=True,
                          env=_env({"HOME": "/tmp"}), cwd="/tmp", timeout=30)


def test_rootless_persist_reuse_unpersist(rootless, clean_keeper, prefix):
    name = f"{prefix}r"
    made = rootless("-c", f"new user+pid+net+uts as {name} --no-join; map root --ns {name}; "
                          f"persist {name}; handles")
    assert made.rc == 0, made
    assert f"kept at keeper:{name}" in made.out
    assert not any(name in p for p in nsfs_mounts())  # no bind mount: nobody cannot mount
    ks = keepers()
    assert len(ks) == 1 and comm_of(ks[0]) == "nsshell-keeper"
    st = os.lstat(KEEPER_DIR)
    assert stat.S_ISDIR(st.st_mode) and st.st_uid == NOBODY and stat.S_IMODE(st.st_mode) == 0o700
    assert stat.S_ISSOCK(os.lstat(f"{KEEPER_DIR}/keeper.sock").st_mode)
    inits = [p for p in marked("nsshell-init") if os.stat(f"/proc/{p}").st_uid == NOBODY]
    assert inits  # the init of the PID namespace outlived the first nsshell

    # a new process of the same user finds the set by name; its `run` is in the same PID ns
    listed = rootless("--json", "-c", "handles --all")
    assert listed.rc == 0, listed
    rows = {r["type"]: r for r in last_json(listed.out)["handles"] if r["name"] == name}
    assert set(rows) == {"user", "pid", "net", "uts"} and rows["pid"]["origin"] == "keeper"
    assert rows["pid"]["alive"] is True
    used = rootless("-c", f"join {name}; run readlink /proc/self/ns/pid /proc/self/ns/net; "
                          "run sh -c 'echo pid=$$'; run id -u")
    assert used.rc == 0, used
    assert rows["pid"]["ns"] in used.out and rows["net"]["ns"] in used.out
    assert int(used.out.split("pid=")[1].split()[0]) < 100
    assert used.out.split()[-1] == "0"  # root in the persisted user namespace (mapped)

    # another uid: not the set by name, not the keeper's socket, not its fds
    other = rootless("-c", f"join {name}", user=OTHER)
    assert other.rc == 1 and "no namespace set named" in other.err, other
    assert name not in rootless("-c", "handles", user=OTHER).out
    probe = as_user(OTHER, f"""
import socket, os
s = socket.socket(socket.AF_UNIX)
try:
    s.connect({KEEPER_DIR + '/keeper.sock'!r}); print("connected")
except OSError as e:
    print("refused", e.errno)
for fd in os.listdir("/proc/{ks[0]}/fd") if os.access("/proc/{ks[0]}/fd", os.R_OK) else []:
    print("fd", fd)
try:
    os.open("/proc/{ks[0]}/ns/net", os.O_RDONLY); print("opened")
except OSError as e:
    print("ns refused", e.errno)
""")
    assert "connected" not in probe.stdout and "refused" in probe.stdout, probe
    assert "fd " not in probe.stdout and "opened" not in probe.stdout, probe

    # root passes the directory's mode, but the keeper checks SO_PEERCRED: no answer for uid 0
    from nsshell.core.store import keeper as keeper_mod
    import socket
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(f"{KEEPER_DIR}/keeper.sock")
    with pytest.raises((EOFError, ConnectionResetError, BrokenPipeError)):
        keeper_mod.send(s, {"op": "get", "name": name})
        keeper_mod.recv(s)
    s.close()
    assert keepers() == ks  # and it is still there for its own user

    gone = rootless("-c", f"unpersist {name}")
    assert gone.rc == 0 and "keeper:" in gone.out, gone
    assert wait_gone(ks) == []
    assert wait_gone(inits) == []
    assert not os.path.exists(f"{KEEPER_DIR}/keeper.sock")
    again = rootless("-c", f"join {name}")
    assert again.rc == 1


def with_xdg(xdg: str, text: str):
    """nsshell -c TEXT as nobody with XDG_RUNTIME_DIR=XDG (the fixture removes that variable)."""
    p = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                        "env", f"XDG_RUNTIME_DIR={xdg}"] + nsshell_argv() + ["-c", text],
                       capture_output=True, text=True, env=_env({"HOME": "/tmp"}), cwd="/tmp",
                       timeout=60)
    return Done(p.returncode, p.stdout, p.stderr)


def test_rootless_keeper_in_xdg_runtime_dir(rootless, clean_keeper, prefix):
    xdg = tempfile.mkdtemp(prefix="nsshell-xdg-", dir="/tmp")
    os.chown(xdg, NOBODY, NOBODY)
    os.chmod(xdg, 0o700)
    try:
        name = f"{prefix}x"
        made = with_xdg(xdg, f"new user+net as {name} --no-join; persist {name}")
        assert made.rc == 0, made
        assert stat.S_ISSOCK(os.lstat(f"{xdg}/nsshell/keeper.sock").st_mode)
        # the same user without that XDG_RUNTIME_DIR looks elsewhere
        assert rootless("-c", f"join {name}").rc == 1
        used = with_xdg(xdg, f"join {name}; run readlink /proc/self/ns/net")
        assert used.rc == 0 and "net:[" in used.out, used
        ks = keepers()
        assert with_xdg(xdg, f"unpersist {name}").rc == 0
        assert wait_gone(ks) == []
    finally:
        shutil.rmtree(xdg, ignore_errors=True)


VICTIM = 65530     # a uid of its own for the squatting tests (nobody is the squatter)


def keeper_dirs_of(uid: int) -> list[str]:
    return sorted(f"/tmp/{n}" for n in os.listdir("/tmp")
                  if n == f"nsshell-keeper-{uid}" or n.startswith(f"nsshell-keeper-{uid}."))


@pytest.fixture
def squat(rootless_ok):
    """squat(name, kind) makes /tmp/NAME as nobody (the squatter): a 0700 or 0777
    directory, or a symlink to a directory of nobody.  Everything is removed afterwards,
    with whatever keeper of VICTIM the test left."""
    if keeper_dirs_of(VICTIM):
        pytest.skip(f"/tmp/nsshell-keeper-{VICTIM}* exist already")
    made = []
    target = tempfile.mkdtemp(prefix="nsshell-squat-", dir="/tmp")
    os.chown(target, NOBODY, NOBODY)

    def make(name: str, kind: str) -> str:
        path = f"/tmp/{name}"
        code = {"dir700": f"import os; os.mkdir({path!r}, 0o700)",
                "dir777": f"import os; os.mkdir({path!r}); os.chmod({path!r}, 0o777)",
                "symlink": f"import os; os.symlink({target!r}, {path!r})"}[kind]
        done = as_user(NOBODY, code)
        assert done.returncode == 0, done
        made.append(path)
        return path

    yield make
    left = [p for p in marked("nsshell-keeper") if os.stat(f"/proc/{p}").st_uid == VICTIM]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    wait_gone(left)
    wait_gone(marked("nsshell-init"), 5)
    for path in made + keeper_dirs_of(VICTIM) + [target]:
        if os.path.islink(path):
            os.unlink(path)
        else:
            shutil.rmtree(path, ignore_errors=True)


def test_a_squatted_keeper_dir_does_not_lock_the_user_out(rootless, squat, prefix):
    """Issue 10.8: another user made /tmp/nsshell-keeper-UID (and the next names) first.
    The user's keeper lives in a directory of their own; the squatter's are left as made
    and never used (nothing is put in them, no socket in them is trusted)."""
    base = f"nsshell-keeper-{VICTIM}"
    squatted = [squat(base, "dir700"), squat(f"{base}.1", "dir777"), squat(f"{base}.2", "symlink")]
    name = f"{prefix}s"
    made = rootless("-c", f"new user+net as {name} --no-join; persist {name}", user=VICTIM)
    assert made.rc == 0, made
    mine = [d for d in keeper_dirs_of(VICTIM) if d not in squatted]
    assert mine == [f"/tmp/{base}.3"], keeper_dirs_of(VICTIM)
    st = os.lstat(mine[0])
    assert st.st_uid == VICTIM and stat.S_IMODE(st.st_mode) == 0o700
    assert stat.S_ISSOCK(os.lstat(f"{mine[0]}/keeper.sock").st_mode)
    assert os.listdir(squatted[0]) == [] and os.listdir(squatted[1]) == []
    used = rootless("-c", f"join {name}; run readlink /proc/self/ns/net", user=VICTIM)
    assert used.rc == 0 and "net:[" in used.out, used
    ks = [p for p in marked("nsshell-keeper") if os.stat(f"/proc/{p}").st_uid == VICTIM]
    assert len(ks) == 1
    gone = rootless("-c", f"unpersist {name}", user=VICTIM)
    assert gone.rc == 0, gone
    assert wait_gone(ks) == []
    assert not os.path.exists(f"{mine[0]}/keeper.sock")


def test_every_numbered_name_squatted_gives_a_random_dir(rootless, squat, prefix):
    base = f"nsshell-keeper-{VICTIM}"
    squatted = [squat(base, "dir700")] + [squat(f"{base}.{i}", "dir700") for i in range(1, 9)]
    name = f"{prefix}r"
    made = rootless("-c", f"new user+uts as {name} --no-join; persist {name}", user=VICTIM)
    assert made.rc == 0, made
    mine = [d for d in keeper_dirs_of(VICTIM) if d not in squatted]
    assert len(mine) == 1 and not mine[0].rpartition(".")[2].isdigit(), mine
    assert os.lstat(mine[0]).st_uid == VICTIM
    # a later shell finds it there (it is not at any name it could guess)
    listed = rootless("--json", "-c", "handles --all", user=VICTIM)
    assert {r["name"] for r in last_json(listed.out)["handles"] if r["origin"] == "keeper"} == {name}
    assert rootless("-c", f"unpersist {name}", user=VICTIM).rc == 0


def test_a_squatted_xdg_runtime_dir_is_not_used(rootless, clean_keeper, prefix):
    """XDG_RUNTIME_DIR that is not the user's own (here nobody's, given to VICTIM): /tmp."""
    xdg = tempfile.mkdtemp(prefix="nsshell-xdg-", dir="/tmp")
    os.chown(xdg, NOBODY, NOBODY)
    try:
        p = subprocess.run(["setpriv", f"--reuid={VICTIM}", f"--regid={VICTIM}", "--clear-groups",
                            "env", f"XDG_RUNTIME_DIR={xdg}"] + nsshell_argv()
                           + ["-c", f"new user+net as {prefix}x --no-join; persist {prefix}x; "
                                    f"unpersist {prefix}x"],
                           capture_output=True, text=True, env=_env({"HOME": "/tmp"}),
                           cwd="/tmp", timeout=60)
        assert p.returncode == 0, p
        assert os.listdir(xdg) == []
    finally:
        shutil.rmtree(xdg, ignore_errors=True)
        for d in keeper_dirs_of(VICTIM):
            shutil.rmtree(d, ignore_errors=True)


def test_roots_entries_do_not_hide_the_users_own_set(rootless, clean_keeper, prefix, nsshell):
    """Issue 10.8: root's /run/netns/NAME (ip netns add) and /run/nsshell/NAME (root's
    persist, which also makes /run/netns/NAME) of the same name as the user's kept set:
    for the user the name is their own set (join, handles, unpersist); root's stay."""
    a, b = f"{prefix}a", f"{prefix}b"
    assert subprocess.run(["ip", "netns", "add", a]).returncode == 0
    try:
        made = nsshell("-c", f"new net+uts as {b} --no-join; persist {b}")
        assert made.rc == 0, made
        roots = {n: os.stat(f"/run/netns/{n}").st_ino for n in (a, b)}
        kept = rootless("--json", "-c", f"new user+net as {a} --no-join; persist {a}; "
                                        f"new user+net as {b} --no-join; persist {b}; handles")
        assert kept.rc == 0, kept
        rows = [r for r in last_json(kept.out)["handles"] if r["name"] in (a, b)]
        mine = {r["name"]: r["inode"] for r in rows if r["type"] == "net"}
        assert set(mine) == {a, b} and not set(mine.values()) & set(roots.values())

        listed = rootless("--json", "-c", "handles --all")
        rows = [r for r in last_json(listed.out)["handles"] if r["name"] in (a, b)]
        assert {(r["name"], r["origin"]) for r in rows} == {(a, "keeper"), (b, "keeper")}, rows
        for n in (a, b):
            used = rootless("-c", f"join {n}; run readlink /proc/self/ns/net")
            assert used.rc == 0 and f"net:[{mine[n]}]" in used.out, used
            gone = rootless("-c", f"unpersist {n}")
            assert gone.rc == 0 and f"keeper:{n}" in gone.out, gone
        assert wait_gone(keepers()) == []
        # root's entries are untouched, and now the names lead the user to them
        assert {n: os.stat(f"/run/netns/{n}").st_ino for n in (a, b)} == roots
        again = rootless("-c", f"show {a}")   # (joining it is root's only: issue 12.7)
        assert again.rc == 0 and f"net:[{roots[a]}]" in again.out, again
        refused = rootless("-c", f"unpersist {b}")
        assert refused.rc == 1 and "needs root" in refused.err, refused
    finally:
        nsshell("-c", f"unpersist {b}")
        subprocess.run(["ip", "netns", "del", a])


def test_rootless_same_name_twice(rootless, clean_keeper, prefix):
    name = f"{prefix}d"
    done = rootless("-c", f"new user+net as {name} --no-join; persist {name}; persist {name}; "
                          f"new user+net as o --no-join; persist o as {name}")
    assert done.rc == 1 and "already kept" in done.err, done
    assert "already kept (same namespaces)" in done.out
    ks = keepers()
    assert rootless("-c", f"unpersist {name}").rc == 0
    assert wait_gone(ks) == []


def test_rootless_cannot_unpersist_roots_store(rootless, clean_keeper):
    assert ROOT  # the checkout is readable by others (rootless_ok checked it)
    done = rootless("-c", "unpersist nosuchname")
    assert done.rc == 1 and "nothing is persisted" in done.err
    assert alive(os.getpid())


def test_rootless_persist_into_a_directory_is_refused_clearly(rootless, clean_keeper, prefix):
    done = rootless("-c", f"new user+net as {prefix}v --no-join; persist {prefix}v /tmp/{prefix}v")
    assert done.rc == 1 and "no bind mounts" in done.err, done
    assert not os.path.exists(f"/tmp/{prefix}v") and keepers() == []


def test_rootless_shells_starting_the_keeper_at_once(rootless_ok, clean_keeper, prefix):
    """Several shells of one user persist at the same moment: one keeper holds them all."""
    names = [f"{prefix}{i}" for i in range(4)]
    procs = [subprocess.Popen(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                               "env", "-u", "XDG_RUNTIME_DIR"] + nsshell_argv()
                              + ["-c", f"new user+uts as {n} --no-join; persist {n}"],
                              env=_env({"HOME": "/tmp"}), cwd="/tmp", stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for n in names]
    results = [(p.wait(60), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close(), p.stderr.close()
    assert all(rc == 0 for rc, _ in results), results
    ks = keepers()
    assert len(ks) == 1, ks
    from test_persist import run_nsshell
    listed = run_nsshell("--json", "-c", "handles --all", user=NOBODY)
    kept = {r["name"] for r in last_json(listed.out)["handles"] if r["origin"] == "keeper"}
    assert set(names) <= kept
    for n in names:
        assert run_nsshell("-c", f"unpersist {n}", user=NOBODY).rc == 0
    assert wait_gone(ks) == []


def test_root_of_a_user_namespace_uses_the_keeper(rootless_ok, clean_keeper, prefix):
    """Under `unshare -r` the shell is uid 0 but cannot mount on the host: keeper, not mounts."""
    name = f"{prefix}u"
    kdir = "/tmp/nsshell-keeper-0"  # uid 0 as the user namespace sees it; owned by nobody
    if os.path.lexists(kdir):
        pytest.skip(f"{kdir} exists already")
    argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "env", "-u",
            "XDG_RUNTIME_DIR", "unshare", "-r"] + nsshell_argv()
    try:
        p = subprocess.run(argv + ["-c", f"new net+uts as {name} --no-join; persist {name}; "
                                         f"unpersist {name}"],
                           capture_output=True, text=True, env=_env({"HOME": "/tmp"}),
                           cwd="/tmp", timeout=60)
        assert p.returncode == 0, p
        assert f"kept at keeper:{name}" in p.stdout
        assert not any(name in m for m in nsfs_mounts())
        assert os.lstat(kdir).st_uid == NOBODY
        assert wait_gone(keepers()) == []
    finally:
        shutil.rmtree(kdir, ignore_errors=True)
