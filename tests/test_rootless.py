"""The workbench as an unprivileged user (uid 65534), through user namespaces."""

import os
import shutil
import socket
import tempfile

import pytest


def test_rootless_seed_scenario(rootless):
    d = rootless("-c", "new user+mnt+net+uts+ipc+pid; map root; hostname box; run hostname; run id -u")
    assert d.rc == 0, d
    assert d.out.splitlines()[-2:] == ["box", "0"]
    assert socket.gethostname() != "box"


def test_rootless_overflow_uid_before_map(rootless):
    d = rootless("-c", "new user; run id -u; map root; run id -u; run cat /proc/self/setgroups")
    assert d.rc == 0, d
    assert d.out.splitlines()[1] == "65534"
    assert d.out.splitlines()[-2:] == ["0", "deny"]


def test_rootless_pid_namespace(rootless):
    d = rootless("-c", "new user+pid+mnt --mount-proc; map root; run ps -o pid=,comm= -e")
    assert d.rc == 0, d
    procs = [line.split() for line in d.out.splitlines()[2:]]
    assert procs[0] == ["1", "nsshell-init"]
    assert len(procs) == 2  # init and ps: nothing of the host


def test_rootless_net_and_ipc(rootless):
    d = rootless("-c", "new user+net+ipc; map root; run ip -o link; run ipcmk -Q; run ipcs -q")
    assert d.rc == 0, d
    assert d.out.count(": lo:") == 1
    assert "0x" in d.out.split("Message queue id:")[-1]


def test_rootless_tmpfs_invisible_to_host(rootless):
    with tempfile.TemporaryDirectory() as target:
        d = rootless("-c", f"new user+mnt; map root; run mount -t tmpfs rootlesstmp {target}; "
                           "run grep -c rootlesstmp /proc/self/mountinfo")
        assert d.rc == 0, d
        assert d.out.splitlines()[-1] == "1"
        with open("/proc/self/mountinfo") as f:
            assert "rootlesstmp" not in f.read()


def test_rootless_nested_user_namespaces(rootless):
    d = rootless("-c", "new user as a; map root; new user+uts as b; map root; hostname deep; "
                       "run hostname; run id -u; run cat /proc/self/uid_map")
    assert d.rc == 0, d
    lines = d.out.splitlines()
    assert lines[-3:-1] == ["deep", "0"]
    assert lines[-1].split() == ["0", "0", "1"]


def test_rootless_time_and_cgroup(rootless):
    d = rootless("-c", "new user+time+cgroup --boottime 1000; map root; run cat /proc/uptime; "
                       "run cat /proc/self/cgroup")
    assert d.rc == 0, d
    lines = d.out.splitlines()
    uptime = next(x for x in lines if x[0].isdigit() and "." in x.split()[0] and ":" not in x)
    assert float(uptime.split()[0]) >= 1000
    cgroups = [x for x in lines if x[:1].isdigit() and x.count(":") >= 2]
    assert cgroups and all(x.endswith(":/") for x in cgroups), cgroups  # each hierarchy rooted here


def test_rootless_cannot_join_roots_namespaces(rootless):
    d = rootless("-c", "join pid:1")
    assert d.rc == 1
    assert "permission denied" in d.err
    assert len(d.err.splitlines()) == 1


@pytest.fixture
def subids():
    """Subordinate ranges for uid 65534 in /etc/subuid and /etc/subgid, restored afterwards."""
    saved = {}
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            with open(path) as f:
                saved[path] = f.read()
        except FileNotFoundError:
            saved[path] = None
        with open(path, "a") as f:
            f.write("nobody:300000:65536\n")
    yield
    for path, text in saved.items():
        if text is None:
            os.unlink(path)
        else:
            with open(path, "w") as f:
                f.write(text)


def test_rootless_map_auto_through_newuidmap(rootless, subids):
    if not shutil.which("newuidmap"):
        pytest.skip("newuidmap missing (package uidmap)")
    d = rootless("-c", "new user+mnt; map auto; run cat /proc/self/uid_map /proc/self/gid_map; run id -u")
    assert d.rc == 0, d
    rows = [line.split() for line in d.out.splitlines() if line.strip()[:1].isdigit()]
    assert rows == [["0", "65534", "1"], ["1", "300000", "65536"]] * 2 + [["0"]]


def test_map_auto_without_subids_says_how(rootless):
    if os.path.exists("/etc/subuid") and "nobody" in open("/etc/subuid").read():
        pytest.skip("uid 65534 has subordinate ids here")
    d = rootless("-c", "new user; map auto")
    assert d.rc == 1
    assert "no subordinate uids in /etc/subuid" in d.err and "usermod" in d.err
