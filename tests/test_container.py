"""The container built by hand (examples/container.nss) end to end, as uid 65534: new
user+mnt+pid+uts+ipc+net, map root, an overlay root over a busybox rootfs, proc, pivot_root,
a host name; `ps` sees only the container, `hostname` is its own, the host is unchanged.
Also scripts/build-rootfs.sh itself.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import pytest

from busybox_rootfs import host_mounts, rootfs  # noqa: F401 - rootfs is a fixture
from conftest import marked_processes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "container.nss")
BUILD = os.path.join(ROOT, "scripts", "build-rootfs.sh")


def tree(path: str) -> dict[str, tuple]:
    """Every entry under PATH with its type, size and mtime (to see that nothing changed)."""
    out = {}
    for base, dirs, files in os.walk(path):
        for n in dirs + files:
            p = os.path.join(base, n)
            st = os.lstat(p)
            out[os.path.relpath(p, path)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def ps_table(lines: list[str]) -> list[tuple[int, str]]:
    """(pid, command) rows of busybox ps output found in LINES."""
    start = next(i for i, l in enumerate(lines) if l.split()[:1] == ["PID"])
    rows = []
    for line in lines[start + 1:]:
        parts = line.split(None, 2)
        if not parts or not parts[0].isdigit():
            break
        rows.append((int(parts[0]), parts[2] if len(parts) > 2 else ""))
    return rows


@pytest.fixture
def host_before():
    """The host's host name, mount table and processes are as they were afterwards."""
    procs = marked_processes()
    mounts = host_mounts()
    name = socket.gethostname()
    yield
    assert socket.gethostname() == name
    assert host_mounts() == mounts
    deadline = time.monotonic() + 5
    while marked_processes() - procs and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marked_processes() - procs == set()


@pytest.fixture
def scratch(open_tmpdir):
    return open_tmpdir


def test_the_example_as_uid_65534(rootless, rootfs, host_before):
    before = tree(rootfs)
    host_pids = [p for p in os.listdir("/proc") if p.isdigit()]
    d = rootless(EXAMPLE, rootfs)
    assert d.rc == 0, d
    lines = d.out.splitlines()
    assert lines[0].startswith("box: user:[")
    procs = ps_table(lines)
    pids = [p for p, _ in procs]
    # only the container's processes: its init (pid 1), the shell, and ps itself
    assert pids[0] == 1 and "nsshell-init" in procs[0][1], procs
    assert len(procs) <= 4, procs
    assert len(host_pids) > len(procs)
    assert any("sh -c ps; hostname" in c for _, c in procs)
    assert lines[-1] == "box"
    assert tree(rootfs) == before  # the rootfs is the read-only lower layer


def test_the_container_writes_to_its_own_layer_and_has_its_own_network(rootless, rootfs,
                                                                        scratch, host_before):
    script = os.path.join(scratch, "box.nss")
    with open(EXAMPLE) as f:
        text = f.read()
    with open(script, "w") as f:
        f.write(text + "run sh -c 'echo written > /etc/written; cat /etc/written'\n"
                       "run sh -c 'ip -o link | wc -l; ls /proc | grep -c \"^[0-9]\"; id -u'\n"
                       "run cat /etc/hostname /proc/1/comm\n"
                       "mount ls --json\n")
    os.chmod(script, 0o644)
    before = tree(rootfs)
    d = rootless(script, rootfs)
    assert d.rc == 0, d
    lines = d.out.splitlines()
    i = lines.index("written")
    links, nprocs, uid = lines[i + 1:i + 4]
    assert links == "1"              # only lo: a new network namespace
    assert int(nprocs) <= 4          # /proc shows the container's PID namespace
    assert uid == "0"                # root, mapped to 65534 outside
    assert lines[i + 4:i + 6] == ["box", "nsshell-init"]
    assert tree(rootfs) == before    # the write went to the tmpfs upper layer
    assert not os.path.exists(os.path.join(rootfs, "etc", "written"))
    mounts = d.out[d.out.index("\n{") + 1:]
    table = {m["target"]: m for m in json.loads(mounts)["mounts"]}
    assert set(table) == {"/", "/proc"}, table  # nothing of the host is left inside
    assert table["/"]["fstype"] == "overlay" and table["/proc"]["fstype"] == "proc"


def test_the_example_as_root(nsshell, rootfs, host_before):
    d = nsshell(EXAMPLE, rootfs)
    assert d.rc == 0, d
    procs = ps_table(d.out.splitlines())
    assert procs[0][0] == 1 and len(procs) <= 4, procs
    assert d.out.splitlines()[-1] == "box"


def test_the_example_without_a_rootfs_fails_cleanly(rootless, host_before):
    d = rootless(EXAMPLE)
    assert d.rc == 2, d
    assert "LOWER is empty" in d.err and "container.nss:" in d.err, d


def test_the_example_with_a_missing_rootfs_fails_cleanly(rootless, scratch, host_before):
    d = rootless(EXAMPLE, os.path.join(scratch, "nothing-here"))
    assert d.rc == 1, d
    assert "nothing-here: No such file or directory" in d.err, d


# -- scripts/build-rootfs.sh ---------------------------------------------------------------

def test_build_rootfs_makes_a_busybox_tree(rootfs):
    for d in ("proc", "sys", "dev", "tmp", "etc", "root", "bin"):
        assert os.path.isdir(os.path.join(rootfs, d)), d
    assert os.access(os.path.join(rootfs, "bin", "busybox"), os.X_OK)
    for applet in ("sh", "ps", "hostname", "ls", "ip", "mount"):
        assert os.readlink(os.path.join(rootfs, "bin", applet)) == "busybox"
    with open(os.path.join(rootfs, "etc", "passwd")) as f:
        assert f.readline().startswith("root:x:0:0:")
    assert os.stat(os.path.join(rootfs, "tmp")).st_mode & 0o7777 == 0o1777
    # the static busybox runs with nothing else in the tree
    p = subprocess.run(["chroot", rootfs, "/bin/sh", "-c", "echo $((6 * 7))"],
                       capture_output=True, text=True)
    assert p.stdout.strip() == "42", p


def test_build_rootfs_refuses_to_replace_a_foreign_directory(scratch):
    foreign = os.path.join(scratch, "mine")
    os.mkdir(foreign)
    with open(os.path.join(foreign, "keep"), "w") as f:
        f.write("x")
    p = subprocess.run(["sh", BUILD, foreign], capture_output=True, text=True)
    assert p.returncode == 1 and "refusing" in p.stderr, p
    assert os.listdir(foreign) == ["keep"]


def test_build_rootfs_rebuilds_its_own_and_sets_the_owner(scratch):
    dest = os.path.join(scratch, "rootfs")
    for _ in range(2):  # the second run replaces the first
        p = subprocess.run(["sh", BUILD, "--owner", "65534:65534", dest],
                           capture_output=True, text=True)
        assert p.returncode == 0, p
    st = os.lstat(os.path.join(dest, "bin", "sh"))
    assert (st.st_uid, st.st_gid) == (65534, 65534)
