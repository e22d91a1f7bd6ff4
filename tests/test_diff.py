"""`diff`: for every type, a known difference made on purpose and exactly that change
reported; and equal pairs reported equal."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import json_docs




def _diff(nsshell, script: str) -> dict:
    done = nsshell("--json", "-c", script)
    assert done.rc == 0, done
    return json_docs(done.out)[-1]


def _one(result: dict, t: str) -> dict:
    [r] = [r for r in result["types"] if r["type"] == t]
    return r


def _ops(changes: list[dict]) -> list[tuple]:
    return sorted((c["op"], c["key"], json.dumps(c["a"], sort_keys=True),
                   json.dumps(c["b"], sort_keys=True)) for c in changes)


@pytest.mark.parametrize("t", ["user", "mnt", "pid", "net", "uts", "ipc", "cgroup", "time"])
def test_fresh_namespaces_are_equal(nsshell, t):
    if t == "mnt":
        # b is a copy of a (made inside it): other test runs mount on the host meanwhile,
        # and two copies of the host taken moments apart may differ by those mounts.
        script = "new mnt as a; new mnt as b; diff a b"
    else:
        script = f"new {t} as a --no-join; new {t} as b --no-join; diff a b"
    r = _one(_diff(nsshell, script), t)
    assert r["a"] != r["b"] and not r["same_namespace"]
    assert r["equal"] and r["changes"] == {} and r["errors"] == {}


def test_same_namespace(nsshell):
    res = _diff(nsshell, "new net+uts as a --no-join; diff a a")
    for r in res["types"]:
        assert r["same_namespace"] and r["equal"]
    plain = nsshell("-c", "new uts as a --no-join; new uts as b --no-join; diff a b; diff a a")
    assert plain.rc == 0, plain
    assert "equal (uts:[" in plain.out and "same namespace uts:[" in plain.out


def test_net(nsshell):
    r = _one(_diff(nsshell,
                   "new net as a; run ip link set lo up; leave; "
                   "new net as b; run ip link set lo up; "
                   "run ip link add d0 mtu 1400 type veth peer name d1; "
                   "run ip addr add 10.9.0.1/24 dev d0; "
                   "run ip route add blackhole 10.10.0.0/16; "
                   "diff a b net"), "net")
    assert not r["equal"]
    assert set(r["changes"]) == {"links", "addresses", "routes"}
    links = r["changes"]["links"]
    assert sorted((c["op"], c["key"]) for c in links) == [("+", "d0"), ("+", "d1")]
    link = next(c for c in links if c["key"] == "d0")
    assert link["a"] is None
    assert link["b"]["kind"] == "veth" and link["b"]["mtu"] == 1400 and not link["b"]["up"]
    assert _ops(r["changes"]["addresses"]) == [("+", None, "null", '"d0 10.9.0.1/24"')]
    assert _ops(r["changes"]["routes"]) == [("+", None, "null", '"blackhole 10.10.0.0/16"')]
    # a link changed in place: mtu and state
    r2 = _one(_diff(nsshell, "new net as a --no-join; new net as b; run ip link set lo mtu 1500; "
                    "diff a b net"), "net")
    [c] = r2["changes"]["links"]
    assert c["op"] == "~" and c["key"] == "lo"
    assert c["a"]["mtu"] == 65536 and c["b"]["mtu"] == 1500
    assert "mtu 65536 -> 1500" in c["text"]


def test_mnt(nsshell):
    d = tempfile.mkdtemp(prefix="nsshell-diff-")
    try:
        r = _one(_diff(nsshell,
                       f"new mnt as a; run mount -t tmpfs tmpfs {d}; "
                       f"new mnt as b; "  # a copy of a, made inside it
                       f"run mkdir {d}/sub; run mount -t tmpfs tmpfs {d}/sub; "
                       f"run mount -o remount,bind,ro {d}; run mount --make-shared {d}; "
                       f"diff a b mnt"), "mnt")
        changes = r["changes"]["mounts"]
        assert sorted((c["op"], c["key"]) for c in changes) == [("+", f"{d}/sub"), ("~", d)]
        changed = next(c for c in changes if c["op"] == "~")
        diff_fields = {k for k in changed["a"] if changed["a"][k] != changed["b"][k]}
        assert diff_fields == {"options", "propagation"}
        assert changed["a"]["options"].startswith("rw") and changed["b"]["options"].startswith("ro")
        assert changed["a"]["propagation"] == "private"
        assert changed["b"]["propagation"].startswith("shared:")   # as the kernel and mount ls say
        added = next(c for c in changes if c["op"] == "+")
        assert added["b"]["fstype"] == "tmpfs"
        assert set(r["changes"]) == {"mounts"}
        # the host never saw any of it
        with open("/proc/self/mountinfo") as f:
            assert f" {d} " not in f.read()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_uts(nsshell):
    r = _one(_diff(nsshell, "new uts as a --no-join; new uts as b; hostname other; "
                   "run sh -c 'echo lab > /proc/sys/kernel/domainname'; diff a b uts"), "uts")
    host = os.uname().nodename
    assert _ops(r["changes"]["hostname"]) == [("~", None, json.dumps(host), '"other"')]
    assert _ops(r["changes"]["domainname"])[0][3] == '"lab"'
    assert set(r["changes"]) == {"hostname", "domainname"}


def test_user(nsshell):
    r = _one(_diff(nsshell, "new user as a; map root; leave; new user as b; setgroups deny; "
                   "map 0 100000 1000; leave; diff a b user"), "user")
    assert _ops(r["changes"]["uid_map"]) == [("+", None, "null", '"0 100000 1000"'),
                                             ("-", None, '"0 0 1"', "null")]
    assert _ops(r["changes"]["gid_map"]) == [("+", None, "null", '"0 100000 1000"'),
                                             ("-", None, '"0 0 1"', "null")]
    assert _ops(r["changes"]["setgroups"]) == [("~", None, '"allow"', '"deny"')]


def test_pid(nsshell):
    r = _one(_diff(nsshell, "new pid as a --no-join; new pid as b; "
                   "run sh -c 'sleep 300 >/dev/null 2>&1 &'; leave; diff a b pid"), "pid")
    [c] = r["changes"]["processes"]
    assert c["op"] == "+" and c["b"] == "sleep" and int(c["key"]) > 1


def test_ipc(nsshell):
    code = ("import ctypes, os; rt = ctypes.CDLL('librt.so.1', use_errno=True); "
            "rt.mq_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]; "
            "fd = rt.mq_open(b'/nsq', os.O_CREAT | os.O_RDWR, 0o600, None); "
            "assert fd >= 0, ctypes.get_errno()")
    r = _one(_diff(nsshell, "new ipc as a --no-join; new ipc as b; "
                   "run ipcmk -M 4096 -p 0600; "
                   f"run python3 -c \"{code}\"; diff a b ipc"), "ipc")
    [shm] = r["changes"]["sysv"]
    assert shm["op"] == "+" and shm["key"].startswith("shm 0x")
    assert shm["b"]["size"] == 4096 and shm["b"]["perms"] == "600"
    assert _ops(r["changes"]["mqueues"]) == [("+", "/nsq", "null", '{"qsize": 0}')]
    # mqueue was read without leaving a mount anywhere on the host
    with open("/proc/self/mountinfo") as f:
        assert " mqueue " not in f.read() or os.path.ismount("/dev/mqueue")


def test_cgroup(nsshell, prefix):
    base = "/sys/fs/cgroup/unified" if os.path.ismount("/sys/fs/cgroup/unified") else "/sys/fs/cgroup"
    with open("/proc/self/cgroup") as f:
        mine = next(l[3:].strip() for l in f if l.startswith("0::"))
    child = os.path.join(base + mine, prefix)
    os.mkdir(child)
    p = None
    try:
        p = subprocess.Popen(["sh", "-c", f"echo $$ > {child}/cgroup.procs && exec unshare --cgroup sleep 300"],
                             start_new_session=True)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if os.readlink(f"/proc/{p.pid}/ns/cgroup") != os.readlink("/proc/self/ns/cgroup"):
                    break
            except OSError:
                pass
            time.sleep(0.02)
        r = _one(_diff(nsshell, f"diff host pid:{p.pid} cgroup"), "cgroup")
        expected = (mine.rstrip("/") + "/" + prefix)
        assert _ops(r["changes"]["root"]) == [("~", None, json.dumps(mine), json.dumps(expected))]
    finally:
        if p is not None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
        for _ in range(50):
            try:
                os.rmdir(child)
                break
            except OSError:
                time.sleep(0.05)


def test_time(nsshell):
    r = _one(_diff(nsshell, "new time --monotonic 100 as a --no-join; "
                   "new time --monotonic 200 --boottime 5 as b --no-join; diff a b time"), "time")
    assert _ops(r["changes"]["offsets"]) == [("~", "boottime", '"0"', '"5"'),
                                             ("~", "monotonic", '"100"', '"200"')]


def test_diff_plain_signs(nsshell):
    done = nsshell("-c", "new uts as a --no-join; new uts as b; hostname zz-other; diff a b")
    assert done.rc == 0, done
    assert "uts hostname:" in done.out and f"~ {os.uname().nodename} -> zz-other" in done.out


def test_diff_missing_type_is_one_clear_error(nsshell):
    done = nsshell("-c", "new uts as a --no-join; diff a host net")
    assert done.rc == 1
    assert done.err.startswith("nsshell: ") and "has no net namespace" in done.err
    assert len(done.err.strip().splitlines()) == 1
