"""The kernel layer (nsshell/kernel/) on the real kernel: the syscall table on an
architecture it does not know, the one mountinfo parser against a real mount table
with hostile mount points, and the one id-map reader against a real user namespace.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import ROOT

# The names every mount point below carries: each character the kernel escapes in
# mountinfo (space, tab, newline, backslash), an escape look-alike, and a byte that is
# not UTF-8.
HOSTILE = b"kx a b\tc\nd\\e \\040f \xff"


def _python(code: str, *prefix: str, env: dict | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ, PYTHONPATH=ROOT, **(env or {}))
    return subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True,
                          text=True, env=e, timeout=60)


def test_the_kernel_layer_imports_nothing_above_it():
    import ast
    kernel = os.path.join(ROOT, "nsshell", "kernel")
    seen = 0
    for name in sorted(os.listdir(kernel)):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(kernel, name)) as f:
            tree = ast.parse(f.read(), name)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                assert node.level <= 1, (name, node.level, mod)   # `from .x`: a sibling
                assert node.level == 1 or not mod.startswith("nsshell") \
                    or mod.startswith("nsshell.kernel"), (name, mod)
                seen += 1
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    assert not alias.name.startswith("nsshell") \
                        or alias.name.startswith("nsshell.kernel"), (name, alias.name)
                    seen += 1
    assert seen > 10


# --- the syscall table ---------------------------------------------------------------------

FAKE_ARCH = """
import os, platform, sys
real = os.uname()
fake = os.uname_result((real.sysname, real.nodename, real.release, real.version, "kx-arch"))
os.uname = lambda: fake
platform.machine = lambda: "kx-arch"
"""


def test_an_unknown_architecture_imports_and_fails_only_on_use():
    code = FAKE_ARCH + """
import errno, json, pkgutil, importlib
import nsshell
# every module of nsshell imports on a machine the table does not know
for m in pkgutil.walk_packages(nsshell.__path__, "nsshell."):
    if m.name.endswith("__main__"):
        continue
    importlib.import_module(m.name)
from nsshell.kernel import syscalls, nsfs
out = {}
for name, call in (("pidfd_send_signal", lambda: syscalls.pidfd_send_signal(0, 0)),
                   ("pidfd_getfd", lambda: syscalls.pidfd_getfd(0, 0)),
                   ("close_range", lambda: syscalls.close_range(1 << 30)),
                   ("pivot_root", lambda: syscalls.pivot_root(".", ".")),
                   ("openat2", lambda: syscalls.openat2(-100, "/", os.O_PATH)),
                   ("statx", lambda: syscalls.statx_mnt_id(-100, "/")),
                   ("statmount", lambda: syscalls.statmount_ids(1))):
    try:
        call()
        out[name] = "no error"
    except OSError as e:
        out[name] = [e.errno, str(e)]
# what needs no number still works: ioctl_ns and libc's own wrappers
fd = nsfs.open_proc_ns("self", nsfs.nstypes.NET)
out["type"] = nsfs.type_of_fd(fd).name
print(json.dumps(out))
"""
    done = _python(code)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out.pop("type") == "net"
    for name, (err, text) in out.items():
        assert err == errno.ENOSYS, (name, text)
        assert name in text and "kx-arch" in text, text


def test_the_known_architecture_has_every_number_it_calls():
    from nsshell.kernel import syscalls
    if os.uname().machine not in syscalls._NR_BY_ARCH:
        pytest.skip(f"{os.uname().machine}: not in the table")
    # each number is the call it names: the kernel answers as that call would
    r, w = os.pipe()
    pidfd = os.pidfd_open(os.getpid())
    try:
        got = syscalls.pidfd_getfd(pidfd, w)
        assert os.fstat(got).st_ino == os.fstat(w).st_ino and not os.get_inheritable(got)
        os.close(got)
        syscalls.pidfd_send_signal(pidfd, 0)
        uid = syscalls.statx_mnt_id(syscalls.AT_FDCWD, "/", unique=True)
        assert syscalls.statmount_ids(uid)[0] == uid
        root = os.open("/", os.O_PATH)
        try:
            assert syscalls.statx_mnt_id(root) == syscalls.statx_mnt_id(syscalls.AT_FDCWD, "/")
        finally:
            os.close(root)
    finally:
        for fd in (r, w, pidfd):
            os.close(fd)


# --- the mountinfo parser ------------------------------------------------------------------

# Run in a private mount namespace (unshare -m): mounts made there are gone with it.
MOUNTS = """
import json, os, subprocess, sys
from nsshell.kernel import mountinfo, syscalls
base = os.fsencode(sys.argv[1])
weird = os.path.join(base, HOSTILE)
sub = os.path.join(weird, b"sub " + HOSTILE)
bound = os.path.join(base, b"bound " + HOSTILE)
for d in (weird, bound):
    os.mkdir(d)
