"""`ls`: everything lsns -J reports, and the namespaces lsns misses (held only by an fd
of another process, only by a bind mount inside another mount namespace, only by a
socket), on the real kernel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import json_docs, kill_group, lsns_json


def _ls(nsshell, *args) -> dict:
    done = nsshell("--json", "-c", " ".join(("ls",) + args))
    assert done.rc == 0, done
    return {(r["type"], r["ns"]): r for r in json_docs(done.out)[-1]["namespaces"]}


def _lsns() -> dict:
    out = lsns_json()
    flat = {}

    def walk(rows):
        for r in rows:
            flat[(r["type"], r["ns"])] = {k: r[k] for k in ("ns", "type", "nprocs", "pid",
                                                           "user", "command")}
            walk(r.get("children", []))
    walk(out["namespaces"])
    return flat


def _ino(pid: int, t: str) -> int:
    return os.stat(f"/proc/{pid}/ns/{t}").st_ino


def _wait_ns_differs(pid: int, t: str, deadline: float = 5.0) -> int:
    """Wait until PID (an unshare that execs) is in a namespace of T other than ours."""
    mine = _ino(os.getpid(), t)
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            ino = _ino(pid, t)
            if ino != mine:
                return ino
        except OSError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"process {pid} never left our {t} namespace")


def test_ls_is_a_superset_of_lsns(nsshell, procs):
    # Namespaces of our own, with a known number of processes and a known command.
    group = procs(["unshare", "--net", "--uts", "--ipc", "sh", "-c",
                   "sleep 300 & sleep 300 & wait"])
    net = _wait_ns_differs(group.pid, "net")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if _lsns().get(("net", net), {}).get("nprocs") == 3:
            break
        time.sleep(0.05)
    before = _lsns()
    ours = _ls(nsshell)
    after = _lsns()
    shared = set(before) & set(after)
    assert shared
    for key in shared:
        assert key in ours, f"{key} from lsns is missing in ls"
        a, b, o = before[key], after[key], ours[key]
        assert o["type"] == a["type"] and o["ns"] == a["ns"]
        if key[1] in (net, _ino(group.pid, "uts"), _ino(group.pid, "ipc")):
            # Ours, stable: exactly what lsns says.
            assert {k: o[k] for k in a} == a == b
            continue
        # Namespaces other processes come and go in (other test runs share the host):
        # near the two lsns runs.
        lo = min(a["nprocs"], b["nprocs"]) - 5
        hi = max(a["nprocs"], b["nprocs"]) + 5
        assert lo <= o["nprocs"] <= hi, (key, a, b, o)
        if a == b and o["nprocs"] == a["nprocs"]:
            # Quiet between the runs: the lowest process, its user and command agree (a
            # process of another test may exec meanwhile; its command then differs).
            assert o["pid"] == a["pid"], (key, a, o)
            assert o["user"] == a["user"], (key, a, o)
            if a["pid"] == 2 or key[1] == _ino(os.getpid(), key[0]):
                assert o["command"] == a["command"], (key, a, o)
    mine = ours[("net", net)]
    assert mine["nprocs"] == 3 and mine["pid"] == group.pid
    assert mine["command"] == "sh -c sleep 300 & sleep 300 & wait"
    assert mine["held"] == ["process"]


def test_ls_types_filter(nsshell):
    rows = _ls(nsshell, "net+uts")
    assert rows and {t for t, _ in rows} == {"net", "uts"}


def test_namespace_held_only_by_an_fd_of_another_process(nsshell, procs):
    owner = procs(["unshare", "--net", "sleep", "300"])
    ino = _wait_ns_differs(owner.pid, "net")
    keeper = procs([sys.executable, "-c",
                    "import os, sys, time\n"
                    f"fd = os.open('/proc/{owner.pid}/ns/net', os.O_RDONLY)\n"
                    "print(fd, flush=True)\n"
                    "time.sleep(300)\n"], stdout=subprocess.PIPE, text=True)
    fd = int(keeper.stdout.readline())
    kill_group(owner)  # the only process in it is gone: only the keeper's fd holds it
    rows = _ls(nsshell, "net")
    row = rows[("net", ino)]
    assert row["held"] == ["fd"]
    assert row["nprocs"] == 0 and row["pid"] is None and row["command"] is None
    assert {"kind": "fd", "pid": keeper.pid, "fd": fd} in row["holders"]
    # ...and it can be opened and shown through that fd.
    done = nsshell("--json", "-c", f"show net:[{ino}]")
    assert done.rc == 0, done
    shown = json_docs(done.out)[-1]["namespaces"][0]
    assert shown["ns"] == ino and "lo" in shown["state"]["links"]


def test_namespace_held_only_by_a_bind_mount_in_another_mount_namespace(nsshell, procs):
    owner = procs(["unshare", "--net", "sleep", "300"])
    ino = _wait_ns_differs(owner.pid, "net")
    base = tempfile.mkdtemp(prefix="nsshell-test-")
    try:
        keeper = procs(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        f"mount -t tmpfs tmpfs {base} && touch {base}/netns && "
                        f"mount --bind /proc/{owner.pid}/ns/net {base}/netns && "
                        f"echo ok && exec sleep 300"], stdout=subprocess.PIPE, text=True)
        assert keeper.stdout.readline().strip() == "ok"
        kill_group(owner)
        # Not in the host's mount table: the mount lives in the keeper's namespace only.
        with open("/proc/self/mountinfo") as f:
            assert f"net:[{ino}]" not in f.read()
        row = _ls(nsshell, "net")[("net", ino)]
        assert row["held"] == ["mount"], row
        assert row["nprocs"] == 0
        holder = next(h for h in row["holders"] if h["kind"] == "mount")
        assert holder["path"] == f"{base}/netns"
        assert holder["mnt"] == f"mnt:[{_ino(keeper.pid, 'mnt')}]"
        # TYPE:[INODE] reaches it through the keeper's root (another mount namespace).
        done = nsshell("--json", "-c", f"show net:[{ino}]")
        assert done.rc == 0, done
        assert json_docs(done.out)[-1]["namespaces"][0]["held"] == ["mount"]
        kill_group(keeper)  # its mount namespace, and the mount, die with it
    finally:
        os.rmdir(base)


def test_namespace_held_only_by_a_socket(nsshell, procs):
    # A process that makes a socket inside a new network namespace, then returns to ours:
    # nothing but the socket keeps that namespace alive.
    code = (
        "import ctypes, os, socket, sys, time\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "home = os.open('/proc/self/ns/net', os.O_RDONLY)\n"
        "assert libc.unshare(0x40000000) == 0\n"
        "ino = os.stat('/proc/self/ns/net').st_ino\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "assert libc.setns(home, 0x40000000) == 0\n"
        "print(ino, s.fileno(), flush=True)\n"
        "time.sleep(300)\n")
    keeper = procs([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    ino, fd = map(int, keeper.stdout.readline().split())
    assert _ino(keeper.pid, "net") != ino
    row = _ls(nsshell, "net")[("net", ino)]
    assert row["held"] == ["socket"]
    assert {"kind": "socket", "pid": keeper.pid, "fd": fd} in row["holders"]
    # ...and TYPE:[INODE] reaches it, though it has no path (SIOCGSKNS on the socket).
    done = nsshell("-c", f"join net:[{ino}]; run readlink /proc/self/ns/net")
    assert done.rc == 0, done
    assert done.out.splitlines()[-1] == f"net:[{ino}]"


def test_session_handles_and_names(nsshell):
    done = nsshell("--json", "-c", "new net+uts as box --no-join; ls net+uts")
    assert done.rc == 0, done
    docs = json_docs(done.out)
    rows = docs[-1]["namespaces"]
    boxed = [r for r in rows if "box" in r["names"]]
    assert {r["type"] for r in boxed} == {"net", "uts"}
    for r in boxed:
        assert r["held"] == ["session"] and r["nprocs"] == 0
        assert any(h["kind"] == "session" and h["name"] == "box" for h in r["holders"])
    host = [r for r in rows if "host" in r["names"]]
    assert {r["type"] for r in host} == {"net", "uts"}


def test_ls_plain_and_json_flag(nsshell):
    plain = nsshell("-c", "ls uts")
    assert plain.rc == 0, plain
    head = plain.out.splitlines()[0].split()
    assert head == ["NS", "TYPE", "NPROCS", "PID", "USER", "HELD", "NAMES", "COMMAND"]
    flagged = nsshell("-c", "ls uts --json")
    assert flagged.rc == 0
    assert all(r["type"] == "uts" for r in json.loads(flagged.out)["namespaces"])


def test_ls_rootless_skips_what_it_cannot_read(rootless):
    done = rootless("--json", "-c", "ls")
    assert done.rc == 0, done
    assert done.err == ""
    rows = json.loads(done.out)["namespaces"]
    me = [r for r in rows if "host" in r["names"]]
    assert {r["type"] for r in me} >= {"user", "mnt", "net", "uts", "ipc", "pid", "cgroup"}


def test_ls_does_not_load_heavy_modules():
    code = ("import sys\n"
            "from nsshell.cli import main\n"
            "import io, contextlib\n"
            "buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n"
            "    rc = main(['--json', '-c', 'ls'])\n"
            "heavy = [m for m in ('rich', 'psutil', 'pyroute2', 'prompt_toolkit') if m in sys.modules]\n"
            "print(rc, heavy)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.strip().splitlines()[-1] == "0 []", out


def test_namespace_held_only_by_a_thread(nsshell, procs):
    # One thread of a process unshares a network namespace for itself alone.
    code = (
        "import ctypes, os, threading, time\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "def t():\n"
        "    assert libc.unshare(0x40000000) == 0\n"
        "    tid = threading.get_native_id()\n"
        "    print(os.stat(f'/proc/self/task/{tid}/ns/net').st_ino, tid, flush=True)\n"
        "    time.sleep(300)\n"
        "threading.Thread(target=t, daemon=True).start()\n"
        "time.sleep(300)\n")
    keeper = procs([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    ino, tid = map(int, keeper.stdout.readline().split())
    row = _ls(nsshell, "net")[("net", ino)]
    assert row["held"] == ["thread"] and row["nprocs"] == 0
    assert row["holders"] == [{"kind": "thread", "pid": keeper.pid, "tid": tid}]


def test_a_process_named_like_a_helper_with_a_space_is_not_called_one(nsshell):
    """`ls` names nsshell's own helpers by the kernel's comm, compared exactly: a process
    in a network namespace of its own named "nsshell-init " (PR_SET_NAME, open to
    anyone) is not shown as nsshell's PID-namespace init."""
    code = ("import ctypes, sys; ctypes.CDLL(None).prctl(15, b'nsshell-init ', 0, 0, 0); "
            "print('ok', flush=True); sys.stdin.read()")
    p = subprocess.Popen(["unshare", "-n", sys.executable, "-c", code], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "ok\n"
        net = os.stat(f"/proc/{p.pid}/ns/net").st_ino
        done = nsshell("--json", "-c", "ls net")
        assert done.rc == 0, done
        [row] = [r for r in json_docs(done.out)[-1]["namespaces"] if r["ns"] == net]
        assert row["helper"] is None, row
    finally:
        p.stdin.close()
        p.wait(timeout=10)
