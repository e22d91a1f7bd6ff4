"""The persist store under faults: a persist or unpersist killed (SIGKILL, for real) at every
one of its steps, then the next `ls`, `persist` or `unpersist` leaves the store and the
process table exactly as if the killed command had never run, or as if it had finished,
and says what it did.  Driven by NSSHELL_TEST_KILL_AT=OP:N (the helper kills itself at its
Nth step) and by strace fault injection on mount(2), as an OOM kill or `kill -9` would.

Also: store errors (a full file system, a read-only one) are one clear line, and the
store root's self-bind is undone once the root is empty (issue 11.10).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import RUN_MARK, mount_points_under, processes_named, run_nsshell
from test_persist import Store, files_under, nsfs_under, scrub_root, wait_gone

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="persisting on the host needs root")

MAKE = "new pid+net+uts as {n} --no-join; persist {n}"


def helpers() -> list[int]:
    mark = f"NSSHELL_TEST_RUN={RUN_MARK}"
    return sorted(processes_named("nsshell-init", env_mark=mark)
                  + processes_named("nsshell-holder", env_mark=mark))


def state(store: Store, name: str, settle: bool = True) -> dict:
    """What the store and the process table hold of NAME (shapes, not inodes)."""
    if settle:  # an unconfirmed holder and an init whose lifeline closed leave by themselves
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(helpers()) not in (0, 2):
            time.sleep(0.05)
    return {"files": [p[len(store.root):] for p in files_under(store.root)],
            "mounts": [p[len(store.root):] for p in mount_points_under(store.root)],
            "netns": os.path.lexists(f"/run/netns/{name}"),
            "helpers": len(helpers())}


def nothing(name: str) -> dict:
    return {"files": [], "mounts": [], "netns": False, "helpers": 0}


def whole(name: str) -> dict:
    return {"files": sorted(["/.nsshell-root", f"/{name}"] +
                            [f"/{name}/{f}" for f in ("meta.json", "net", "pid", "uts")]),
            "mounts": ["", f"/{name}/pid", f"/{name}/net", f"/{name}/uts"],
            "netns": True, "helpers": 2}


def same_shape(got: dict, want: dict) -> bool:
    return {**got, "mounts": sorted(got["mounts"])} == {**want, "mounts": sorted(want["mounts"])}


@pytest.fixture
def store(prefix):
    s = Store(prefix)
    yield s
    scrub_root(s.root, s.netns)
    for pid in wait_gone(helpers(), 5):
        os.kill(pid, 9)


def killed(store: Store, op: str, step: int, line: str):
    done = store.run(line, env={"NSSHELL_TEST_KILL_AT": f"{op}:{step}"})
    return done, f"killed at {op}:{step} " in done.err


NEXT = ("ls uts", "persist", "unpersist")


def test_persist_killed_at_every_step(store, prefix):
    name = f"{prefix}p"
    store.netns.append(name)
    steps = []
    for step in range(1, 40):
        done, was_killed = killed(store, "persist", step, MAKE.format(n=name))
        if not was_killed:  # past the last step: it ran to the end
            assert done.rc == 0, done
            assert same_shape(state(store, name), whole(name))
            break
        assert done.rc != 0 and "Traceback" not in done.err, done
        left = state(store, name)
        nxt = NEXT[step % 3]
        if nxt == "persist":  # the next persist of the name rolls back, then makes it anew
            after = store.run(MAKE.format(n=name))
            assert after.rc == 0, (step, after)
            want = whole(name)
        else:
            after = store.run(nxt if nxt.startswith("ls") else f"unpersist {name}")
            want = nothing(name)
        got = state(store, name)
        assert same_shape(got, want), (step, done.err, left, got)
        if (left["mounts"] or left["files"] not in ([], ["/.nsshell-root"])) \
                and not same_shape(left, whole(name)):  # killed after the commit: done
            said = after.out + after.err
            assert "rolled back" in said or "undid nsshell's self-bind" in said, (step, left, after)
        steps.append((step, done.err.split("killed at ")[1].split(")")[0] + ")", left, got))
        if got != nothing(name):
            assert store.run(f"unpersist {name}").rc == 0
        assert same_shape(state(store, name), nothing(name)), step
    else:
        pytest.fail("persist never ran to its end")
    assert len(steps) >= 15, steps  # root, stage, intent, entry, holder x3, binds, netns...


def test_unpersist_killed_at_every_step(store, prefix):
    name = f"{prefix}u"
    store.netns.append(name)
    steps = []
    for step in range(1, 40):
        assert store.run(MAKE.format(n=name)).rc == 0
        assert same_shape(state(store, name), whole(name))
        done, was_killed = killed(store, "unpersist", step, f"unpersist {name}")
        if not was_killed:
            assert done.rc == 0, done
            assert same_shape(state(store, name), nothing(name))
            break
        assert done.rc != 0 and "Traceback" not in done.err, done
        left = state(store, name)
        nxt = NEXT[step % 3]
        if nxt == "persist":
            after = store.run(MAKE.format(n=name))
        elif nxt == "unpersist":
            after = store.run(f"unpersist {name}")
        else:
            after = store.run("ls uts")
        got = state(store, name)
        # finished (nothing left) or, killed before it changed anything, untouched
        if nxt == "persist" and same_shape(left, whole(name)):  # killed before it began
            assert after.rc == 1 and "not this set" in after.err, (step, after)
            assert same_shape(got, whole(name))
        elif nxt == "persist":
            assert after.rc == 0 and same_shape(got, whole(name)), (step, after, left, got)
        elif nxt == "unpersist":
            assert same_shape(got, nothing(name)), (step, after, left, got)
        else:
            assert same_shape(got, nothing(name)) or same_shape(got, whole(name)), (step, got)
            if not same_shape(left, whole(name)):
                assert "finished removing" in after.err and same_shape(got, nothing(name))
        steps.append((step, done.err.split("killed at ")[1].split(")")[0] + ")", left, got))
        if not same_shape(got, nothing(name)):
            assert store.run(f"unpersist {name}").rc == 0
        assert same_shape(state(store, name), nothing(name)), step
    else:
        pytest.fail("unpersist never ran to its end")
    assert len(steps) >= 10, steps


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
@pytest.mark.parametrize("nth", [1, 2, 3, 4, 5])
def test_persist_killed_by_strace_at_each_mount(store, prefix, nth):
    """The issue's reproduction: SIGKILL injected at the Nth mount(2) of the helper."""
    name = f"{prefix}s{nth}"
    store.netns.append(name)
    from conftest import _env, nsshell_argv
    p = subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=mount",
                        "-e", f"inject=mount:signal=KILL:when={nth}"]
                       + nsshell_argv() + ["-c", MAKE.format(n=name)],
                       env=_env(store.env), capture_output=True, text=True, timeout=60, cwd="/tmp")
    assert p.returncode != 0
    nxt = store.run("ls uts")
    assert nxt.rc == 0, nxt
    assert same_shape(state(store, name), nothing(name)), (nth, p.stderr, nxt)
    # and the name works again
    assert store.run(MAKE.format(n=name)).rc == 0
    assert store.run(f"join {name}", "run true").rc == 0
    assert store.run(f"unpersist {name}").rc == 0
    assert same_shape(state(store, name), nothing(name))


