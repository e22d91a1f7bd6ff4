"""persist / unpersist as root: the bind-mount store, reuse by a later nsshell (PID namespace
included), safety (symlinks, existing names, shared mounts, races, undo) and clean removal.

Every test uses a tmp persist root (NSSHELL_PERSIST_ROOT) and names under the `prefix`
fixture; the `store` fixture removes whatever a failing test left (mounts, holders, netns).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import (RUN_MARK, _env, mount_points_under, nsfs_mounts, nsshell_argv, processes_named,
                      run_nsshell)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="persisting on the host needs root")


# --- helpers shared with the interop and rootless tests ------------------------------------

def nsfs_under(path: str) -> list[str]:
    return sorted(p for p in nsfs_mounts() if p.startswith(path.rstrip("/") + "/"))


def files_under(path: str) -> list[str]:
    out = []
    for dirpath, dirs, files in os.walk(path):
        out += [os.path.join(dirpath, f) for f in files]
        out += [os.path.join(dirpath, d) for d in dirs]
    return sorted(out)


def comm_of(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rfind(b")") + 2:][:1] not in (b"Z", b"X")


def wait_gone(pids, timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    left = [p for p in pids if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if alive(p)]
    return left


def marked(comm: str) -> list[int]:
    """Processes of this test run with the given comm."""
    return processes_named(comm, env_mark=f"NSSHELL_TEST_RUN={RUN_MARK}")


def start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return int(data[data.rfind(b")") + 2:].split()[19])


def kill_verified(pid, start) -> None:
    if pid and start and start_time(pid) == start:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def scrub_netns(name: str) -> None:
    path = f"/run/netns/{name}"
    if os.path.lexists(path):
        subprocess.run(["umount", "-l", path], capture_output=True)
        try:
            os.unlink(path)
        except OSError:
            pass


def scrub_root(root: str, names=()) -> None:
    """Undo whatever a (failed) test left in ROOT: holders, mounts, files, the root mount."""
    if os.path.isdir(root):
        for entry in os.listdir(root):
            meta = os.path.join(root, entry, "meta.json")
            try:
                with open(meta) as f:
                    data = json.load(f)
            except (OSError, ValueError):
                continue
            h = data.get("holder") or {}
            kill_verified(h.get("pid"), h.get("start"))
            if (data.get("netns") or {}).get("ours"):
                names = list(names) + [entry]
    for name in names:
        scrub_netns(name)
    for point in sorted(mount_points_under(root), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


class Store:
    """A tmp persist root and the environment that points nsshell at it."""

    def __init__(self, prefix: str):
        self.root = tempfile.mkdtemp(prefix=f"nsshell-persist-{prefix}-", dir="/tmp")
        os.chmod(self.root, 0o755)
        self.env = {"NSSHELL_PERSIST_ROOT": self.root}
        self.netns: list[str] = []

    def run(self, *lines: str, **kw):
        env = dict(self.env)
        env.update(kw.pop("env", {}) or {})
        return run_nsshell("-c", "; ".join(lines), env=env, **kw)

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)


@pytest.fixture
def store(prefix):
    s = Store(prefix)
    yield s
    scrub_root(s.root, s.netns)
    left = wait_gone(marked("nsshell-holder"), 5)
    for pid in left:
        os.kill(pid, signal.SIGKILL)


def json_of(out: str):
    return json.loads(out)


def handles_json(store: Store, *before: str, user=None) -> list[dict]:
    """The rows of `handles --all --json` in a new nsshell (after the commands BEFORE)."""
    d = run_nsshell("--json", "-c", "; ".join(list(before) + ["handles --all"]), env=store.env,
                    user=user)
    assert d.rc == 0, d
    return last_json(d.out)["handles"]


def last_json(out: str):
    """The last JSON document of an output (one per command with data)."""
    dec = json.JSONDecoder()
    i, last = 0, None
    text = out.strip()
    while i < len(text):
        obj, end = dec.raw_decode(text, i)
        last = obj
        i = end
        while i < len(text) and text[i].isspace():
            i += 1
    return last


# --- the round trip ---------------------------------------------------------------------------

def test_persist_then_a_new_process_uses_it_by_name_pid_included(store, prefix):
    name = f"{prefix}p"
    store.netns.append(name)
    first = store.run(f"new user+pid+mnt+net+uts as {name} --no-join", f"map root --ns {name}",
                      f"persist {name}")
    assert first.rc == 0, first
    assert f"kept at {store.path(name)}" in first.out
    # the first nsshell has exited; the bind mounts and the init's holder remain
    for t in ("user", "mnt", "pid", "net", "uts"):
        assert store.path(name, t) in nsfs_mounts()
    meta = json.load(open(store.path(name, "meta.json")))
    holder, init = meta["holder"], meta["init"]
    assert comm_of(holder["pid"]) == "nsshell-holder" and alive(holder["pid"])
    assert comm_of(init["pid"]) == "nsshell-init" and alive(init["pid"])
    assert os.path.exists(f"/run/netns/{name}")
    pid_ino = os.stat(store.path(name, "pid")).st_ino
    net_ino = os.stat(store.path(name, "net")).st_ino

    second = store.run(f"join {name}", "run readlink /proc/self/ns/pid /proc/self/ns/net",
                       "run sh -c 'echo pid=$$'")
    assert second.rc == 0, second
    assert f"pid:[{pid_ino}]" in second.out and f"net:[{net_ino}]" in second.out
    inner = int(second.out.split("pid=")[1].split()[0])
    assert inner < 100  # a pid of the persisted PID namespace, not of the host's
    assert alive(init["pid"])  # the second shell's exit did not end the namespace either

    third = store.run(f"unpersist {name}")
    assert third.rc == 0, third
    assert nsfs_under(store.root) == [] and files_under(store.root) == []
    assert not os.path.lexists(f"/run/netns/{name}")
    assert wait_gone([holder["pid"], init["pid"]]) == []


def test_handles_lists_persisted_sets_before_they_are_used(store, prefix):
    name = f"{prefix}h"
    store.netns.append(name)
    assert store.run(f"new net+uts as {name} --no-join", f"persist {name}").rc == 0
    rows = handles_json(store)
    mine = [r for r in rows if r["name"] == name]
    assert {r["type"] for r in mine} == {"net", "uts"}
    for r in mine:
        assert r["persisted"] == store.path(name, r["type"])
        assert r["origin"] == "nsshell"
        assert r["inode"] == os.stat(store.path(name, r["type"])).st_ino
    # once used, it is held by the session under its name, with the set's directory
    rows = handles_json(store, f"join net {name}")
    mine = [r for r in rows if r["name"] == name]
    assert {r["persisted"] for r in mine} == {store.path(name)}
    assert store.run(f"unpersist {name}").rc == 0
    assert nsfs_under(store.root) == []


def test_persist_into_a_directory_and_use_it_by_path(store, prefix, tmp_path):
    name = f"{prefix}d"
    store.netns.append(name)
    where = store.path("elsewhere")
    os.mkdir(where)
    target = os.path.join(where, name)
    done = store.run(f"new user+net as {name} --no-join", f"persist {name} {target}")
    assert done.rc == 0, done
    ino = os.stat(os.path.join(target, "net")).st_ino
    use = store.run(f"join {target}", "run readlink /proc/self/ns/net")
    assert use.rc == 0 and f"net:[{ino}]" in use.out, use
    assert store.run(f"unpersist {target}").rc == 0
    assert not os.path.exists(target) and nsfs_under(store.root) == []


def test_unpersist_keeps_the_sessions_handles(shell, store, prefix):
    name = f"{prefix}k"
    store.netns.append(name)
    assert shell(f"set persist_root {store.root}").rc == 0
    assert shell(f"new net as {name} --no-join; persist {name}").rc == 0
    rows = [r for r in json_rows(shell) if r["name"] == name]
    assert rows and rows[0]["persisted"] == store.path(name)
    done = shell(f"unpersist {name}")
    assert done.rc == 0, done
    rows = [r for r in json_rows(shell) if r["name"] == name]
    assert rows and rows[0]["persisted"] is None
    assert nsfs_under(store.root) == [] and not os.path.lexists(f"/run/netns/{name}")


def json_rows(shell):
    from nsshell.commands.handles import handle_rows
    return handle_rows(shell.session)


# --- refusing, with a clear reason, and leaving nothing half-made ---------------------------------

def test_existing_name_refused_unless_same_namespace(store, prefix):
    name = f"{prefix}x"
    store.netns.append(name)
    done = store.run(f"new net as {name} --no-join", f"persist {name}", f"persist {name}")
    assert done.rc == 0 and "already persisted" in done.out, done
    other = store.run(f"new net as o{name} --no-join", f"persist o{name} as {name}")
    assert other.rc == 1 and "not this set" in other.err, other
    assert "Traceback" not in other.err
    assert store.run(f"unpersist {name}").rc == 0
    assert nsfs_under(store.root) == []


def test_own_mount_namespace_refused(shell, store):
    assert shell(f"set persist_root {store.root}").rc == 0
    done = shell(f"open pid:{os.getpid()} mnt+uts as me; persist me")
    assert done.rc == 1
    assert "cannot be bind-mounted inside itself" in done.err
    assert files_under(store.root) == [] and nsfs_under(store.root) == []
    host = shell("persist host")
    assert host.rc == 2 and "inside itself" in host.err


def test_unnamed_set_needs_a_name(shell, store):
    assert shell(f"set persist_root {store.root}").rc == 0
    done = shell(f"persist pid:{os.getpid()}")
    assert done.rc == 2 and "as NAME" in done.err
    bad = shell("new net --no-join as n1; persist n1 as 1234")
    assert bad.rc == 2 and "NAME '1234': a name starts with a letter" in bad.err  # names.py
    dots = shell(f"persist n1 {store.root}/../x")
    assert dots.rc == 2 and "'..' is not allowed" in dots.err
    assert shell("set persist_root relative").rc == 2
    assert files_under(store.root) == []


@pytest.fixture
def shared_dir(bound_dir):
    return bound_dir("shared")


def test_shared_target_gets_a_clear_error_and_is_undone(store, shared_dir, prefix):
    name = f"{prefix}s"
    target = os.path.join(shared_dir, name)
    # a mount namespace that still shares peers with the target: the kernel says EINVAL
    done = store.run(f"new user+mnt --propagation unchanged as {name} --no-join",
                     f"persist {name} {target}")
    assert done.rc == 1, done
    assert "shared propagation" in done.err and "make-private" in done.err
    # user was bound before mnt failed: undone, and the directory removed
    assert nsfs_under(shared_dir) == [] and not os.path.exists(target)
    # the persist root itself is made private first, so the same set can be kept there
    ok = store.run(f"new user+mnt --propagation unchanged as {name} --no-join", f"persist {name}")
    assert ok.rc == 0, ok
    assert store.run(f"unpersist {name}").rc == 0
    assert nsfs_under(store.root) == []


def test_netns_name_taken_by_another_namespace_undoes_everything(store, prefix):
    name = f"{prefix}n"
    store.netns.append(name)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        done = store.run(f"new user+net as {name}x --no-join", f"persist {name}x as {name}")
        assert done.rc == 1 and "another network namespace" in done.err, done
        assert not os.path.exists(store.path(name)) and nsfs_under(store.root) == []
        assert os.path.exists(f"/run/netns/{name}")  # ip's entry untouched
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_symlinks_are_not_followed(store, prefix, tmp_path):
    name = f"{prefix}l"
    os.makedirs(store.root, exist_ok=True)
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    os.symlink(decoy, store.path(name))
    done = store.run(f"new uts as {name} --no-join", f"persist {name}")
    assert done.rc == 1 and "symbolic link" in done.err, done
    assert list(decoy.iterdir()) == [] and nsfs_under(str(decoy)) == []
    os.unlink(store.path(name))
    # a symlink as a component of the root is refused too
    link = tmp_path / "rootlink"
    os.symlink(store.root, link)
    via = run_nsshell("-c", f"new uts as {name} --no-join; persist {name}",
                      env={"NSSHELL_PERSIST_ROOT": str(link)})
    assert via.rc == 1 and "symbolic link" in via.err, via
    assert nsfs_under(store.root) == []


def test_two_shells_persisting_one_name_at_once(store, prefix):
    name = f"{prefix}r"
    store.netns.append(name)
    # both race on the same name with different namespaces: exactly one wins
    procs = [subprocess.Popen(nsshell_argv() + ["-c", f"new net+uts as c{i} --no-join; "
                                                f"persist c{i} as {name}"],
                              env=_env(store.env), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd="/tmp")
             for i in range(6)]
    results = [(p.wait(60), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close(), p.stderr.close()
    ok = [r for r in results if r[0] == 0]
    failed = [r for r in results if r[0] != 0]
    assert len(ok) == 1, results
    for rc, err in failed:
        assert rc == 1 and ("not this set" in err or "another network namespace" in err), err
    meta = json.load(open(store.path(name, "meta.json")))
    for t in ("net", "uts"):
        assert os.stat(store.path(name, t)).st_ino == meta["types"][t]["ino"]
    assert os.stat(f"/run/netns/{name}").st_ino == meta["types"]["net"]["ino"]
    # the root was set up once: not one self-bind per racing shell
    assert mount_points_under(store.root).count(store.root) == 1
    assert store.run(f"unpersist {name}").rc == 0
    assert nsfs_under(store.root) == [] and files_under(store.root) == []


def test_a_dead_init_is_reported(store, prefix):
    name = f"{prefix}z"
    store.netns.append(name)
    assert store.run(f"new pid+net as {name} --no-join", f"persist {name}").rc == 0
    meta = json.load(open(store.path(name, "meta.json")))
    os.kill(meta["init"]["pid"], signal.SIGKILL)
    assert wait_gone([meta["init"]["pid"]]) == []
    rows = [r for r in handles_json(store) if r["name"] == name and r["type"] == "pid"]
    assert rows and rows[0]["alive"] is False
    text = store.run("handles --all")
    assert any(name in line and "dead" in line for line in text.out.splitlines()), text
    use = store.run(f"join {name}", "run true")
    assert use.rc != 0 and "init" in use.err, use
    # the holder leaves by itself once its init is gone
    assert wait_gone([meta["holder"]["pid"]]) == []
    assert store.run(f"unpersist {name}").rc == 0
    assert nsfs_under(store.root) == [] and files_under(store.root) == []


def test_unpersist_unknown_name(store, prefix):
    done = store.run(f"unpersist {prefix}none")
    assert done.rc == 1 and "nothing is persisted" in done.err


def test_persisted_names_complete(shell, store, prefix):
    name = f"{prefix}c"
    store.netns.append(name)
    assert shell(f"set persist_root {store.root}").rc == 0
    assert shell(f"new uts as {name} --no-join; persist {name}; close {name}").rc == 0
    cands = [c for c, _ in shell.session.ref_candidates(prefix)]
    assert name in cands
    assert shell(f"unpersist {name}").rc == 0
    assert name not in [c for c, _ in shell.session.ref_candidates(prefix)]


def test_default_root_is_run_nsshell_made_private(prefix):
    """Without NSSHELL_PERSIST_ROOT: /run/nsshell, a private bind mount of itself."""
    root = "/run/nsshell"
    existed = os.path.isdir(root)
    name = f"{prefix}def"
    env = {"NSSHELL_PERSIST_ROOT": ""}
    try:
        done = run_nsshell("-c", f"new net+uts as {name} --no-join; persist {name}", env=env)
        assert done.rc == 0 and f"kept at {root}/{name}" in done.out, done
        with open("/proc/self/mountinfo") as f:
            entry = [line.split() for line in f if line.split()[4] == root]
        assert entry, "the persist root is a mount point"
        assert not any(o.startswith("shared:") for o in entry[-1][6:entry[-1].index("-")])
        assert sorted(os.listdir(f"{root}/{name}")) == ["meta.json", "net", "uts"]
        used = run_nsshell("-c", f"join {name}; run readlink /proc/self/ns/uts", env=env)
        assert used.rc == 0 and f"uts:[{os.stat(f'{root}/{name}/uts').st_ino}]" in used.out
        assert run_nsshell("-c", f"unpersist {name}", env=env).rc == 0
        assert not os.path.exists(f"{root}/{name}") and nsfs_under(root) == []
    finally:
        scrub_netns(name)
        if os.path.isdir(f"{root}/{name}"):
            scrub_root(f"{root}/{name}")
        if not existed and os.path.isdir(root) and not os.listdir(root):
            for point in sorted(mount_points_under(root), key=len, reverse=True):
                subprocess.run(["umount", "-l", point], capture_output=True)
            os.rmdir(root)


def test_ls_names_sets_persisted_under_any_root(store, prefix):
    """`ls` gets persisted names through persist.list_persisted (a tmp root, not /run/nsshell)."""
    name = f"{prefix}ls"
    store.netns.append(name)
    assert store.run(f"new uts+ipc as {name} --no-join", f"persist {name}").rc == 0
    from nsshell.core.store import persist as store_mod
    rows = [r for r in store_mod.list_persisted(root=store.root) if r["name"] == name]
    assert {(r["type"], r["inode"]) for r in rows} == {
        (t, os.stat(store.path(name, t)).st_ino) for t in ("uts", "ipc")}
    done = run_nsshell("--json", "-c", "ls uts+ipc", env=store.env)
    assert done.rc == 0, done
    found = {(e["type"], e["ns"]): e for e in last_json(done.out)["namespaces"]}
    for r in rows:
        entry = found[(r["type"], r["inode"])]
        assert name in entry["names"] and "mount" in entry["held"]
    assert store.run(f"unpersist {name}").rc == 0
