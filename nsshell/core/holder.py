"""The detached holder of a persisted PID namespace's init, and processes known by
pid and start time (so a recycled pid is never mistaken for them)."""

from __future__ import annotations

import os
import select
import signal

from ..errors import NsshellError
from ..kernel import syscalls
from . import spawn
from .handle import InitHolder

HOLDER_COMM = "nsshell-holder"


def stat_fields(pid: int) -> list[bytes] | None:
    """/proc/PID/stat after the command name: [state, ppid, ...] (field 3 on), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(b")") + 2:].split()


def start_time(pid: int) -> int | None:
    fields = stat_fields(pid)
    try:
        return int(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None


def same_process(pid: int | None, start: int | None) -> bool:
    """Is PID still the process that started at START, and not a zombie?"""
    if not pid or start is None:
        return False
    fields = stat_fields(pid)
    try:
        return bool(fields) and fields[0] not in (b"Z", b"X") and int(fields[19]) == start
    except (IndexError, ValueError):
        return False


def kill_verified(pid: int | None, start: int | None, timeout: float = 3.0) -> bool:
    """SIGTERM the process PID if it is still the one that started at START; wait for it."""
    if not same_process(pid, start):
        return False
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        if start_time(pid) != start:
            return False
        syscalls.pidfd_send_signal(pidfd, signal.SIGTERM)
        r, _, _ = select.select([pidfd], [], [], timeout)
        if not r:
            syscalls.pidfd_send_signal(pidfd, signal.SIGKILL)
            select.select([pidfd], [], [], timeout)
        return True
    except OSError:
        return False
    finally:
        os.close(pidfd)


def _holder_main(lifeline: int, init_pidfd: int | None) -> None:
    """The detached holder of a persisted PID namespace: keeps the init's lifeline
    open until it is told to stop (unpersist) or the init is gone."""
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    poller = select.poll()
    if init_pidfd is not None:
        poller.register(init_pidfd, select.POLLIN)
    while True:
        try:
            events = poller.poll()
        except InterruptedError:
            continue
        if events:
            return


def start_holder(lifeline: int, init_pidfd: int | None) -> tuple[int, int]:
    """Fork a detached `nsshell-holder` (own session, reparented away from the shell)
    that holds LIFELINE; return (pid, start time)."""
    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            spawn.harden.protect()  # it holds a PID namespace's init alive (core/harden.py)
            os.setsid()
            if os.fork():
                os._exit(0)
            devnull = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            keep = {lifeline, w} | ({init_pidfd} if init_pidfd is not None else set())
            syscalls.close_fds_except(keep)
            os.chdir("/")
            syscalls.set_process_title(HOLDER_COMM)
            os.write(w, str(os.getpid()).encode())
            os.close(w)
            _holder_main(lifeline, init_pidfd)
        finally:
            os._exit(0)
    os.close(w)
    try:
        data = spawn.read_all(r)
    finally:
        os.close(r)
        spawn._wait(pid)
    if not data:
        raise NsshellError("the holder of the PID namespace's init did not start")
    hpid = int(data)
    return hpid, start_time(hpid) or 0


class PersistedInit(InitHolder):
    """The init of a persisted PID namespace, known by pid and start time (no lifeline:
    it is kept by a holder or the keeper, not by this shell)."""

    __slots__ = ("init_pid", "start")

    def __init__(self, pid: int | None, start: int | None, pidfd: int | None = None):
        if pidfd is None:
            pidfd = -1
            if same_process(pid, start):
                try:
                    pidfd = os.pidfd_open(pid)
                    if start_time(pid) != start:
                        os.close(pidfd)
                        pidfd = -1
                except OSError:
                    pidfd = -1
        super().__init__(pidfd, None)
        self.init_pid, self.start = pid, start

    def alive(self) -> bool:
        return self.pidfd is not None and self.pidfd >= 0 and spawn.pidfd_alive(self.pidfd)
