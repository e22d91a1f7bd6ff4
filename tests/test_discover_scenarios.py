"""Discovery judged by the scenarios of util-linux's lsns tests (tests/ts/lsns) and of
lxkns's discovery tests, re-created on the real kernel; and the rule that every label
nsshell prints is a reference it accepts back (`TYPE REF` included)."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import json_docs, kill_group, lsns_json

LABEL = re.compile(r"\b([a-z]+):\[(\d+)\]")
TYPES = ("user", "mnt", "pid", "net", "uts", "ipc", "cgroup", "time")


# -- helpers ------------------------------------------------------------------------------

def _ino(pid, t: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{t}").st_ino


def _wait_comm(pid: int, comm: str, deadline: float = 5.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == comm:
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"process {pid} never became {comm}")


@pytest.fixture
def netns(prefix):
    """netns('x') -> an `ip netns add` name (prefixed), deleted afterwards."""
    made = []

    def add(suffix: str) -> str:
        name = f"{prefix}{suffix}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        made.append(name)
        return name
    yield add
    for name in made:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


class Engines:
    """One real Session seen through two renderers: plain text and JSON."""

    def __init__(self):
        from nsshell import commands  # noqa: F401
        from nsshell.engine import Engine
        from nsshell.render import Renderer
        from nsshell.session import Session
        self.session = Session()
        self.out, self.err = io.StringIO(), io.StringIO()
        self.plain = Engine(self.session, Renderer(self.out, self.err, mode="plain"))
        self.json = Engine(self.session, Renderer(self.out, self.err, mode="json"))
        self.session.engine = self.plain

    def run(self, line: str, as_json: bool = False):
        self.out.seek(0), self.out.truncate()
        self.err.seek(0), self.err.truncate()
        engine = self.json if as_json else self.plain
        self.session.engine = engine
        rc = engine.run_line(line, "test")
        return rc, self.out.getvalue(), self.err.getvalue()

    def ok(self, line: str, as_json: bool = False):
        rc, out, err = self.run(line, as_json)
        assert rc == 0 and not err, (line, rc, err)
        return json_docs(out)[-1] if as_json else out

    def close(self):
        self.session.close_all()


@pytest.fixture
def engines():
    e = Engines()
    yield e
    e.close()


def _labels_in(value) -> set[str]:
    """Every TYPE:[INODE] in VALUE (text or JSON), and the (type, ns) pairs of JSON rows."""
    found: set[str] = set()
    if isinstance(value, str):
        found.update(f"{t}:[{i}]" for t, i in LABEL.findall(value) if t in TYPES)
    elif isinstance(value, dict):
        if value.get("type") in TYPES and isinstance(value.get("ns"), int):
            found.add(f"{value['type']}:[{value['ns']}]")
        for v in value.values():
            found |= _labels_in(v)
    elif isinstance(value, list):
        for v in value:
            found |= _labels_in(v)
    return found


# -- 12.5, 12.6: every label is a reference; TYPE REF wherever a REF is taken --------------

def test_every_printed_label_is_accepted_back(engines, procs, prefix, bound_dir):
    # Namespaces of every type, of a process (a PID namespace under a user namespace), of
    # the session (a held set), one only a process's time_for_children holds, and a user
    # namespace alive only as the owner of a network namespace kept by `ip netns attach`.
    p = procs(["unshare", "-U", "-r", "--net", "--uts", "--ipc", "--pid", "--fork", "--mount",
               "--cgroup", "sleep", "300"])
    engines.ok(f"new user+mnt+net+uts+ipc+pid+cgroup+time as {prefix}b --no-join")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _ino(p.pid, "pid_for_children") == _ino("self", "pid"):
        time.sleep(0.02)
    ours = {f"{t}:[{_ino(pid, t)}]" for t in TYPES for pid in ("self", p.pid)}
    ours.add(f"pid:[{_ino(p.pid, 'pid_for_children')}]")
    ours |= {str(h.nsid) for h in engines.session.sets[f"{prefix}b"].handles.values()}
    kid = procs([sys.executable, "-c", "import ctypes, os, time\n"
                 "assert ctypes.CDLL(None).unshare(0x80) == 0\n"
                 "print(os.stat('/proc/self/ns/time_for_children').st_ino, flush=True)\n"
                 "time.sleep(300)\n"], stdout=subprocess.PIPE, text=True)
    ours.add(f"time:[{int(kid.stdout.readline())}]")
    owner = procs(["unshare", "-U", "-r", "-n", "sleep", "300"])
    _wait_comm(owner.pid, "sleep")
    # kept by a bind mount in a private directory of its own (not /run/netns, which other
    # test runs on this host set up and tear down)
    attached = os.path.join(bound_dir("private"), "net")
    open(attached, "w").close()
    subprocess.run(["mount", "--bind", f"/proc/{owner.pid}/ns/net", attached], check=True)
    ours |= {f"user:[{_ino(owner.pid, 'user')}]", f"net:[{_ino(owner.pid, 'net')}]"}
    kill_group(owner)
    _labels_round_trip(engines, p, prefix, ours)


def _labels_round_trip(engines, p, prefix, ours):
    printed: set[str] = set()
    for line in ("ls", "tree", "tree pid", f"show {prefix}b", "show host", f"show pid:{p.pid}",
                 "handles"):
        printed |= _labels_in(engines.ok(line))
        printed |= _labels_in(engines.ok(line, as_json=True))
    assert ours <= printed, ours - printed
    refused = []
    for label in sorted(printed & ours):
        for cmd in (f"show {label}", f"pids {label}", f"join {label}", "leave"):
            rc, out, err = engines.run(cmd)
            if rc != 0:
                refused.append((cmd, err.strip()))
    assert not refused, refused


def test_pid_inode_label_is_not_a_process_id(nsshell):
    ino = _ino("self", "pid")
    done = nsshell("--json", "-c", f"show pid:[{ino}]; pids pid:[{ino}]; join pid:[{ino}]; "
                   f"open pid:[{ino}] as hostpid; name pid:[{ino}] hostpid2; handles")
    assert done.rc == 0, done
    docs = json_docs(done.out)
    assert docs[0]["namespaces"][0]["label"] == f"pid:[{ino}]"
    assert any(r["pid"] == os.getpid() for r in docs[1]["processes"])
    names = {r["name"] for r in docs[-1]["handles"] if r["ns"] == f"pid:[{ino}]"}
    assert {"hostpid", "hostpid2"} <= names
    bad = nsshell("-c", "show pid:[12x]")
    assert bad.rc == 2 and "not a TYPE:[INODE] reference" in bad.err, bad


def test_type_ref_wherever_a_ref_is_taken(engines, prefix):
    box = f"{prefix}b"
    engines.ok(f"new user+net+uts as {box} --no-join")
    s = engines.session
    user, net = str(s.sets[box].handles["user"].nsid), str(s.sets[box].handles["net"].nsid)
    shown = engines.ok(f"show user {box}", as_json=True)
    assert [n["label"] for n in shown["namespaces"]] == [user]
    # the REF TYPES order still works, and both may be given
    assert [n["label"] for n in engines.ok(f"show {box} net", as_json=True)["namespaces"]] == [net]
    assert [n["type"] for n in engines.ok(f"show user+net {box}", as_json=True)["namespaces"]] \
        == ["user", "net"]
    assert engines.ok(f"pids net {box}", as_json=True)["processes"] == []
    assert engines.ok(f"pids net host", as_json=True)["processes"]
    d = engines.ok(f"diff uts {box} uts host", as_json=True)
    assert [t["type"] for t in d["types"]] == ["uts"]
    d = engines.ok(f"diff {box} host uts", as_json=True)
    assert [t["type"] for t in d["types"]] == ["uts"]
    # name and open take one handle of a set
    engines.ok(f"name net {box} {box}n")
    engines.ok(f"open uts {box} as {box}u")
    assert set(s.sets[f"{box}n"].handles) == {"net"}
    assert set(s.sets[f"{box}u"].handles) == {"uts"}
    # close drops only those handles; the rest of the set stays
    engines.ok(f"join {box}")
    engines.ok(f"close net {box}")
    assert set(s.sets[box].handles) == {"user", "uts"}
    assert s.context_names["net"] == "host" and s.context_names["uts"] == box
    assert str(s.sets[f"{box}n"].handles["net"].nsid) == net   # still held under the new name
    engines.ok(f"close user+uts {box}")
    assert box not in s.sets and s.context_names["uts"] == "host"
    # join as before
    engines.ok(f"join net {box}n")
    assert str(s.context["net"].nsid) == net
    # a type word where a REF was expected: one clear usage error, nothing changed
    for line in ("show user", "pids net", f"close net", f"name net {box}x", f"diff net {box}n"):
        rc, out, err = engines.run(line)
        assert rc == 2, (line, rc, err)
        assert "is a namespace type, not a REF" in err and "TYPE REF" in err, err
        assert err.count("\n") == 1
    assert f"{box}x" not in s.sets


def test_type_ref_completes_the_ref(engines, prefix):
    from nsshell.complete import complete_line
    engines.ok(f"new net as {prefix}c --no-join")
    got = [c.text for c in complete_line(engines.session, f"show net {prefix[:3]}").candidates]
    assert f"{prefix}c" in got
    got = [c.text for c in complete_line(engines.session, f"pids {prefix}c n").candidates]
    assert "net" in got


# -- 12.1: a namespace held by an fd opened through its bind mount (lsns filedesc) ----------

def _ls(nsshell, types: str = "") -> dict:
    done = nsshell("--json", "-c", f"ls {types}")
    assert done.rc == 0, done
    return {(r["type"], r["ns"]): r for r in json_docs(done.out)[-1]["namespaces"]}


def test_fd_opened_through_the_bind_mount_path(nsshell, procs, netns):
    # util-linux tests/ts/lsns/filedesc (podman's way, util-linux #1884): a process opens
    # /run/netns/NAME, then `ip netns delete` removes the bind mount; the fd alone keeps
    # the namespace, and its link no longer reads net:[...] but a path ("/").
    name = netns("fd")
    path = f"/run/netns/{name}"
    ino = os.stat(path).st_ino
    keeper = procs([sys.executable, "-c",
                    "import os, sys, time\n"
                    f"fd = os.open({path!r}, os.O_RDONLY)\n"
                    "print(fd, flush=True)\n"
                    "time.sleep(300)\n"], stdout=subprocess.PIPE, text=True)
    fd = int(keeper.stdout.readline())
    assert os.readlink(f"/proc/{keeper.pid}/fd/{fd}") == path
    # while the bind exists, show names the fd among the holders
    done = nsshell("--json", "-c", f"show {name}")
    assert done.rc == 0, done
    shown = json_docs(done.out)[-1]["namespaces"][0]
    assert shown["ns"] == ino
    assert {"kind": "fd", "pid": keeper.pid, "fd": fd} in shown["holders"]
    assert {"fd", "mount"} <= set(shown["held"])
    subprocess.run(["ip", "netns", "delete", name], check=True)
    assert not os.readlink(f"/proc/{keeper.pid}/fd/{fd}").startswith("net:")
    row = _ls(nsshell, "net")[("net", ino)]
    assert (row["type"], row["nprocs"], row["held"]) == ("net", 0, ["fd"])
    assert row["holders"] == [{"kind": "fd", "pid": keeper.pid, "fd": fd}]
    assert row["pid"] is None and row["command"] is None
    done = nsshell("--json", "-c", f"show net:[{ino}]")
    assert done.rc == 0, done
    assert "lo" in json_docs(done.out)[-1]["namespaces"][0]["state"]["links"]


# -- 12.3: owners and parents no process is in (lxkns hidden namespaces, lsns ioctl_ns) -----

def _show(nsshell, ref: str) -> dict:
    done = nsshell("--json", "-c", f"show {ref}")
    assert done.rc == 0, done
    return json_docs(done.out)[-1]["namespaces"][0]


def _tree(nsshell, kind: str = "user") -> list:
    done = nsshell("--json", "-c", f"tree {kind}")
    assert done.rc == 0, done
    return json_docs(done.out)[-1]["tree"]


def _tree_path(tree: list, t: str, ino: int) -> list:
    def walk(nodes, path):
        for n in nodes:
            if n.get("type") == t and n.get("ns") == ino:
                return path + [n]
            found = walk(n.get("children", []), path + [n])
            if found:
                return found
        return None
    found = walk(tree, [])
    assert found, f"{t}:[{ino}] is not in the tree"
    return found


def test_owner_only_user_namespace(nsshell, procs, prefix):
    # `unshare -U -r -n sleep`, `ip netns attach NAME PID`, then the sleep dies: the
    # network namespace is kept by the bind mount, and its user namespace only as its owner.
    name = f"{prefix}own"
    p = procs(["unshare", "-U", "-r", "-n", "sleep", "300"])
    _wait_comm(p.pid, "sleep")
    user, net = _ino(p.pid, "user"), _ino(p.pid, "net")
    subprocess.run(["ip", "netns", "attach", name, str(p.pid)], check=True)
    try:
        kill_group(p)
        rows = _ls(nsshell)
        urow, nrow = rows[("user", user)], rows[("net", net)]
        assert urow["held"] == ["owner"] and urow["nprocs"] == 0
        assert urow["holders"] == [{"kind": "owner", "of": f"net:[{net}]"}]
        assert nrow["held"] == ["mount"] and name in nrow["names"]
        # lsns's USER for a namespace no process is in: who made its owning user namespace
        assert urow["user"] == "root" and nrow["user"] == "root"
        assert ("user", user) in _ls(nsshell, "user")        # `ls user` alone finds it too
        # tree: the user namespace with the network namespace it owns, under ours
        path = _tree_path(_tree(nsshell), "net", net)
        assert [n["ns"] for n in path[-3:]] == [_ino("self", "user"), user, net]
        # show reaches it (through the network namespace), with what it knows
        shown = _show(nsshell, f"user:[{user}]")
        assert shown["parent"] == shown["owner"] == f"user:[{_ino('self', 'user')}]"
        assert shown["held"] == ["owner"] and shown["state"]["uid_map"] is not None
        assert _show(nsshell, f"net:[{net}]")["owner"] == f"user:[{user}]"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_hidden_parent_user_namespace(nsshell, procs):
    # lxkns "finds hidden hierarchical user namespaces": unshare -Ur unshare -U: the outer
    # user namespace has no process (the outer unshare exec'd the inner one).
    p = procs(["unshare", "-Ur", "unshare", "-U", "sleep", "300"])
    _wait_comm(p.pid, "sleep")
    inner = _ino(p.pid, "user")
    outer = _show(nsshell, f"user:[{inner}]")["parent"]
    outer_ino = int(LABEL.fullmatch(outer).group(2))
    rows = _ls(nsshell, "user")
    assert rows[("user", outer_ino)]["held"] == ["parent"]
    assert rows[("user", outer_ino)]["holders"] == [{"kind": "parent", "of": f"user:[{inner}]"}]
    assert _show(nsshell, outer)["parent"] == f"user:[{_ino('self', 'user')}]"
    path = _tree_path(_tree(nsshell), "user", inner)
    assert [n["ns"] for n in path[-3:]] == [_ino("self", "user"), outer_ino, inner]


def test_owners_of_our_namespaces(nsshell):
    # lxkns "finds owners": every namespace of ours is owned by our user namespace.
    done = nsshell("--json", "-c", "show host")
    assert done.rc == 0, done
    mine = f"user:[{_ino('self', 'user')}]"
    for ns in json_docs(done.out)[-1]["namespaces"]:
        if ns["type"] != "user":
            assert ns["owner"] == mine, ns


def test_ioctl_ns_user_and_pid(nsshell, procs):
    # util-linux tests/ts/lsns/ioctl_ns: a child user namespace's parent and owner are
    # ours; a child PID namespace's parent is ours and its owner the child user namespace.
    p = procs(["unshare", "--user", "--pid", "--mount-proc", "--fork", "sleep", "300"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _ino(p.pid, "pid_for_children") == _ino("self", "pid"):
        time.sleep(0.02)
    child_user, child_pid = _ino(p.pid, "user"), _ino(p.pid, "pid_for_children")
    u = _show(nsshell, f"user:[{child_user}]")
    assert (u["parent"], u["owner"]) == (f"user:[{_ino('self', 'user')}]",) * 2
    pd = _show(nsshell, f"pid:[{child_pid}]")
    assert (pd["parent"], pd["owner"]) == (f"pid:[{_ino('self', 'pid')}]", f"user:[{child_user}]")


def test_hidden_parent_pid_namespace(nsshell, procs):
    # A PID namespace whose init died, alive only as the parent of a PID namespace kept by
    # an fd: found through NS_GET_PARENT, and drawn in `tree pid`.  (A PID namespace is
    # visible in pid_for_children only once it has had an init.)
    code = (
        "import ctypes, os, signal, sys, time\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "home = os.open('/proc/self/ns/pid', os.O_RDONLY)\n"
        "assert libc.unshare(0x20000000) == 0\n"
        "r, w = os.pipe()\n"
        "c = os.fork()\n"
        "if c == 0:\n"
        "    assert libc.unshare(0x20000000) == 0\n"
        "    if os.fork() == 0:\n"
        "        os.write(w, b'x'); time.sleep(60); os._exit(0)\n"
        "    time.sleep(60); os._exit(0)\n"
        "os.close(w)\n"
        "os.read(r, 1)\n"
        "inner = os.open(f'/proc/{c}/ns/pid_for_children', os.O_RDONLY)\n"
        "outer = os.stat('/proc/self/ns/pid_for_children').st_ino\n"
        "os.kill(c, signal.SIGKILL); os.waitpid(c, 0)\n"
        "assert libc.setns(home, 0x20000000) == 0\n"
        "os.read(r, 1)\n"   # EOF: the grandchild is gone too
        "print(outer, os.fstat(inner).st_ino, inner, flush=True)\n"
        "time.sleep(300)\n")
    keeper = procs([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    outer, inner, fd = map(int, keeper.stdout.readline().split())
    rows = _ls(nsshell, "pid")
    assert rows[("pid", inner)]["held"] == ["fd"]
    assert rows[("pid", outer)]["held"] == ["parent"]
    assert rows[("pid", outer)]["holders"] == [{"kind": "parent", "of": f"pid:[{inner}]"}]
    path = _tree_path(_tree(nsshell, "pid"), "pid", inner)
    assert [n["ns"] for n in path] == [_ino("self", "pid"), outer, inner]
    assert _show(nsshell, f"pid:[{outer}]")["parent"] == f"pid:[{_ino('self', 'pid')}]"


# -- 12.4: namespaces only a process's pid_for_children / time_for_children hold -------------

def test_namespaces_held_for_children(nsshell, procs):
    # After unshare(CLONE_NEWPID) (its init since dead) and unshare(CLONE_NEWTIME), and
    # before another fork: the process is in neither; only its *_for_children links hold them.
    code = (
        "import ctypes, os, time\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "assert libc.unshare(0x20000000) == 0\n"
        "c = os.fork()\n"
        "if c == 0:\n"
        "    os._exit(0)\n"
        "os.waitpid(c, 0)\n"
        "assert libc.unshare(0x80) == 0\n"
        "print(os.stat('/proc/self/ns/pid_for_children').st_ino,\n"
        "      os.stat('/proc/self/ns/time_for_children').st_ino, flush=True)\n"
        "time.sleep(300)\n")
    keeper = procs([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pid_ino, time_ino = map(int, keeper.stdout.readline().split())
    rows = _ls(nsshell, "pid+time")
    for t, ino, link in (("pid", pid_ino, "pid_for_children"), ("time", time_ino, "time_for_children")):
        row = rows[(t, ino)]
        assert row["held"] == ["children"] and row["nprocs"] == 0, row
        assert row["holders"] == [{"kind": "children", "pid": keeper.pid, "link": link}]
        assert row["user"] == "root"
        shown = _show(nsshell, f"{t}:[{ino}]")
        assert shown["ns"] == ino and shown["held"] == ["children"]
    path = _tree_path(_tree(nsshell, "pid"), "pid", pid_ino)
    assert [n["ns"] for n in path] == [_ino("self", "pid"), pid_ino]


# -- 12.12: pid translation at every level (lxkns pidtree) ------------------------------------

def test_pids_shows_every_level(nsshell, procs):
    p = procs(["unshare", "--pid", "--fork", "--mount-proc", "unshare", "--pid", "--fork",
               "--mount-proc", "sleep", "300"])
    deadline = time.monotonic() + 5
    leaf = None
    while time.monotonic() < deadline and leaf is None:
        for e in os.listdir("/proc"):
            if e.isdigit():
                try:
                    if os.getpgid(int(e)) == p.pid and open(f"/proc/{e}/comm").read().strip() == "sleep":
                        leaf = int(e)
                except OSError:
                    continue
        time.sleep(0.02)
    assert leaf
    done = nsshell("--json", "-c", f"pids pid:{leaf} pid; pids pid:{leaf} net")
    assert done.rc == 0, done
    inner, host = json_docs(done.out)
    assert [(r["pid"], r["nspid"], r["nspids"]) for r in inner["processes"]] == [(leaf, 1, [leaf, 2, 1])]
    mine = next(r for r in host["processes"] if r["pid"] == leaf)
    assert mine["nspids"] == [leaf, 2, 1] and mine["nspid"] is None
    plain = nsshell("-c", f"pids pid:{leaf} pid")
    assert plain.out.splitlines()[0].split()[:3] == ["PID", "NSPID", "NSPIDS"]
    assert f"{leaf}/2/1" in plain.out


# -- 12.7: rootless reading, and what an unprivileged user cannot enter -------------------------

def test_rootless_hostname_reads_where_it_sets(rootless):
    done = rootless("-c", "new user+uts; map root; hostname x; hostname")
    assert done.rc == 0, done
    assert done.out.splitlines()[-1] == "x"


def test_rootless_root_owned_namespace(rootless, netns):
    name = netns("r7")
    ino = os.stat(f"/run/netns/{name}").st_ino
    done = rootless("-c", f"join {name}")
    assert done.rc == 1, done
    assert done.err.strip() == (f"nsshell: -c: join: net:[{ino}] is owned by the host's user "
                                "namespace: only root can enter it; hint: `show` reads what it "
                                "can of it without entering"), done.err
    done = rootless("-c", f"join net:[{ino}]; run true")   # fails at join, not at run
    assert done.rc == 1 and "join:" in done.err and "run:" not in done.err, done
    done = rootless("--json", "-c", f"show {name}")
    assert done.rc == 0 and not done.err, done
    shown = json_docs(done.out)[-1]["namespaces"][0]
    assert shown["label"] == f"net:[{ino}]" and shown["owner"] == f"user:[{_ino('self', 'user')}]"
    assert {"kind": "mount", "path": f"/run/netns/{name}"}.items() <= shown["holders"][0].items()
    assert shown["state"] == {} and "owned by the host's user namespace" in shown["errors"]["links"]
    plain = rootless("-c", f"show {name}")
    assert plain.rc == 0 and "state:" in plain.out and "cannot read" in plain.out, plain


# -- 12.8: `persist NAME DIR`, then `join NAME`: the whole set -------------------------------

def test_join_by_name_of_a_set_persisted_in_a_directory(nsshell, bound_dir, prefix):
    name = f"{prefix}p8"
    where = os.path.join(bound_dir("private"), name)
    try:
        done = nsshell("-c", f"new net+uts as {name} --no-join; persist {name} {where}")
        assert done.rc == 0, done
        net, uts = (os.stat(os.path.join(where, t)).st_ino for t in ("net", "uts"))
        assert os.stat(f"/run/netns/{name}").st_ino == net
        done = nsshell("--json", "-c", f"join {name}; ctx")
        assert done.rc == 0, done
        ctx = {r["type"]: r for r in json_docs(done.out)[-1]["context"]}
        assert (ctx["net"]["inode"], ctx["net"]["name"]) == (net, name)
        assert (ctx["uts"]["inode"], ctx["uts"]["name"]) == (uts, name)
        shown = nsshell("--json", "-c", f"show {name}")
        assert [n["type"] for n in json_docs(shown.out)[-1]["namespaces"]] == ["net", "uts"]
    finally:
        nsshell("-c", f"unpersist {where}")
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    assert not os.path.exists(f"/run/netns/{name}")


# -- 12.10: one formatter per fact ---------------------------------------------------------

def test_id_maps_are_written_one_way(nsshell):
    done = nsshell("-c", "new user+net as m --no-join; map --ns m 0 100000 65536; show user m; tree")
    assert done.rc == 0, done
    lines = done.out.splitlines()
    assert lines[1].endswith(": uid 0-65535->100000-165535; gid 0-65535->100000-165535"), lines
    assert any(l.startswith("uid map:") and l.endswith(" 0-65535->100000-165535") for l in lines)
    from nsshell.kernel.idmap import format_idmap
    assert format_idmap(["0 0 4294967295"]) == "all (identity)"
    assert format_idmap([(0, 1000, 1), {"inside": 1, "outside": 100000, "count": 10}]) \
        == "0->1000, 1-10->100000-100009"
    assert format_idmap([]) == "unmapped"


def test_a_link_is_one_object_in_show_and_net_ls(nsshell):
    from nsshell.core.look.nsstate import SHOW_LINK_FIELDS
    # The kernel settles operstate a moment after a link goes up (linkwatch): three reads
    # taken during that moment may differ; they agree once it has settled.
    for _ in range(5):
        done = nsshell("--json", "-c", "new net as a; net up a lo; net veth a:v0 a:v1; "
                       "net up a v0; net ls a; show a; run ip -o link show")
        assert done.rc == 0, done
        docs = json_docs(done.out)
        listed = {l["name"]: l for l in next(d for d in docs if "links" in d)["links"]}
        shown = next(d for d in docs if "namespaces" in d)["namespaces"][0]["state"]["links"]
        ip = {line.split(":")[1].strip().split("@")[0]: line.split(" state ")[1].split()[0]
              for line in done.out.splitlines() if " state " in line}
        if all(listed[n]["state"] == shown[n]["state"] == ip[n] for n in ip):
            break
    assert set(listed) == set(shown) == {"lo", "v0", "v1"}
    for name in listed:
        assert {k: listed[name][k] for k in SHOW_LINK_FIELDS} == shown[name], name
    # operstate as iproute2 prints it: lo UNKNOWN, v0 up without carrier LOWERLAYERDOWN
    assert shown["lo"]["state"] == ip["lo"] == "UNKNOWN"
    assert shown["v0"]["state"] == ip["v0"] and shown["v1"]["state"] == ip["v1"] == "DOWN"
    assert shown["lo"]["mac"] == "00:00:00:00:00:00" and shown["v0"]["kind"] == "veth"
    plain = nsshell("-c", "new net as a; net up a lo; net ls a")
    lo = next(l for l in plain.out.splitlines() if l.split()[:2] == ["1", "lo"])
    assert "UNKNOWN" in lo.split() and "00:00:00:00:00:00" in lo.split()


# -- 12.11: handles is what this session holds; ls shows the rest ----------------------------

def test_handles_lists_what_the_session_holds(nsshell, netns, prefix):
    name = netns("h11")
    done = nsshell("--json", "-c", f"new uts as {prefix}u --no-join; handles; handles --all; ls net")
    assert done.rc == 0, done
    held, everything, ls = json_docs(done.out)[1:]
    assert {r["name"] for r in held["handles"]} == {f"{prefix}u"}
    assert name in {r["name"] for r in everything["handles"]}
    assert any(name in r["names"] for r in ls["namespaces"])
    done = nsshell("--json", "-c", f"join {name}; handles")   # once used by name: held
    assert name in {r["name"] for r in json_docs(done.out)[-1]["handles"]}


def _rich_lines(line: str, width: int, shell_engines) -> list[str]:
    from rich.console import Console
    from nsshell.engine import Engine
    from nsshell.render import Renderer
    out = io.StringIO()
    r = Renderer(out, io.StringIO(), mode="rich")
    r._console = Console(file=out, width=width, highlight=False, soft_wrap=False,
                         color_system=None)
    engine = Engine(shell_engines.session, r)
    assert engine.run_line(line, "test") == 0
    shell_engines.session.engine = shell_engines.plain
    return out.getvalue().splitlines()


@pytest.mark.parametrize("width", [80, 60])
def test_narrow_tables_keep_ids_and_names_whole(engines, procs, prefix, width):
    # a long command line, as lsns cuts it: COMMAND and paths go first, ids and names stay
    p = procs(["unshare", "--uts", "sh", "-c", "sleep 300; : " + "x" * 120])
    _wait_comm(p.pid, "sh")
    engines.ok(f"new user+net+uts as {prefix}nw --no-join")
    uts = _ino(p.pid, "uts")
    lines = _rich_lines("ls uts", width, engines)
    head, rows = lines[0].split(), [l for l in lines[1:] if l.split()[:1] == [str(uts)]]
    assert head == ["NS", "TYPE", "NPROCS", "PID", "USER", "HELD", "NAMES", "COMMAND"]
    assert len(rows) == 1, lines                    # one line: nothing wrapped
    cells = rows[0].split()
    assert (cells[0], cells[1], cells[3]) == (str(uts), "uts", str(p.pid)) and cells[-1].endswith("…")
    # it fits, or COMMAND is down to its least (MIN_CUT) and the rest runs on, as lsns's
    from nsshell.render import MIN_CUT
    assert len(rows[0]) <= width or rows[0][-MIN_CUT:] == ("sh -c sleep 300")[:MIN_CUT - 1] + "…"
    labels = {str(h.nsid) for h in engines.session.sets[f"{prefix}nw"].handles.values()}
    text = "\n".join(_rich_lines("handles", width, engines))
    for label in labels:
        assert label in text, (label, text)          # `user:[4026…]` never
    assert "…" not in text or all(label in text for label in labels)


def test_rootless_socket_helper_is_labelled_as_nsshells(rootless):
    done = rootless("--json", "-c", "new user+net as u --no-join; map root --ns u; net ls u; "
                    "ls net; tree")
    assert done.rc == 0, done
    docs = json_docs(done.out)
    ls, tree = docs[-2]["namespaces"], docs[-1]["tree"]
    # The opener is not dumpable (core/proc/harden.py), so its own user may not even see its
    # namespaces in /proc; where they are seen, they are labelled as nsshell's.
    mine = [r for r in ls if r["command"] == "nsshell-sockets" and not r["names"]]
    assert len(mine) <= 1 and all(r["helper"] == "nsshell-sockets" for r in mine), ls
    for r in mine:
        assert _tree_path(tree, "net", r["ns"])[-1]["helper"] == "nsshell-sockets"
    named = [r for r in ls if "u" in r["names"]]
    assert named and all(r["helper"] is None for r in named)


# -- lsns netns-from-sock, lsns nsfs, lxkns task-held -------------------------------------------

def test_netns_from_sock(nsshell, procs):
    # util-linux tests/ts/lsns/netns-from-sock: a network namespace only a socket keeps:
    # NS, TYPE net, NPROCS 0, PID and COMMAND empty, USER root.
    code = (
        "import ctypes, os, socket, time\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "home = os.open('/proc/self/ns/net', os.O_RDONLY)\n"
        "assert libc.unshare(0x40000000) == 0\n"
        "ino = os.stat('/proc/self/ns/net').st_ino\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
        "assert libc.setns(home, 0x40000000) == 0\n"
        "print(ino, flush=True)\n"
        "time.sleep(300)\n")
    keeper = procs([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    ino = int(keeper.stdout.readline())
    row = _ls(nsshell, "net")[("net", ino)]
    assert {k: row[k] for k in ("ns", "type", "nprocs", "pid", "user", "command")} == \
        {"ns": ino, "type": "net", "nprocs": 0, "pid": None, "user": "root", "command": None}
    assert row["held"] == ["socket"]


def test_nsfs_both_bind_paths(nsshell, procs, netns, open_tmpdir):
    # util-linux tests/ts/lsns/nsfs: `ip netns add NAME1`, a second bind mount of it
    # elsewhere, a process in it: both paths are reported (NSFS), the ip netns one first.
    name = netns("nsfs")
    path1, path2 = f"/run/netns/{name}", os.path.join(open_tmpdir, "XYZ")
    open(path2, "w").close()
    subprocess.run(["mount", "--bind", path1, path2], check=True)
    try:
        p = procs(["ip", "netns", "exec", name, "sleep", "300"])
        _wait_comm(p.pid, "sleep")
        ino = _ino(p.pid, "net")
        row = _ls(nsshell, "net")[("net", ino)]
        assert row["nprocs"] == 1 and row["pid"] == p.pid and row["held"] == ["process", "mount"]
        assert row["nsfs"] == [path1, path2]
        assert [h["path"] for h in row["holders"] if h["kind"] == "mount"] == [path1, path2]
        assert name in row["names"]
    finally:
        subprocess.run(["umount", path2], check=True)


def test_task_held_mount_namespace(nsshell, procs):
    # lxkns "finds a task-held namespace": a thread leaves CLONE_FS sharing and unshares a
    # mount namespace for itself alone.
    code = (
        "import ctypes, os, threading, time\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "def t():\n"
        "    assert libc.unshare(0x00000200 | 0x00020000) == 0\n"
        "    tid = threading.get_native_id()\n"
        "    print(os.stat(f'/proc/self/task/{tid}/ns/mnt').st_ino, tid, flush=True)\n"
        "    time.sleep(300)\n"
        "threading.Thread(target=t, daemon=True).start()\n"
        "time.sleep(300)\n")
    keeper = procs([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    ino, tid = map(int, keeper.stdout.readline().split())
    assert _ino(keeper.pid, "mnt") != ino
    row = _ls(nsshell, "mnt")[("mnt", ino)]
    assert row["held"] == ["thread"] and row["nprocs"] == 0
    assert row["holders"] == [{"kind": "thread", "pid": keeper.pid, "tid": tid}]
    assert _show(nsshell, f"mnt:[{ino}]")["ns"] == ino


def test_netnsid_as_lsns_gives_it(nsshell, procs, netns):
    # util-linux tests/ts/lsns/netnsid: NETNSID of a namespace given an id by `ip netns set`
    name = netns("nid")
    subprocess.run(["ip", "netns", "set", name, "auto"], check=True)
    p = procs(["ip", "netns", "exec", name, "sleep", "300"])
    _wait_comm(p.pid, "sleep")
    q = procs(["unshare", "--net", "sleep", "300"])
    _wait_comm(q.pid, "sleep")
    ino, other = _ino(p.pid, "net"), _ino(q.pid, "net")
    lsns = lsns_json("-t", "net", "-o", "NS,NETNSID")
    theirs = {r["ns"]: r["netnsid"] for r in lsns["namespaces"]}
    rows = _ls(nsshell, "net")
    assert isinstance(rows[("net", ino)]["netnsid"], int)
    assert str(rows[("net", ino)]["netnsid"]) == theirs[ino]
    assert rows[("net", other)]["netnsid"] == theirs[other] == "unassigned"
