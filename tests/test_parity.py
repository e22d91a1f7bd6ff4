"""Parity with the tools nsshell replaces (issue 16): `run`'s options against nsenter's
result for the same target, and `join net NAME; run` against `ip netns exec NAME`."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time

import pytest

from conftest import nsshell_argv, run_nsshell, run_on_a_terminal, _env
from busybox_rootfs import rootfs  # noqa: F401 - a fixture

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (nsenter, ip netns)")


def _maps(pid: int) -> None:
    with open(f"/proc/{pid}/uid_map", "w") as f:
        f.write("0 100000 65536")
    with open(f"/proc/{pid}/gid_map", "w") as f:
        f.write("0 100000 65536")


@pytest.fixture(scope="module")
def target():
    """A process in its own user (0..65535 -> 100000..165535), mount, net and uts
    namespaces, with PARITY_MARK in its environment: the target of both tools."""
    p = subprocess.Popen(["unshare", "-U", "-m", "-n", "-u", "sh", "-c", "read x; exec sleep 120"],
                         stdin=subprocess.PIPE, env={"PATH": os.environ["PATH"],
                                                     "PARITY_MARK": "from-the-target"})
    try:
        for _ in range(100):  # until unshare has exec'd sh in the new namespaces
            if os.readlink(f"/proc/{p.pid}/ns/user") != os.readlink("/proc/self/ns/user"):
                break
            time.sleep(0.02)
        _maps(p.pid)
        p.stdin.write(b"go\n")
        p.stdin.close()
        for _ in range(100):
            with open(f"/proc/{p.pid}/comm") as f:
                if f.read().strip() == "sleep":
                    break
            time.sleep(0.02)
        yield p.pid
    finally:
        p.kill()
        p.wait()


def nsenter(pid: int, *args: str) -> str:
    p = subprocess.run(["nsenter", "-t", str(pid), "-a"] + list(args),
                       capture_output=True, text=True)
    assert p.returncode == 0, p
    return p.stdout


def ours(pid: int, line: str, **kw):
    d = run_nsshell("-c", f"join pid:{pid}; {line}", **kw)
    assert d.rc == 0, d
    assert d.out.startswith(f"joined pid:{pid}:"), d
    return d.out.split("\n", 1)[1]


@pytest.mark.parametrize("run_opts,nsenter_opts,cmd", [
    ("", [], "id"),
    ("--uid 1000", ["-S", "1000"], "id"),
    ("--uid 1000 --gid 1000", ["-S", "1000", "-G", "1000"], "id"),
    ("--gid 7", ["-G", "7"], "id"),
    ("--cwd /tmp", ["--wd=/tmp"], "pwd"),
    ("--uid=1000 --cwd=/tmp", ["-S", "1000", "--wd=/tmp"], "sh -c 'id -u; pwd'"),
])
def test_run_options_give_what_nsenter_gives(target, run_opts, nsenter_opts, cmd):
    import shlex
    assert ours(target, f"run {run_opts} {cmd}") == nsenter(target, *nsenter_opts, *shlex.split(cmd))


def test_ids_are_the_user_namespaces_own(target):
    # uid 1000 inside is host uid 101000: what the kernel says, seen from outside
    out = ours(target, "run --uid 1000 --gid 1000 sh -c 'cat /proc/self/status'")
    assert "Uid:\t1000\t1000\t1000\t1000" in out
    # an id the namespace does not map is refused, nothing is run
    d = run_nsshell("-c", f"join pid:{target}; run --uid 70000 echo RAN")
    assert d.rc != 0 and "RAN" not in d.out, d
    assert "70000" in d.err and "not mapped" in d.err and "Traceback" not in d.err, d


def test_groups(target):
    assert ours(target, "run --uid 1000 --gid 1000 --groups 5,7 id -G").split() == ["1000", "5", "7"]
    assert ours(target, "run --uid 1000 --gid 1000 id -G").split() == ["1000"]


def test_env_and_env_from_target(target):
    out = ours(target, "run --env PARITY_A=1 --env PARITY_B='x y' -- sh -c 'echo $PARITY_A/$PARITY_B/$PARITY_MARK'",
               env={"PARITY_MARK": "from-the-shell"})
    assert out == "1/x y/from-the-shell\n"
    # the target's environment instead of the shell's (newer nsenter's --env)
    out = ours(target, "run --env-from-target --env PARITY_A=2 sh -c 'echo $PARITY_A/$PARITY_MARK'",
               env={"PARITY_MARK": "from-the-shell"})
    assert out == "2/from-the-target\n"
    with open(f"/proc/{target}/environ", "rb") as f:
        theirs = sorted(x.decode() for x in f.read().split(b"\0") if x)
    out = ours(target, "run --env-from-target env")
    assert sorted(out.splitlines()) == theirs


def test_root(target, rootfs):  # noqa: F811
    # nsenter --root: the same view of /
    assert ours(target, f"run --root {rootfs} ls /") == nsenter(target, f"--root={rootfs}", "ls", "/")
    # --cwd is a path under the new root (nsenter --wd is one outside it); else it is /
    assert ours(target, f"run --root {rootfs} --cwd /bin pwd") == "/bin\n"
    assert ours(target, f"run --root {rootfs} pwd") == "/\n"


def test_keep_caps(target):
    amb = ours(target, "run --uid 1000 --keep-caps grep CapAmb /proc/self/status").split()[1]
    assert int(amb, 16) != 0 and int(amb, 16) & (1 << 12)  # CAP_NET_ADMIN among them
    amb = ours(target, "run --uid 1000 grep CapAmb /proc/self/status").split()[1]
    assert int(amb, 16) == 0
    # the capabilities work: uid 1000 changes the target's network namespace
    out = ours(target, "run --uid 1000 --keep-caps sh -c 'ip link set lo up && echo OK'")
    assert out.strip() == "OK"


def test_cgroup(target):
    base = "/sys/fs/cgroup/pids"
    if not os.path.isdir(base):
        pytest.skip("no v1 pids hierarchy here")
    cg = os.path.join(base, f"parity_cg{os.getpid()}")
    os.mkdir(cg)
    try:
        with open(os.path.join(cg, "cgroup.procs"), "w") as f:
            f.write(str(target))
        out = ours(target, "run --cgroup cat /proc/self/cgroup")
        assert f"pids:/{os.path.basename(cg)}" in out.splitlines()[[
            i for i, l in enumerate(out.splitlines()) if ":pids:" in l][0]]
        with open(f"/proc/{target}/cgroup") as f:
            assert sorted(out.splitlines()) == sorted(f.read().splitlines())
        out = ours(target, "run cat /proc/self/cgroup")
        assert f"pids:/{os.path.basename(cg)}" not in out
    finally:
        with open(os.path.join(base, "cgroup.procs"), "w") as f:
            f.write(str(target))
        for _ in range(50):
            try:
                os.rmdir(cg)
                break
            except OSError:
                time.sleep(0.1)


def test_bad_options_are_one_clear_line():
    for line, what in (("run --bogus x", "unknown option --bogus"),
                       ("run --uid x id", "not a numeric id"),
                       ("run --env NOEQUALS id", "NAME=VALUE"),
                       ("run --uid", "needs a value"),
                       ("run --uid 1", "missing CMD"),
                       ("run --cwd /nonexistent-parity true", "--cwd /nonexistent-parity")):
        d = run_nsshell("-c", line)
        assert d.rc != 0 and what in d.err and len(d.err.strip().splitlines()) == 1, (line, d)
    # `--` ends the options: what follows is the program
    d = run_nsshell("-c", "run -- --uid")
    assert d.rc == 127 and "--uid: command not found" in d.err, d


def test_options_on_a_terminal(target):
    # at the prompt the program is forked from the shell (program.run_program), not the runner
    rc, out = run_on_a_terminal(nsshell_argv() + ["-c", f"join pid:{target}; "
                                                  "run --uid 1000 --cwd /tmp --env PARITY_T=t "
                                                  "sh -c 'echo $(id -u) $(pwd) $PARITY_T'"],
                                _env())
    assert rc == 0, out
    assert "1000 /tmp t" in out


# --- ip netns exec ------------------------------------------------------------------

@pytest.fixture
def named_netns():
    name = f"parity_nx{os.getpid()}"
    created_etc = not os.path.isdir("/etc/netns")
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "add", "parity_v0", "type", "veth",
                        "peer", "name", "parity_v1"], check=True)
        os.makedirs(f"/etc/netns/{name}")
        with open(f"/etc/netns/{name}/resolv.conf", "w") as f:
            f.write("nameserver 192.0.2.53  # parity\n")
        with open(f"/etc/netns/{name}/hosts", "w") as f:
            f.write("192.0.2.1 parity-host\n")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name])
        shutil.rmtree(f"/etc/netns/{name}", ignore_errors=True)
        if created_etc:
            try:
                os.rmdir("/etc/netns")
            except OSError:
                pass


def _etc_sys_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [l for l in f if l.split()[4] == "/sys" or l.split()[4].startswith("/etc")]


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_run_in_a_joined_netns_is_ip_netns_exec(named_netns):
    etc_before = {f: _digest(f"/etc/{f}") for f in ("resolv.conf", "hosts")}
    mounts_before = _etc_sys_mounts()
    theirs = subprocess.run(["ip", "netns", "exec", named_netns, "ls", "/sys/class/net"],
                            capture_output=True, text=True, check=True).stdout
    assert "parity_v0" in theirs
    d = run_nsshell("-c", f"join net {named_netns}; run ls /sys/class/net; "
                    "run cat /etc/resolv.conf; run cat /etc/hosts")
    assert d.rc == 0, d
    assert d.out.split("\n", 1)[1] == theirs + "nameserver 192.0.2.53  # parity\n" + "192.0.2.1 parity-host\n"
    # the same at the prompt (forked program) and with `sh`
    rc, out = run_on_a_terminal(nsshell_argv() + ["-c", f"join net {named_netns}; "
                                                  "run cat /etc/resolv.conf"], _env())
    assert rc == 0 and "192.0.2.53" in out, out
    # the host's /etc and mounts are untouched
    assert {f: _digest(f"/etc/{f}") for f in ("resolv.conf", "hosts")} == etc_before
    assert _etc_sys_mounts() == mounts_before


def test_netns_exec_can_be_turned_off_and_is_off_with_the_mnt(named_netns):
    host = sorted(os.listdir("/sys/class/net"))
    d = run_nsshell("-c", f"join net {named_netns}; set netns_exec off; "
                    "run ls /sys/class/net; run cat /etc/resolv.conf")
    assert d.rc == 0, d
    assert d.out.splitlines()[1:len(host) + 1] == host
    assert "192.0.2.53" not in d.out
    # a set with its own mount namespace: its /sys is its own business
    d = run_nsshell("-c", "new net+mnt; run ls /sys/class/net")
    assert d.rc == 0, d
    assert d.out.splitlines()[1:] == host
    # an unnamed new network namespace: /sys is remounted, no /etc/netns
    d = run_nsshell("-c", "new net; run ls /sys/class/net")
    assert d.rc == 0, d
    assert d.out.splitlines()[1:] == ["lo"]


# --- PID 1 ------------------------------------------------------------------------------

def _pids_in_pidns(ino: str) -> list[int]:
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if os.readlink(f"/proc/{p}/ns/pid") == ino:
                    out.append(int(p))
            except OSError:
                pass
    return out


@pytest.mark.parametrize("setup", ["", "new pid; ", "new user+pid; map 0 100000 65536; "])
def test_pid1_is_unshare_fp_mount_proc(setup):
    # the glob runs in sh itself (echo is built in): the only process of the namespace
    theirs = subprocess.run(["unshare", "-fp", "--mount-proc", "sh", "-c", "echo $$; cd /proc; echo [0-9]*"],
                            capture_output=True, text=True, check=True).stdout
    proc_mounts = [l for l in open("/proc/self/mountinfo") if l.split()[4] == "/proc"]
    d = run_nsshell("-c", setup + "run --pid1 sh -c 'echo $$; cd /proc; echo [0-9]*'; "
                    "run --pid1 sh -c 'sleep 987 & readlink /proc/self/ns/pid'")
    assert d.rc == 0, d
    lines = d.out.splitlines()[-3:]
    assert lines[:2] == theirs.splitlines() == ["1", "1"]
    # the namespace ended with its PID 1, and took the orphan along
    assert lines[2].startswith("pid:[")
    assert _pids_in_pidns(lines[2]) == []
    assert [l for l in open("/proc/self/mountinfo") if l.split()[4] == "/proc"] == proc_mounts


def test_pid1_with_options_and_on_a_terminal():
    d = run_nsshell("-c", "run --pid1 --uid 1000 sh -c 'echo $(id -u) $$'; run --pid1 sh -c 'exit 7'")
    assert d.rc == 7 and d.out.splitlines() == ["1000 1"], d
    rc, out = run_on_a_terminal(nsshell_argv() + ["-c", "run --pid1 sh -c 'echo PID=$$'"], _env())
    assert rc == 0 and "PID=1" in out, out


def test_run_options_as_session_defaults(target):
    out = ours(target, "set run_uid 1000; set run_cwd /tmp; set run_groups 5,7; run sh -c 'id -u; pwd; id -G'; "
                       "run --uid 0 id -u; set run_uid none; run id -u")
    assert out.splitlines() == ["1000", "/tmp", "0 5 7", "0", "0"]
    d = run_nsshell("-c", "set run_uid x")
    assert d.rc == 2 and "numeric id" in d.err and len(d.err.splitlines()) == 1, d
