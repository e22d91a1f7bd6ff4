"""The containers plugin asks podman (`podman ps`, 30-100 ms) and reads the Kubernetes
runtimes' bundles only when the scan `ls` made shows that such a container may run: a
process in a mount namespace of its own whose parent outside it is the engine's monitor
(conmon, containerd's shim).  Real processes, a real scan; a process named
conmon is made by running a copy of sh under that name.  (The podman fixture of
test_containers.py checks that a real running container is still named.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from conftest import RUN_MARK, run_nsshell

from nsshell.core.look import discover
from nsshell_containers import engines

PFX = f"dng{RUN_MARK[:4]}"


def _mnt(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/mnt").st_ino


def _wait_mnt_apart(parent: subprocess.Popen) -> int:
    """The pid of PARENT's child once it is in a mount namespace of its own."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            kids = open(f"/proc/{parent.pid}/task/{parent.pid}/children").read().split()
        except OSError:
            kids = []
        for k in kids:
            try:
                if _mnt(int(k)) != _mnt(parent.pid) and \
                        open(f"/proc/{k}/comm").read().strip() == "sleep":
                    return int(k)
            except OSError:
                continue
        time.sleep(0.02)
    raise AssertionError("the child did not reach a mount namespace of its own")


@pytest.fixture
def under(tmp_path):
    """under(NAME): a process named NAME whose child sleeps in a new mount namespace;
    returns (parent, child pid).  Everything is killed afterwards."""
    started = []

    def start(name: str):
        exe = tmp_path / name
        shutil.copy("/bin/sh", exe)
        p = subprocess.Popen([str(exe), "-c", "unshare -m sleep 60; :"],
                             start_new_session=True)
        started.append(p)
        child = _wait_mnt_apart(p)
        started[-1] = (p, child)
        return p, child
    yield start
    for entry in started:
        p, child = entry if isinstance(entry, tuple) else (entry, None)
        try:
            if child is not None:
                os.kill(child, 9)       # reaped by its shell, which then ends
                p.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        if p.poll() is None:
            os.killpg(p.pid, 9)
        p.wait()


def _view(*pids: int) -> discover.ScanView:
    mnts: dict[int, list[int]] = {}
    for pid in (os.getpid(), *pids):
        mnts.setdefault(_mnt(pid), []).append(pid)
    return discover.ScanView(discover.Scan(), mnts)


def _own() -> dict[str, int]:
    return {"mnt": _mnt(os.getpid())}


def test_gate_opens_for_the_child_of_a_conmon_in_a_mount_namespace_apart(under):
    parent, child = under("conmon")
    assert engines.Podman().may_run(engines.monitors(_view(parent.pid, child), _own()))


@pytest.mark.parametrize("monitor, podman, k8s", [
    ("conmon", True, True),                      # podman, CRI-O
    ("conmonrs", True, True),                    # CRI-O's conmon-rs
    ("containerd-shim-runc-v2", False, True),    # containerd (comm: containerd-shim)
])
def test_each_engine_is_asked_for_its_own_monitor(under, monitor, podman, k8s):
    parent, child = under(monitor)
    found = engines.monitors(_view(parent.pid, child), _own())
    assert engines.Podman().may_run(found) is podman
    assert engines.K8s().may_run(found) is k8s
    assert engines.Docker().may_run(found)       # docker is asked over its socket, cheaply


def test_gate_stays_shut_for_any_other_parent(under):
    parent, child = under(f"{PFX}mon")            # not a conmon
    assert not engines.Podman().may_run(engines.monitors(_view(parent.pid, child), _own()))
    # a conmon in the shell's own mount namespace with no child apart: nothing runs
    assert not engines.Podman().may_run(engines.monitors(_view(), _own()))


def test_gate_with_a_conmon_whose_child_stays_in_its_namespace(tmp_path):
    exe = tmp_path / "conmon"
    shutil.copy("/bin/sh", exe)
    p = subprocess.Popen([str(exe), "-c", "sleep 60; :"], start_new_session=True)
    kids = []
    try:
        end = time.monotonic() + 10   # its child has become `sleep`
        while time.monotonic() < end:
            try:
                kids = open(f"/proc/{p.pid}/task/{p.pid}/children").read().split()
                if kids and open(f"/proc/{kids[0]}/comm").read() == "sleep\n":
                    break
            except OSError:
                pass
            time.sleep(0.01)
        assert not engines.Podman().may_run(engines.monitors(_view(p.pid), _own()))
    finally:
        for k in kids:                # reaped by its shell, which then ends
            os.kill(int(k), 9)
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, 9)
            p.wait()