# --- the root's self-bind (issue 11.10) -----------------------------------------------------

def test_root_self_bind_is_undone_when_the_root_empties(store, prefix):
    name = f"{prefix}r"
    store.netns.append(name)
    assert store.run(f"new uts as {name} --no-join", f"persist {name}").rc == 0
    assert store.root in mount_points_under(store.root)
    assert store.run(f"unpersist {name}").rc == 0
    assert mount_points_under(store.root) == [] and files_under(store.root) == []
    # a failed persist leaves no self-bind either
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        failed = store.run(f"new net as {name} --no-join", f"persist {name}")
        assert failed.rc == 1 and "another network namespace" in failed.err, failed
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)
    assert mount_points_under(store.root) == [] and files_under(store.root) == []
    # a root that was a mount point before nsshell came is left one
    subprocess.run(["mount", "--bind", "--make-private", store.root, store.root], check=True)
    try:
        assert store.run(f"new uts as {name} --no-join", f"persist {name}").rc == 0
        assert store.run(f"unpersist {name}").rc == 0
        assert mount_points_under(store.root) == [store.root]
    finally:
        subprocess.run(["umount", store.root], check=True)


def test_set_persist_root_self_bind_undone(store, prefix):
    name = f"{prefix}t"
    other = store.path("other")
    os.mkdir(other)
    d = store.run(f"set persist_root {other}", f"new uts as {name} --no-join", f"persist {name}",
                  f"unpersist {name}")
    assert d.rc == 0, d
    assert mount_points_under(store.root) == [] and os.listdir(other) == []


