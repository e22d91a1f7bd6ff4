"""The small /proc readers behind `ls`'s columns read what lsns reads, in fewer calls."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from nsshell.core.look import discover


@pytest.mark.parametrize("n", [0, 10, 4000, 4096, 4200, 8200, 12000])
def test_command_is_the_cmdline_as_lsns_shows_it_up_to_8_kib(n):
    """One read returns what the kernel has (a short read is the end), up to 8 KiB."""
    p = subprocess.Popen(["sh", "-c", "sleep 30", "x" * n, "tail"])
    try:
        end = time.monotonic() + 5
        while open(f"/proc/{p.pid}/cmdline", "rb").read()[:2] != b"sh" and time.monotonic() < end:
            time.sleep(0.01)
        want = open(f"/proc/{p.pid}/cmdline", "rb").read()[:8192]
        got = discover.command_of(p.pid)
        assert got == want.replace(b"\0", b" ")[:-1].decode()
        assert len(got) == min(len(want), 8192) - 1
    finally:
        p.kill()
        p.wait()


def test_command_falls_back_to_comm_and_a_gone_process_has_none():
    kernel = [pid for pid in (2, 3) if open(f"/proc/{pid}/cmdline", "rb").read() == b""]
    for pid in kernel:   # a kernel thread: no command line, lsns shows its comm
        assert discover.command_of(pid) == open(f"/proc/{pid}/comm").read()[:-1]
    p = subprocess.Popen(["sleep", "0"])
    p.wait()
    assert discover.command_of(p.pid) is None
    assert discover.command_of(None) is None


def test_ls_imports_no_subprocess_or_tempfile():
    """`ls` looks for a keeper (core/store/keeper.py) without importing what only
    starting one needs, and asks podman (a subprocess) only when a container may run."""
    from test_containers_gate import _conmons
    from test_imports import imported
    mods = imported("--json", "-c", "ls")
    assert "nsshell.core.store.keeper" in mods and "nsshell.commands.inspect" in mods
    assert "tempfile" not in mods and "shutil" not in mods
    if not _conmons():
        assert "subprocess" not in mods


def test_plain_ls_imports_no_json_when_no_engine_answers():
    """The containers plugin imports json only to read an engine's answer (the k8s
    runtimes' state directories are read only while a conmon or shim runs)."""
    from test_containers_gate import _conmons
    from test_imports import imported
    from nsshell_containers import engines
    if _conmons() or os.path.exists(engines.docker_socket()) or _shims():
        pytest.skip("a container engine may answer here")
    mods = imported("-c", "ls")
    assert "nsshell_containers.engines" in mods and "json" not in mods


def _shims() -> bool:
    for p in os.listdir("/proc"):
        try:
            if p.isdigit() and open(f"/proc/{p}/comm").read().startswith("containerd-shim"):
                return True
        except OSError:
            continue
    return False


def test_cpu_pressure_is_read_from_psi(tmp_path):
    f = tmp_path / "cpu"
    f.write_text("some avg10=12.50 avg60=3.00 avg300=1.00 total=123\n"
                 "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    assert discover._cpu_pressure(str(f)) == 12.5
    f.write_text("garbage\n")
    assert discover._cpu_pressure(str(f)) is None
    assert discover._cpu_pressure(str(tmp_path / "none")) is None
    if os.path.exists("/proc/pressure/cpu"):   # this kernel's, as the scan reads it
        assert 0.0 <= discover._cpu_pressure() <= 100.0


def test_the_reader_is_forked_only_with_a_cpu_to_spare(monkeypatch):
    monkeypatch.setattr(discover, "_cpu_pressure", lambda: 60.0)
    assert not discover._cpu_to_spare()
    monkeypatch.setattr(discover, "_cpu_pressure", lambda: 2.0)
    assert discover._cpu_to_spare() is ((os.cpu_count() or 1) >= 2)
