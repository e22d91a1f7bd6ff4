"""persist / unpersist among other users and other sessions: what root trusts in the store
(issue 10.5), what it never removes (10.6), sets that hold nothing (11.2), programs another
session runs in a persisted PID namespace (11.4), sessions holding over 1,024 fds (11.5),
a dead PID init (11.9), and what mount namespaces made after a persist keep (11.11)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import NOBODY, _env, nsshell_argv, run_nsshell
from test_persist import alive, files_under, nsfs_under, wait_gone
from test_store_faults import store  # noqa: F401 - the fixture

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="persisting on the host needs root")



def start_time(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    return int(data[data.rfind(b")") + 2:].split()[19])


@pytest.fixture
def decoy_holder(tmp_path):
    """A process of another user named like nsshell's holder: `nsshell-holder` (comm)."""
    exe = tmp_path / "nsshell-holder"
    shutil.copy("/bin/sleep", exe)
    os.chmod(tmp_path, 0o755)
    p = subprocess.Popen(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                          str(exe), "60"])
    time.sleep(0.2)
    yield p
    p.kill()
    p.wait()


@pytest.fixture
def victim_netns(prefix):
    name = f"{prefix}v"
    subprocess.run(["ip", "netns", "add", name], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


# --- 10.5: a store entry a user wrote is not trusted ---------------------------------------------

def test_user_written_entry_makes_root_kill_and_remove_nothing(decoy_holder, victim_netns, prefix):
    base = tempfile.mkdtemp(prefix=f"nsshell-evil-{prefix}-", dir="/tmp")
    try:
        os.chmod(base, 0o755)
        entry = os.path.join(base, "x")
        os.mkdir(entry)
        os.chown(entry, NOBODY, NOBODY)
        ino = os.stat(f"/run/netns/{victim_netns}").st_ino
        meta = {"version": 2, "state": "done", "name": victim_netns, "uid": NOBODY,
                "types": {"net": {"ino": ino, "dev": 4}},
                "netns": {"path": f"/run/netns/{victim_netns}", "ours": True},
                "holder": {"pid": decoy_holder.pid, "start": start_time(decoy_holder.pid)},
                "init": None}
        subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                        sys.executable, "-c",
                        f"import json; json.dump({meta!r}, open({entry + '/meta.json'!r}, 'w'))"],
                       check=True)
        done = run_nsshell("-c", f"unpersist {entry}")
        assert done.rc == 1 and "owned by uid 65534" in done.err, done
        assert len(done.err.splitlines()) == 1
        assert alive(decoy_holder.pid) and os.path.exists(f"/run/netns/{victim_netns}")
        assert sorted(os.listdir(entry)) == ["meta.json"]
        # joining it is refused the same way (nothing in it is believed)
        used = run_nsshell("-c", f"join {entry}")
        assert used.rc != 0 and "Traceback" not in used.err
        # a root-owned entry naming a process and a netns it does not hold (a stale or forged
        # meta.json): the entry goes, the process and the netns entry stay
        os.chown(entry, 0, 0)
        os.chown(os.path.join(entry, "meta.json"), 0, 0)
        done = run_nsshell("-c", f"unpersist {entry}")
        assert done.rc == 0, done
        assert "not this set's network namespace: left alone" in done.out, done
        assert "holder" not in done.out.split("removed")[1].split("(")[0]
        assert alive(decoy_holder.pid) and os.path.exists(f"/run/netns/{victim_netns}")
        assert not os.path.exists(entry)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_store_root_another_user_owns_is_refused(store, prefix):
    os.chown(store.root, NOBODY, NOBODY)
    done = store.run(f"new uts as {prefix}o --no-join", f"persist {prefix}o")
    assert done.rc == 1 and "owned by uid 65534" in done.err, done
    assert nsfs_under(store.root) == [] and files_under(store.root) == []
    os.chown(store.root, 0, 0)
    os.chmod(store.root, 0o777)  # writable by others, not sticky
    done = store.run(f"new uts as {prefix}o --no-join", f"persist {prefix}o")
    assert done.rc == 1 and "writable by others" in done.err, done
    os.chmod(store.root, 0o755)


# --- 10.6: nothing removes what nsshell did not make ------------------------------------------------

def test_unpersist_refuses_a_foreign_ip_netns_name(store, victim_netns):
    done = store.run(f"unpersist {victim_netns}")
    assert done.rc == 1 and f"`ip netns del {victim_netns}`" in done.err, done
    assert os.path.exists(f"/run/netns/{victim_netns}")


# --- 11.2: an entry without namespaces ---------------------------------------------------------------

def test_join_or_persist_of_an_empty_entry_fails(store, prefix):
    os.mkdir(store.path(f"{prefix}e"))
    for line in (f"join {prefix}e", f"persist {prefix}e as {prefix}f"):
        done = store.run(line, "run true")
        assert done.rc == 1 and "holds no persisted namespaces" in done.err, (line, done)
        assert "joined" not in done.out
    # by path, a directory without meta.json is no set at all: not a namespace file either
    done = store.run(f"join {store.path(prefix + 'e')}", "run true")
    assert done.rc != 0 and "joined" not in done.out and len(done.err.splitlines()) == 1
    assert sorted(os.listdir(store.root)) == [f"{prefix}e"]


# --- 11.4: unpersist and the sessions using the PID namespace -----------------------------------------