def test_a_scan_that_did_not_look_at_mount_namespaces_asks_podman():
    view = discover.ScanView(discover.Scan(), None)
    assert view.pids("mnt") is None
    assert engines.monitors(view, _own()) is None
    assert engines.Podman().may_run(None) and engines.K8s().may_run(None)


def test_the_scan_hands_the_view_to_sources_that_ask_for_it(under):
    parent, child = under("conmon")
    got = []

    def source(session, scan):
        got.append(scan.pids("mnt"))
        return ()
    source.with_scan = True
    discover.NAME_SOURCES.append(source)
    try:
        discover.scan(types=None)
        discover.scan(types=[discover.nstypes.NET], mounts=False)
    finally:
        discover.NAME_SOURCES.remove(source)
    assert child in got[0][_mnt(child)]            # every process's mount namespace
    assert got[1] is None                          # not looked at: podman is asked


def _podman_calls(tmp_path, env_extra=None) -> int:
    """`nsshell -c ls` with a podman on PATH that counts its calls and lists nothing."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    log = tmp_path / "calls"
    fake = bindir / "podman"
    fake.write_text(f"#!/bin/sh\necho x >> {log}\necho '[]'\n")
    fake.chmod(0o755)
    env = {"PATH": f"{bindir}:{os.environ['PATH']}", "CONTAINERS_CONF": "/nonexistent",
           **(env_extra or {})}
    r = run_nsshell("-c", "ls net", env=env)
    assert r.rc == 0, r
    return len(log.read_text().splitlines()) if log.exists() else 0


def _conmons() -> list[int]:
    """Running conmons (not zombies: a dead one's parent may be slow to reap it)."""
    out = []
    for p in os.listdir("/proc"):
        try:
            if p.isdigit():
                st = open(f"/proc/{p}/stat").read()
                if st[st.index("(") + 1:st.rindex(")")] == "conmon" and \
                        st[st.rindex(")") + 2] not in "ZX":
                    out.append(int(p))
        except (OSError, ValueError):
            continue
    return out


def test_ls_forks_no_podman_while_no_container_runs(tmp_path, under):
    if _conmons():
        pytest.skip("a conmon runs on this machine (another test's container)")
    assert _podman_calls(tmp_path) == 0
    under("conmon")                                  # now one may run: podman is asked
    assert _podman_calls(tmp_path) == 1


@pytest.fixture
def slow_podman(tmp_path, monkeypatch):
    """A podman on PATH that takes 1 s to list nothing; its pid is written to a file."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    pidfile = tmp_path / "pid"
    fake = bindir / "podman"
    fake.write_text(f"#!/usr/bin/python3\nimport os, time\n"        # one process: killed, it
                    f"open('{pidfile}', 'w').write(str(os.getpid()))\n"  # leaves no child
                    "time.sleep(1)\nprint('[]')\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("CONTAINERS_CONF", "/nonexistent")   # podman "in use"
    return pidfile


def _wait_file(path, timeout=5.0) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            return int(path.read_text())
        except (OSError, ValueError):
            time.sleep(0.01)
    raise AssertionError(f"{path} was not written")


def test_podman_is_asked_at_once_and_read_when_the_names_are(under, slow_podman):
    """The scan calls the source as soon as the processes are read: `podman ps` runs
    while the rest of the scan does, and its answer is read at the end."""
    parent, child = under("conmon")
    t = time.monotonic()
    names = engines.names(None, _view(parent.pid, child))
    assert time.monotonic() - t < 0.8               # did not wait for the 1 s podman
    pid = _wait_file(slow_podman)
    assert os.path.exists(f"/proc/{pid}")           # running meanwhile
    assert list(names) == []                        # read: it listed nothing
    assert time.monotonic() - t >= 0.9


def test_what_was_begun_and_not_read_is_ended(under, slow_podman):
    parent, child = under("conmon")
    names = engines.names(None, _view(parent.pid, child))
    pid = _wait_file(slow_podman)
    names.close()
    assert not os.path.exists(f"/proc/{pid}")       # killed and reaped
    assert list(names) == []


def test_the_scan_ends_what_a_source_began_when_reading_it_fails():
    closed = []

    class Begun:
        def __iter__(self):
            raise RuntimeError("broken engine")

        def close(self):
            closed.append(True)

    def source(session, scan):
        return Begun()
    source.with_scan = True
    discover.NAME_SOURCES.append(source)
    try:
        discover.scan(types=[discover.nstypes.NET])  # a broken source never breaks ls
    finally:
        discover.NAME_SOURCES.remove(source)
    assert closed == [True]