# --- store errors are one clear line (issue 11.8) -----------------------------------------------

@pytest.fixture
def small_fs():
    d = tempfile.mkdtemp(prefix="nsshell-storefs-", dir="/tmp")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k,nr_inodes=4", "strtfs", d], check=True)
    yield d
    for point in sorted(mount_points_under(d), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)
    shutil.rmtree(d, ignore_errors=True)


def test_full_store_says_so(small_fs, prefix):
    # fill the inodes: the store cannot make the entry
    for i in range(8):
        try:
            open(os.path.join(small_fs, f"f{i}"), "w").close()
        except OSError:
            break
    root = os.path.join(small_fs, "f0")
    os.unlink(root)
    d = run_nsshell("-c", f"new uts as {prefix}f --no-join; persist {prefix}f",
                    env={"NSSHELL_PERSIST_ROOT": root})
    assert d.rc == 1, d
    assert "full" in d.err and small_fs in d.err and "kernel limit" not in d.err, d
    assert len(d.err.strip().splitlines()) == 1
    assert nsfs_under(small_fs) == []


def test_read_only_store_names_the_path(small_fs, prefix):
    root = os.path.join(small_fs, "ro")
    os.mkdir(root)
    subprocess.run(["mount", "-o", "remount,ro", small_fs], check=True)
    d = run_nsshell("-c", f"new uts as {prefix}o --no-join; persist {prefix}o",
                    env={"NSSHELL_PERSIST_ROOT": root})
    assert d.rc == 1, d
    assert "read-only" in d.err and root in d.err, d
    assert len(d.err.strip().splitlines()) == 1
    assert mount_points_under(root) == []


def test_persist_into_a_directory_killed_then_put_right(store, prefix):
    """An entry kept in DIR: the next persist or unpersist of DIR rolls it back."""
    name = f"{prefix}d"
    where = store.path("elsewhere")
    os.mkdir(where)
    target = os.path.join(where, name)
    for step, nxt in ((3, "unpersist"), (8, "persist"), (9, "unpersist")):
        done, was_killed = killed(store, "persist", step,
                                  f"new pid+uts as {name} --no-join; persist {name} {target}")
        assert was_killed and os.path.exists(target), (step, done)
        if nxt == "unpersist":
            after = store.run(f"unpersist {target}")
            assert after.rc == 0 and "rolled back" in after.out, after
        else:
            after = store.run(f"new pid+uts as {name} --no-join", f"persist {name} {target}")
            assert after.rc == 0 and "rolled back" in after.out, after
            assert sorted(os.listdir(target)) == ["meta.json", "pid", "uts"]
            assert store.run(f"unpersist {target}").rc == 0
        assert os.listdir(where) == [] and nsfs_under(where) == [], step
        assert wait_gone(helpers(), 5) == []


def test_a_process_named_like_the_holder_with_a_space_is_not_it():
    """The holder's proof compares the kernel's comm exactly: "nsshell-holder " (a name any
    process may take with PR_SET_NAME) is not nsshell's holder."""
    import sys
    from nsshell.core.store import holder
    code = ("import ctypes, sys; ctypes.CDLL(None).prctl(15, b'nsshell-holder ', 0, 0, 0); "
            "print('ok', flush=True); sys.stdin.read()")
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "ok\n"
        assert holder._comm(p.pid) == "nsshell-holder "
        assert holder._comm(p.pid) != holder.HOLDER_COMM
    finally:
        p.stdin.close()
        p.wait(timeout=10)