def test_unpersist_leaves_another_sessions_program_running(store, prefix):
    name = f"{prefix}a"
    store.netns.append(name)
    assert store.run(f"new pid+net+uts as {name} --no-join", f"persist {name}").rc == 0
    meta = json.load(open(store.path(name, "meta.json")))
    a = subprocess.Popen(nsshell_argv() + ["-c", f"join {name}; run sh -c 'sleep 2; echo survived'"],
                         env=_env(store.env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd="/tmp")
    time.sleep(1)
    b = store.run(f"unpersist {name}")
    assert b.rc == 0 and "lives on while" in b.out, b
    assert nsfs_under(store.root) == [] and not os.path.lexists(f"/run/netns/{name}")
    out, err = a.communicate(timeout=30)
    assert a.returncode == 0 and "survived" in out, (out, err)
    # the last session gone, the namespace goes: nothing is left
    assert wait_gone([meta["init"]["pid"], meta["holder"]["pid"]]) == []


def test_unpersist_refuses_processes_nobody_keeps_alive(store, prefix):
    name = f"{prefix}n"
    store.netns.append(name)
    assert store.run(f"new pid+uts as {name} --no-join", f"persist {name}").rc == 0
    meta = json.load(open(store.path(name, "meta.json")))
    p = subprocess.Popen(["nsenter", f"--pid={store.path(name, 'pid')}", "--", "sleep", "30"])
    try:
        time.sleep(0.3)
        done = store.run(f"unpersist {name}")
        assert done.rc == 1 and "in use by pid" in done.err and "--force" in done.err, done
        assert len(done.err.splitlines()) == 1
        assert sorted(os.listdir(store.path(name))) == ["meta.json", "pid", "uts"]
        assert alive(meta["holder"]["pid"]) and alive(meta["init"]["pid"])
        forced = store.run(f"unpersist --force {name}")
        assert forced.rc == 0 and "killed pid" in forced.out, forced
        assert p.wait(10) != 0  # killed with its namespace
    finally:
        p.kill()
        p.wait()
    assert wait_gone([meta["init"]["pid"], meta["holder"]["pid"]]) == []
    assert files_under(store.root) == []


# --- 11.5: over 1,024 fds ---------------------------------------------------------------------

def test_persist_and_unpersist_with_over_1024_handles(store, prefix):
    name = f"{prefix}m"
    done = store.run("new net --count 1100 --no-join", f"new pid+uts as {name} --no-join",
                     f"persist {name}", f"join {name}", "run true", "ls uts",
                     f"unpersist {name}", "handles")
    assert done.rc == 0, done.err
    assert f"unpersisted {name}: removed pid, uts, holder" in done.out
    assert files_under(store.root) == [] and nsfs_under(store.root) == []


# --- 11.9: a dead PID init does not block the rest -------------------------------------------------------

def test_a_dead_init_blocks_only_the_pid_namespace(store, prefix):
    name = f"{prefix}d"
    store.netns.append(name)
    assert store.run(f"new pid+net+uts as {name} --no-join", f"persist {name}").rc == 0
    meta = json.load(open(store.path(name, "meta.json")))
    os.kill(meta["holder"]["pid"], 9)
    assert wait_gone([meta["init"]["pid"]]) == []
    shown = store.run(f"show {name}")
    assert shown.rc == 0, shown
    assert "init:" in shown.out and "dead" in shown.out and "hostname" in shown.out
    net = store.run(f"join net+uts {name}", "run readlink /proc/self/ns/net")
    assert net.rc == 0 and f"net:[{os.stat(store.path(name, 'net')).st_ino}]" in net.out, net
    whole = store.run(f"join {name}")
    assert whole.rc == 1 and "init" in whole.err
    assert store.run(f"unpersist {name}").rc == 0
    assert files_under(store.root) == []


# --- 11.11: mount namespaces made after a persist ---------------------------------------------------

def test_copies_in_later_mount_namespaces_go_with_unpersist(store, prefix):
    """Mount namespaces made after the persist hold copies of the store's bind mounts
    (`unshare -m` private by default, a slave one, one owned by a new user namespace with
    locked mounts, nsshell's own `new user+mnt`).  unpersist unlinks each placeholder after
    unmounting it, and the kernel (3.18 on) then detaches the copies mounted on it in every
    mount namespace: the namespaces really end (docs/persistence.md says what remains)."""
    name = f"{prefix}c"
    store.netns.append(name)
    assert store.run(f"new uts+net as {name} --no-join", f"persist {name}").rc == 0
    inos = {t: os.stat(store.path(name, t)).st_ino for t in ("uts", "net")}
    argvs = [["unshare", "-m", "sleep", "30"],
             ["unshare", "-m", "--propagation=slave", "sleep", "30"],
             ["unshare", "-Urm", "sleep", "30"],
             nsshell_argv() + ["-c", "new user+mnt --no-join as m; map root --ns m; join m; "
                               "run sleep 30"]]
    procs = [subprocess.Popen(a, env=_env(), cwd="/tmp") for a in argvs]
    try:
        time.sleep(1.0)

        want = {f"{t}:[{i}]" for t, i in inos.items()}

        def copies() -> set[tuple[str, str]]:
            """(mount namespace, mount point) of every mount of the two namespaces."""
            found = set()
            for d in os.listdir("/proc"):
                if not d.isdigit():
                    continue
                try:
                    mnt = os.readlink(f"/proc/{d}/ns/mnt")
                    with open(f"/proc/{d}/mountinfo") as f:
                        found |= {(mnt, line.split()[4]) for line in f
                                  if line.split()[3] in want}
                except OSError:
                    continue
            return found
        before = copies()
        # the host's three (store net, store uts, /run/netns) and each namespace's copies
        assert len({m for m, _ in before}) >= len(argvs) + 1, before
        assert store.run(f"unpersist {name}").rc == 0
        # no mount of them is left in any mount namespace (no process is in them and no fd
        # is open on them either: they are gone; their inode numbers may already be reused)
        assert copies() == set()
    finally:
        for p in procs:
            p.kill()
            p.wait()