syscalls.mount(b"src " + HOSTILE, weird, "tmpfs", syscalls.MS_NOSUID, "size=1m,mode=0750")
os.mkdir(sub)
syscalls.mount(sub, bound, None, syscalls.MS_BIND)
syscalls.mount(None, bound, None, syscalls.MS_SHARED)
raw = open("/proc/self/mountinfo", "rb").read()
table = mountinfo.read()
def facts(path):
    return {"st_dev": os.stat(path).st_dev, "id": syscalls.statx_mnt_id(-100, path),
            "parent_id": syscalls.statx_mnt_id(-100, os.path.dirname(path))}
find = subprocess.run(["findmnt", "-J", "--list", "-o",
                       "ID,PARENT,TARGET,FSROOT,FSTYPE,VFS-OPTIONS,FS-OPTIONS,MAJ:MIN"],
                      capture_output=True).stdout.decode("utf-8", "replace")
print(json.dumps({
    "mounts": [dict(m.to_json(), st_dev=m.st_dev, optional=m.optional,
                    peer_groups=sorted(m.peer_groups()), shared=m.shared) for m in table],
    "weird": dict(facts(weird), target=os.fsdecode(weird)),
    "bound": dict(facts(bound), target=os.fsdecode(bound)),
    "tmpfs_only": [m.id for m in mountinfo.parse(raw, "tmpfs")],
    "tmpfs_all": [m.id for m in mountinfo.parse(raw.decode("utf-8", "surrogateescape"))
                  if m.fstype == "tmpfs"],
    "text_is_bytes": [m.to_json() for m in mountinfo.parse(raw.decode("utf-8", "surrogateescape"))]
                     == [m.to_json() for m in table],
    "findmnt": find,
}, ensure_ascii=True))
""".replace("HOSTILE", repr(HOSTILE))


@pytest.fixture
def kx_dir():
    d = tempfile.mkdtemp(prefix="nsshell-kx-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_mountinfo_parses_a_real_table_with_hostile_mount_points(kx_dir):
    done = subprocess.run(["unshare", "-m", "--propagation", "private", sys.executable, "-c",
                           MOUNTS, kx_dir], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout)
    by_target = {}
    for m in got["mounts"]:
        by_target[m["target"]] = m      # the last one on a mount point is the one on top
    hostile = os.fsdecode(HOSTILE)

    weird = by_target[got["weird"]["target"]]
    assert weird["fstype"] == "tmpfs"
    assert weird["source"] == "src " + hostile                    # (10), unescaped
    assert weird["root"] == "/"
    assert weird["id"] == got["weird"]["id"]                      # (1), as statx says
    assert weird["parent"] == got["weird"]["parent_id"]           # (2)
    assert weird["st_dev"] == got["weird"]["st_dev"]              # (3)
    assert weird["options"].split(",")[:2] == ["rw", "nosuid"]    # (6)
    assert "size=1024k" in weird["super_options"].split(",")      # (11)
    assert "mode=750" in weird["super_options"].split(",")
    assert weird["optional"] == [] and weird["propagation"] == "private"  # (7): none

    bound = by_target[got["bound"]["target"]]
    assert bound["root"] == "/sub " + hostile                     # (4), unescaped
    assert bound["id"] == got["bound"]["id"] and bound["st_dev"] == weird["st_dev"]
    [tag] = bound["optional"]
    assert tag.startswith("shared:") and bound["shared"] == tag == bound["propagation"]
    assert bound["peer_groups"] == [int(tag.split(":")[1])]

    # the fast filter finds what a full parse finds, and text or bytes parse alike
    assert got["tmpfs_only"] == got["tmpfs_all"] and weird["id"] in got["tmpfs_only"]
    assert got["text_is_bytes"]

    # util-linux's parser (libmount) agrees on every mount whose names are UTF-8
    listed = json.loads(got["findmnt"])["filesystems"]
    ours = {m["id"]: m for m in got["mounts"]}
    assert {f["id"] for f in listed} == set(ours)
    for f in listed:
        m = ours[f["id"]]
        assert (f["parent"], f["fstype"], f["vfs-options"], f["maj:min"]) == \
            (m["parent"], m["fstype"], m["options"], m["dev"]), (f, m)
        if "\ufffd" not in f["target"] + f["fsroot"]:
            assert (f["target"], f["fsroot"]) == (m["target"], m["root"]), (f, m)
    # nothing of it reached the host's mount table
    with open("/proc/self/mountinfo", "rb") as f:
        assert os.fsencode(kx_dir) not in f.read()


def test_unescape_takes_only_three_octal_digits():
    from nsshell.kernel.mountinfo import parse_line, unescape
    assert unescape(r"a\040b\011c\012d\134e") == "a b\tc\nd\\e"
    assert unescape(r"\134040") == "\\040"          # an escaped backslash is not re-read
    assert unescape(r"x\09y\\") == r"x\09y\\"       # not an escape: left as written
    assert parse_line("not a mountinfo line") is None
    m = parse_line("36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:2 - ext3 /dev/root "
                   "rw,errors=continue")
    assert (m.id, m.parent, m.dev, m.root, m.target, m.options, m.optional, m.fstype,
            m.source, m.super_options) == (36, 35, "98:0", "/mnt1", "/mnt2", "rw,noatime",
                                           ("master:1", "shared:2"), "ext3", "/dev/root",
                                           "rw,errors=continue")
    assert m.propagation == "master:1,shared:2" and m.peer_groups() == {1, 2}


# --- the id-map reader ---------------------------------------------------------------------

@pytest.fixture
def userns(procs):
    """A process in a user namespace of its own, its maps not written yet."""
    p = procs(["unshare", "-U", "sleep", "60"])
    mine = os.stat("/proc/self/ns/user").st_ino
    for _ in range(500):
        if os.stat(f"/proc/{p.pid}/ns/user").st_ino != mine:
            break
        time.sleep(0.01)
    else:
        pytest.fail("unshare -U did not start")
    return p.pid


def test_read_map_of_a_real_user_namespace(userns):
    from nsshell.kernel import idmap
    from nsshell.kernel.idmap import IdRange
    pid = userns
    # not written yet: empty, not an error
    assert idmap.read_map(pid, "uid") == [] and idmap.read_map(pid, "gid") == []
    # written by hand (not by nsshell's writer), as the kernel takes it
    with open(f"/proc/{pid}/uid_map", "w") as f:
        f.write("0 100000 65536\n65536 4321 1\n")
    with open(f"/proc/{pid}/setgroups", "w") as f:
        f.write("deny")
    with open(f"/proc/{pid}/gid_map", "w") as f:
        f.write("0 200000 10\n")
    want = [IdRange(0, 100000, 65536), IdRange(65536, 4321, 1)]
    assert idmap.read_map(pid, "uid") == want
    assert idmap.read_map(pid, "gid") == [IdRange(0, 200000, 10)]
    assert idmap.read_setgroups(pid) == "deny"
    procfd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        assert idmap.read_map(pid, "uid", proc_fd=procfd) == want
    finally:
        os.close(procfd)
    assert not idmap.is_identity(want)
    assert idmap.format_idmap(want) == "0-65535->100000-165535, 65536->4321"
    assert idmap.format_idmap(idmap.read_map(pid, "uid"), limit=1) == \
        "0-65535->100000-165535, ... (+1 more)"
    # the map as nsshell shows it: `show` reads it from inside, through the same reader
    done = subprocess.run([sys.executable, "-m", "nsshell", "--json", "-c",
                           f"show pid:{pid} user"], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)
    assert done.returncode == 0, done.stderr
    [ns] = json.loads(done.stdout.splitlines()[-1])["namespaces"]
    state = ns["state"]
    assert state["uid_map"] == ["0 100000 65536", "65536 4321 1"], state
    assert state["gid_map"] == ["0 200000 10"] and state["setgroups"] == "deny"


def test_read_map_never_takes_a_missing_map_for_an_empty_one():
    from nsshell.kernel import idmap
    assert idmap.is_identity(idmap.read_map("self", "uid"))
    with pytest.raises(OSError):
        idmap.read_map(0, "uid")            # no /proc/0: an error, not "unmapped"
    with pytest.raises(ValueError):
        idmap.parse_map("0 1000\n")


# --- procfs: /proc/PID/stat and the "Key:\tvalue" files ------------------------------------

# Names a process may give itself that break a parser splitting stat at the first ')' or
# at spaces: the one the issue names, one ending in ')' with fake fields, one with a newline.
KX_COMMS = ["a) b (c", "kx) S 1 2 3 )", "kx)\n R 9 ("]

_NAMED_CHILD = """
import ctypes, sys, time
ctypes.CDLL("libc.so.6").prctl(15, ctypes.c_char_p(sys.argv[1].encode()), 0, 0, 0)
print("ready", flush=True)
time.sleep(60)
"""


def _named_child(comm: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", _NAMED_CHILD, comm], stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout.readline() == "ready\n"
    return p


def _end(p: subprocess.Popen) -> None:
    p.kill()
    p.wait()
    p.stdout and p.stdout.close()


def _check_stat_of(p: subprocess.Popen, comm: str) -> None:
    from nsshell.kernel import procfs
    with open(f"/proc/{p.pid}/comm", "rb") as f:
        assert f.read() == comm.encode() + b"\n"          # the kernel took the name as is
    st = procfs.stat(p.pid)
    assert st is not None
    assert (st.pid, st.comm, st.alive) == (p.pid, comm, True)
    assert st.state in ("R", "S")                          # about to sleep, or asleep
    assert st.ppid == os.getpid()                          # field 4, read past the name
    status = procfs.status(p.pid)
    assert int(status["PPid"]) == st.ppid and int(status["Pid"]) == p.pid
    assert procfs.nspids(p.pid)[-1] == int(status["NSpid"].split()[-1])
    # the start time is field 22: a later process has a later one, ours an earlier one
    assert procfs.stat().starttime <= st.starttime
    assert st.field(22) == st.starttime and st.field(4) == st.ppid


@pytest.mark.parametrize("comm", KX_COMMS)
def test_procfs_stat_of_a_process_named_with_parens_spaces_newlines(comm):
    p = _named_child(comm)
    try:
        _check_stat_of(p, comm)
    finally:
        _end(p)


def test_procfs_stat_of_a_script_exec_named_a_paren_b_paren_c():
    """A script's file name becomes its comm at exec."""
    d = tempfile.mkdtemp(prefix="kx-procfs-")
    script = os.path.join(d, "a) b (c")
    try:
        # the script waits on a pipe that is never written (a builtin: no child to name)
        with open(script, "w") as f:
            f.write("#!/bin/sh\necho ready\nread x\n")
        os.chmod(script, 0o755)
        p = subprocess.Popen([script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert p.stdout.readline() == "ready\n"
            _check_stat_of(p, "a) b (c")
        finally:
            p.stdin.close()
            _end(p)
    finally:
        shutil.rmtree(d)


def test_procfs_stat_of_a_zombie_and_of_a_gone_process():
    from nsshell.core.store import holder
    from nsshell.kernel import procfs
    p = subprocess.Popen(["true"])
    # a zombie until reaped: stat reads it, and says it is not alive
    for _ in range(200):
        st = procfs.stat(p.pid)
        if st is not None and st.state == "Z":
            break
        time.sleep(0.01)
    assert st is not None and st.state == "Z" and not st.alive
    assert not holder.same_process(p.pid, st.starttime)
    p.wait()
    assert procfs.stat(p.pid) is None and procfs.status(p.pid) is None
    assert holder.start_time(p.pid) is None


def test_procfs_parse_stat_refuses_what_is_not_a_stat_line():
    from nsshell.kernel import procfs
    for bad in (b"", b"12", b"12 (x", b"(x) S 1", b"12 (x) S 1 2 3", b"x (y) " + b"1 " * 30):
        with pytest.raises(ValueError):
            procfs.parse_stat(bad)


def test_procfs_status_of_self_and_relative_to_a_proc_dir_fd():
    from nsshell.kernel import procfs
    from nsshell.core.look import nsstate
    status = procfs.status()
    st = procfs.stat()
    assert status["Name"] == st.comm and int(status["Pid"]) == os.getpid() == st.pid
    assert procfs.ints(status["Uid"])[:2] == [os.getuid(), os.geteuid()]
    assert procfs.ints(status["Gid"])[:2] == [os.getgid(), os.getegid()]
    assert procfs.nspids()[-1] == os.getpid() or len(procfs.nspids()) > 1
    # the tests run as root: CAP_SYS_ADMIN is in CapEff
    assert nsstate.privileged() is (os.geteuid() == 0)
    procfd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        rel = procfs.status(os.getpid(), procfd)
        assert rel["Pid"] == status["Pid"] and rel["NSpid"] == status["NSpid"]
        assert procfs.stat(os.getpid(), procfd).starttime == st.starttime
        assert procfs.stat("kx-no-such", procfd) is None
    finally:
        os.close(procfd)
    assert procfs.parse_keyed("A:\t1\nName:\tx: y\nnot a pair\nE:\n") == \
        {"A": "1", "Name": "x: y", "E": ""}
    assert procfs.ints("1\t2 3") == [1, 2, 3] and procfs.ints("1 x") is None \
        and procfs.ints(None) is None


def test_procfs_fdinfo_of_a_pidfd():
    from nsshell.core.proc import spawn
    from nsshell.kernel import procfs
    p = subprocess.Popen(["sleep", "60"])
    fd = os.pidfd_open(p.pid)
    try:
        info = procfs.fdinfo(fd)
        assert int(info["Pid"]) == p.pid and "flags" in info and "pos" in info
        assert spawn.pidfd_pid(fd) == p.pid
        p.kill()
        p.wait()
        assert procfs.fdinfo(fd)["Pid"] == "-1" and spawn.pidfd_pid(fd) is None
    finally:
        os.close(fd)
        if p.poll() is None:
            p.kill()
            p.wait()
    assert procfs.fdinfo(fd) is None and spawn.pidfd_pid(fd) is None
