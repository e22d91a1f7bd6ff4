"""Discovery judged by the scenarios of util-linux's lsns tests (tests/ts/lsns) and of
lxkns's discovery tests, re-created on the real kernel; and the rule that every label
nsshell prints is a reference it accepts back (`TYPE REF` included)."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import json_docs

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


def _kill(p: subprocess.Popen) -> None:
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            p.kill()
    p.wait(timeout=10)


@pytest.fixture
def procs():
    started: list[subprocess.Popen] = []

    def start(argv, **kw):
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(argv, start_new_session=True, **kw)
        started.append(p)
        return p
    yield start
    for p in reversed(started):
        _kill(p)


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

def test_every_printed_label_is_accepted_back(engines, procs, prefix):
    # Namespaces of every type, of a process (a PID namespace under a user namespace) and
    # of the session (a held set).
    p = procs(["unshare", "-U", "-r", "--net", "--uts", "--ipc", "--pid", "--fork", "--mount",
               "--cgroup", "sleep", "300"])
    engines.ok(f"new user+mnt+net+uts+ipc+pid+cgroup+time as {prefix}b --no-join")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _ino(p.pid, "pid_for_children") == _ino("self", "pid"):
        time.sleep(0.02)
    ours = {f"{t}:[{_ino(pid, t)}]" for t in TYPES for pid in ("self", p.pid)}
    ours.add(f"pid:[{_ino(p.pid, 'pid_for_children')}]")
    ours |= {str(h.nsid) for h in engines.session.sets[f"{prefix}b"].handles.values()}
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
