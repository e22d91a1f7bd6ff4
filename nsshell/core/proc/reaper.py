"""The init (reaper) of a PID namespace: `nsshell-init`.

A PID namespace is usable only while its first process lives; when it dies the
kernel kills everything in it and later forks fail.  So `new pid` forks this
init right after unshare(CLONE_NEWPID) (in the helper that made the namespace):
it reaps orphans, holds nothing but its lifeline, and leaves when the shell's
end of the lifeline closes (handle closed, shell gone), ending the namespace.
"""

from __future__ import annotations

import os
import select
import _signal

from ...errors import from_oserror
from ...kernel import syscalls
from . import harden


def _reaper(lifeline: int) -> None:
    """PID 1 of a namespace: reap orphans until the shell's end of LIFELINE closes."""
    wake_r, wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
    _signal.set_wakeup_fd(wake_w)
    _signal.signal(_signal.SIGCHLD, lambda *_: None)
    for sig in (_signal.SIGINT, _signal.SIGQUIT, _signal.SIGTSTP, _signal.SIGHUP):
        _signal.signal(sig, _signal.SIG_IGN)
    _signal.signal(_signal.SIGTERM, _signal.SIG_DFL)
    poller = select.poll()
    poller.register(lifeline, select.POLLIN | select.POLLHUP)
    poller.register(wake_r, select.POLLIN)
    while True:
        try:
            events = poller.poll()
        except InterruptedError:
            events = []
        for fd, ev in events:
            if fd == lifeline and ev & (select.POLLHUP | select.POLLIN | select.POLLERR):
                return
            if fd == wake_r:
                try:
                    os.read(wake_r, 512)
                except BlockingIOError:
                    pass
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break


def start_init(lifeline: int, mount_proc: bool = False, name: str = "nsshell-init") -> int:
    """Fork the init (reaper) of a PID namespace just unshared; return its pidfd.

    The init keeps only LIFELINE: it leaves when the holder of the other end
    closes it (handle closed, shell gone), and the kernel then ends the namespace.
    With MOUNT_PROC it mounts the namespace's proc on /proc first, and this
    returns only once that is done, so the next `run` already sees it.
    """
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC) if mount_proc else (-1, -1)
    pid = os.fork()
    if pid == 0:
        try:
            harden.protect()  # PID 1 of the namespace: its root must not ptrace it
            devnull = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            syscalls.close_fds_except({lifeline, ready_w})
            os.setsid()  # no terminal: Ctrl-C at the shell's terminal must not reach it
            syscalls.set_process_title(name)
            if mount_proc:
                try:
                    syscalls.mount("proc", "/proc", "proc",
                                   syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)
                except OSError as err:
                    os.write(ready_w, str(err.errno).encode())
                    os._exit(1)
                os.close(ready_w)
            _reaper(lifeline)
        finally:
            os._exit(0)
    pidfd = syscalls.pidfd_open(pid)
    if mount_proc:
        os.close(ready_w)
        with os.fdopen(ready_r, "rb") as ready:
            failure = ready.read()
        if failure:
            os.close(pidfd)
            code = int(failure)
            raise from_oserror(OSError(code, os.strerror(code)),
                               "mounting proc on /proc in the new PID namespace")
    return pidfd
