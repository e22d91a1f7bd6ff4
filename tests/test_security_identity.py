"""Issue 10, items 1 and 2, attacked for real: who a program in a mapped container runs
as, and whether anything nsshell leaves in a namespace can be driven from inside it.

- `run` in a user namespace that maps root runs as that root: `id -u` says 0 and what
  it creates belongs on the host to the mapped uid (100000), whether the PID namespace
  has its own proc (--mount-proc, the mount plugin's `mount proc`) or not, in a batch
  (the run helper) and on a terminal (a forked program).
- The container's root (kuid 100000, every capability in its user namespace) cannot
  PTRACE_SEIZE/ATTACH nsshell-init (PID 1, host uid 0) nor open its /proc/PID/mem; nor
  the run helper, the socket opener or the keeper.  The attacker is a small ctypes
  program run inside (python3 from the host's /usr: nothing is pivoted here).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import NOBODY, _env, nsshell_argv, processes_named, run_on_a_terminal

MAPPED = 100000
OVERFLOW = 65534  # /proc/sys/kernel/overflowuid: how an unmapped owner shows in a namespace
PY = "/usr/bin/python3"

ATTACK = r'''
import ctypes, errno, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
PTRACE_ATTACH, PTRACE_SEIZE = 16, 0x4206

def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None

def nspid_is_1(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return any(l.startswith("NSpid:") and l.split()[-1] == "1" and len(l.split()) > 2
                       for l in f)
    except OSError:
        return False

def ptrace(req, pid):
    if libc.ptrace(req, pid, None, None) == 0:
        return "ok"   # left attached: the kernel detaches when this program exits
    return errno.errorcode[ctypes.get_errno()]

def mem(pid):
    try:
        os.close(os.open(f"/proc/{pid}/mem", os.O_RDONLY))
        return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]

def owner(pid):
    try:
        return os.stat(f"/proc/{pid}/environ").st_uid
    except OSError:
        return None

what = sys.argv[1]
out = []
if what == "init":
    # ptrace takes pids of the caller's PID namespace: 1 is nsshell-init, whatever /proc is.
    seize = ptrace(PTRACE_SEIZE, 1)
    attach = ptrace(PTRACE_ATTACH, 1) if seize != "ok" else "-"
    if comm(1) == "nsshell-init":     # this PID namespace's own proc
        mems = [mem(1)]
    else:                             # the host's proc: every nsshell-init that is a PID 1
        mems = [mem(p) for p in map(int, filter(str.isdigit, os.listdir("/proc")))
                if comm(p) == "nsshell-init" and nspid_is_1(p)]
    out.append({"pid": 1, "comm": comm(1), "seize": seize, "attach": attach, "mem": mems})
else:
    if what == "parent":
        pids = [os.getppid()]
    else:
        name = what.split(":", 1)[1]
        pids = [p for p in map(int, filter(str.isdigit, os.listdir("/proc")))
                if comm(p) == name and p != os.getpid()]
    for pid in pids:
        seize = ptrace(PTRACE_SEIZE, pid)
        attach = ptrace(PTRACE_ATTACH, pid) if seize != "ok" else "-"
        out.append({"pid": pid, "comm": comm(pid), "seize": seize, "attach": attach,
                    "mem": [mem(pid)], "owner": owner(pid)})
print("ATTACK " + json.dumps({"uid": os.getuid(), "targets": out}))
'''


@pytest.fixture(scope="module")
def attack():
    """The attacker program, readable by everyone (it runs as 100000 and 65534 too)."""
    d = tempfile.mkdtemp(prefix="nssec-")
    os.chmod(d, 0o755)
    path = os.path.join(d, "attack.py")
    with open(path, "w") as f:
        f.write(ATTACK)
    os.chmod(path, 0o644)
    yield path
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def drop_dir():
    """A directory the container's root (kuid 100000) and nobody may create files in."""
    d = tempfile.mkdtemp(prefix="nssec-drop-")
    os.chmod(d, 0o1777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def attack_result(out: str) -> dict:
    lines = [line for line in out.splitlines() if line.startswith("ATTACK ")]
    assert len(lines) == 1, out
    return json.loads(lines[0][len("ATTACK "):])


def assert_refused(result: dict) -> None:
    assert result["targets"], result
    for t in result["targets"]:
        assert t["seize"] == "EPERM" and t["attach"] == "EPERM", t
        assert t["mem"] and all(m in ("EACCES", "EPERM") for m in t["mem"]), t


# The three ways a PID namespace is seen: its own proc by `new --mount-proc`, by the mount
# plugin's `mount proc`, and none (the host's /proc, where /proc/self is not the program).
SETUPS = {
    "mount-proc": ("--mount-proc", ""),
    "mount-plugin": ("", "mount proc; "),
    "host-proc": ("", ""),
}


def container(prefix: str, setup: str, mapping: str = f"map 0 {MAPPED} 65536") -> str:
    opt, mount = SETUPS[setup]
    return f"new user+pid+mnt {opt} as {prefix}; {mount}{mapping}; "


# -- 1. identity ----------------------------------------------------------------------------

@pytest.mark.parametrize("setup", list(SETUPS))
@pytest.mark.parametrize("how", ["batch", "terminal"])
def test_run_is_the_mapped_root_and_creates_files_as_the_mapped_uid(nsshell, prefix, drop_dir,
                                                                    setup, how):
    made = os.path.join(drop_dir, "made")
    script = container(prefix, setup) + (
        f"run sh -c 'id -u; id -g; touch {made}; cat /etc/shadow >/dev/null 2>&1 || echo NOSHADOW'")
    if how == "batch":
        d = nsshell("-c", script)
        rc, out = d.rc, d.out + d.err
    else:  # a forked program that gets the terminal (core/proc/program.py), not the run helper
        rc, out = run_on_a_terminal(nsshell_argv() + ["-c", script], _env())
    assert rc == 0, out
    lines = [line.strip() for line in out.splitlines()]
    at = lines.index("NOSHADOW")
    assert lines[at - 2:at] == ["0", "0"], out
    st = os.stat(made)
    assert (st.st_uid, st.st_gid) == (MAPPED, MAPPED)


def test_half_a_root_mapping_is_refused_not_run_as_the_host_group(nsshell, drop_dir):
    made = os.path.join(drop_dir, "made")
    d = nsshell("-c", f"new user+mnt; map -u 0 {MAPPED} 65536; run touch {made}")
    assert d.rc == 1, d
    assert "uid 0 is mapped in the user namespace but gid 0 is not" in d.err, d.err
    assert len(d.err.strip().splitlines()) == 1, d.err
    assert not os.path.exists(made)


def test_unmapped_root_keeps_the_callers_ids_and_root_off_too(nsshell):
    d = nsshell("-c", f"new user; map 1 {MAPPED} 10; run id -u; set root off; run id -u")
    assert d.rc == 0, d
    assert d.out.splitlines()[-2:] == ["65534", "65534"]  # the caller (0) is not mapped there


def test_rootless_run_is_still_its_own_root(rootless, drop_dir):
    made = os.path.join(drop_dir, "made")
    d = rootless("-c", f"new user+pid+mnt --mount-proc; map root; run sh -c 'id -u; touch {made}'")
    assert d.rc == 0, d
    assert d.out.splitlines()[-1] == "0"
    assert os.stat(made).st_uid == NOBODY


# -- 2. control: nothing nsshell leaves inside can be driven from inside ---------------------

@pytest.mark.parametrize("setup", list(SETUPS))
def test_container_root_cannot_ptrace_or_read_the_memory_of_its_init(nsshell, prefix, attack,
                                                                      setup):
    d = nsshell("-c", container(prefix, setup) + f"run {PY} {attack} init")
    assert d.rc == 0, d
    result = attack_result(d.out)
    assert result["uid"] == 0  # the container's root, every capability in its namespace
    assert_refused(result)


def test_rootless_container_root_cannot_ptrace_its_init(rootless, attack):
    d = rootless("-c", f"new user+pid+mnt --mount-proc; map root; run {PY} {attack} init")
    assert d.rc == 0, d
    result = attack_result(d.out)
    assert result["uid"] == 0 and result["targets"][0]["comm"] == "nsshell-init"
    assert_refused(result)


@pytest.mark.parametrize("who", ["root", "rootless"])
def test_the_run_helper_cannot_be_driven_by_the_program_it_started(nsshell, rootless, attack, who):
    """The program's parent in a batch is nsshell-run: same kuid, same user namespace."""
    if who == "root":
        d = nsshell("-c", f"new user+mnt; map 0 {MAPPED} 65536; run {PY} {attack} parent")
    else:
        d = rootless("-c", f"new user+mnt; map root; run {PY} {attack} parent")
    assert d.rc == 0, d
    result = attack_result(d.out)
    (t,) = result["targets"]
    assert t["comm"] == "nsshell-run" and result["uid"] == 0
    assert_refused(result)
    # The kernel's visible sign of a process that is not dumpable: its /proc files belong to
    # host root, which is not mapped in here (the overflow uid); dumpable, they would be
    # the helper's own, root in here (0).
    assert t["owner"] == OVERFLOW


def test_the_rootless_socket_opener_cannot_be_driven_from_its_user_namespace(rootless, attack):
    """The opener sits in the user namespace that owns the networks it serves (kuid of the
    user, like that namespace's root): no PID namespace here, so the inside sees it."""
    d = rootless("-c", "new user as u; map root; new net as n --no-join; net up n lo; "
                       f"run {PY} {attack} comm:nsshell-sockets")
    assert d.rc == 0, d
    result = attack_result(d.out)
    assert result["uid"] == 0
    assert_refused(result)  # every opener it can see, its own among them
    assert all(t["owner"] == OVERFLOW for t in result["targets"])


def test_the_keeper_is_not_dumpable(rootless_ok, attack, prefix):
    """A process of the keeper's own uid (in the host's user namespace, where the keeper is)
    can neither trace it nor read its memory; its /proc files belong to root."""
    xdg = tempfile.mkdtemp(prefix="nssec-xdg-")
    os.chown(xdg, NOBODY, NOBODY)
    os.chmod(xdg, 0o700)
    env = dict(_env(), HOME="/tmp", XDG_RUNTIME_DIR=xdg)
    as_nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    name = f"{prefix}k"

    def nss(script: str) -> subprocess.CompletedProcess:
        return subprocess.run(as_nobody + nsshell_argv() + ["-c", script], capture_output=True,
                              text=True, env=env, cwd="/tmp", timeout=60)

    try:
        made = nss(f"new user+net as {name} --no-join; map root --ns {name}; persist {name}")
        assert made.returncode == 0, made
        (keeper,) = processes_named("nsshell-keeper", env_mark=f"XDG_RUNTIME_DIR={xdg}")
        assert os.stat(f"/proc/{keeper}").st_uid == NOBODY  # it runs as nobody...
        assert os.stat(f"/proc/{keeper}/environ").st_uid == 0  # ...but is not dumpable
        probe = subprocess.run(as_nobody + [PY, attack, "comm:nsshell-keeper"],
                               capture_output=True, text=True, env=env, cwd="/tmp", timeout=30)
        result = attack_result(probe.stdout)
        mine = [t for t in result["targets"] if t["pid"] == keeper]
        assert mine, result
        assert_refused({"targets": mine})
    finally:
        nss(f"unpersist {name}")
        for pid in processes_named("nsshell-keeper", env_mark=f"XDG_RUNTIME_DIR={xdg}"):
            os.kill(pid, 9)
        shutil.rmtree(xdg, ignore_errors=True)


# -- the helper that creates namespaces does not depend on the context's /proc either --------

@pytest.mark.parametrize("who", ["root", "rootless"])
def test_creating_inside_a_container_with_its_own_proc(nsshell, rootless, who):
    """Inside a context whose /proc is its PID namespace's (no /proc/self for a helper
    outside it): new namespaces, clock offsets (written through timens_offsets opened
    before entering), and a nested PID namespace with a time namespace (made in the
    grandchild, the time namespace before it)."""
    mapping = f"map 0 {MAPPED} 65536" if who == "root" else "map root"
    script = (f"new user+pid+mnt --mount-proc as c; {mapping}; new net as n; "
              "run readlink /proc/self/ns/net; "
              "new time --boottime 1000 as t; run cat /proc/uptime; "
              "new pid+time --boottime 2000 as pt; run cat /proc/uptime; run id -u")
    d = (nsshell if who == "root" else rootless)("-c", script)
    assert d.rc == 0, d
    lines = d.out.splitlines()
    net = [w for w in lines[2].split() if w.startswith("net:[")]
    assert net == [lines[3]], d.out
    host_up = float(open("/proc/uptime").read().split()[0])
    ups = [float(line.split()[0]) for line in lines if line.count(".") == 2 and " " in line
           and not line.startswith(("c:", "t:", "pt:", "n:", "user:"))]
    assert len(ups) == 2, d.out
    assert 900 < ups[0] - host_up < 1100 and 1900 < ups[1] - host_up < 2100, (ups, host_up)
    assert lines[-1] == "0"
