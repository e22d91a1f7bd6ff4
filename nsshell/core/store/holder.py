"""The detached holder of a persisted PID namespace's init, processes known by pid and
start time (so a recycled pid is never mistaken for them), and the proof that a
process is nsshell's holder before anything signals it.

A holder is provably nsshell's when all of these hold, read from the kernel (never
from a file a user could write): its comm is `nsshell-holder`, its start time is the
recorded one (checked after its pidfd is open, so the pid cannot be recycled under
us), it runs as the caller (or root), and it holds the write end of a pipe whose read
end the init holds, an init that is PID 1 of the persisted PID namespace (its
/proc/PID/ns/pid is the namespace bound in the store) with comm `nsshell-init`.
"""

from __future__ import annotations

import os
import select
import _signal

from ...errors import NsshellError
from ...kernel import procfs, syscalls
from ..proc import spawn
from ..ns.handle import InitHolder

HOLDER_COMM = "nsshell-holder"
INIT_COMM = "nsshell-init"


def start_time(pid: int) -> int | None:
    st = procfs.stat(pid)
    return st.starttime if st else None


def same_process(pid: int | None, start: int | None) -> bool:
    """Is PID still the process that started at START, and not a zombie?"""
    if not isinstance(pid, int) or pid <= 0 or not isinstance(start, int):
        return False
    st = procfs.stat(pid)
    return st is not None and st.alive and st.starttime == start


def _wait_exit(pidfd: int, timeout: float) -> bool:
    # poll, not select: a session holding over 1,024 fds gets pidfds past FD_SETSIZE.
    p = select.poll()
    p.register(pidfd, select.POLLIN)
    try:
        return bool(p.poll(int(timeout * 1000)))
    except InterruptedError:
        return False


def _comm(pid: int) -> str | None:
    """PID's command name exactly as the kernel keeps it (no stripping: a process named
    "nsshell-holder " is not nsshell's)."""
    st = procfs.stat(pid)
    return st.comm if st is not None else None


def _uid(pid: int) -> int | None:
    """PID's real uid (Uid of /proc/PID/status)."""
    uids = procfs.ints((procfs.status(pid) or {}).get("Uid"))
    return uids[0] if uids else None


def _pipes(pid: int) -> dict[int, int]:
    """{pipe inode: fd number} of the pipes process PID holds."""
    out = {}
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for n in names:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{n}")
        except OSError:
            continue
        if link.startswith("pipe:["):
            try:
                out[int(link[6:-1])] = int(n)
            except ValueError:
                pass
    return out


def proven_init(init: dict | None, pid_ino: int | None) -> bool:
    """Is INIT ({"pid", "start"}) a running nsshell init, PID 1 of the PID namespace PID_INO?"""
    if not isinstance(init, dict) or not isinstance(pid_ino, int):
        return False
    pid, start = init.get("pid"), init.get("start")
    if not same_process(pid, start) or _comm(pid) != INIT_COMM:
        return False
    try:
        if os.stat(f"/proc/{pid}/ns/pid").st_ino != pid_ino:
            return False
    except OSError:
        return False
    nspids = procfs.nspids(pid)
    return bool(nspids) and nspids[-1] == 1


def _open_holder(holder: dict | None) -> tuple[int, int] | None:
    """(pid, pidfd) of HOLDER ({"pid", "start"}) if it is that process, named
    nsshell-holder and run by the caller (or root); else None.  The caller closes the pidfd."""
    if not isinstance(holder, dict):
        return None
    pid, start = holder.get("pid"), holder.get("start")
    if not same_process(pid, start):
        return None
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    # checked after the pidfd is open: from here on it names this process, whatever
    # happens to the pid number
    if start_time(pid) != start or _comm(pid) != HOLDER_COMM or _uid(pid) not in (0, os.geteuid()):
        os.close(pidfd)
        return None
    return pid, pidfd


def open_proven_holder(holder: dict | None, init: dict | None,
                       pid_ino: int | None) -> tuple[int, int] | None:
    """(pidfd, lifeline fd number in the holder) of the holder HOLDER ({"pid", "start"}),
    only if it is provably nsshell's holder of INIT's lifeline (see the module's doc);
    else None.  The caller closes the pidfd."""
    got = _open_holder(holder)
    if got is None:
        return None
    pid, pidfd = got
    try:
        if not proven_init(init, pid_ino):
            raise LookupError
        mine = _pipes(pid)
        shared = set(mine) & set(_pipes(init["pid"]))
        if not shared:
            raise LookupError
        if not spawn.pidfd_alive(pidfd):
            raise LookupError
        return pidfd, mine[min(shared)]
    except LookupError:
        os.close(pidfd)
        return None


def stop(pidfd: int, timeout: float = 3.0) -> None:
    """SIGTERM the process of PIDFD (SIGKILL after TIMEOUT) and wait for it to go."""
    try:
        syscalls.pidfd_send_signal(pidfd, _signal.SIGTERM)
    except OSError:
        return
    if not _wait_exit(pidfd, timeout):
        try:
            syscalls.pidfd_send_signal(pidfd, _signal.SIGKILL)
        except OSError:
            return
        _wait_exit(pidfd, timeout)


def _stop_and_close(pidfd: int) -> bool:
    try:
        stop(pidfd)
        return True
    finally:
        os.close(pidfd)


def stop_proven_holder(holder: dict | None, init: dict | None, pid_ino: int | None) -> bool:
    """Stop HOLDER if it is provably nsshell's holder of INIT (see open_proven_holder)."""
    got = open_proven_holder(holder, init, pid_ino)
    return got is not None and _stop_and_close(got[0])


def stop_unconfirmed(holder: dict | None) -> bool:
    """Stop a holder recorded by a persist that was interrupted before binding its PID
    namespace: it is known by pid, start time, comm and uid only (it has not been told
    to stay, so it is on its way out by itself anyway)."""
    got = _open_holder(holder)
    return got is not None and _stop_and_close(got[1])


def take_lifeline(holder: dict | None, init: dict | None, pid_ino: int | None) -> int | None:
    """A lifeline of our own to the persisted init (a copy of its proven holder's), so
    that the namespace outlives `unpersist` while this session uses it; None if the
    holder cannot be proven or copied from (not root)."""
    got = open_proven_holder(holder, init, pid_ino)
    if got is None:
        return None
    pidfd, fd = got
    try:
        return syscalls.pidfd_getfd(pidfd, fd)
    except OSError:
        return None
    finally:
        os.close(pidfd)


def _holder_main(lifeline: int, init_pidfd: int | None, go: int) -> None:
    """The detached holder of a persisted PID namespace: waits to be told that it has
    been recorded (GO: a byte; EOF means the persist died first, so it leaves), then keeps
    the init's lifeline open until it is told to stop (unpersist) or the init is gone."""
    for sig in (_signal.SIGINT, _signal.SIGQUIT, _signal.SIGTSTP, _signal.SIGHUP, _signal.SIGPIPE):
        _signal.signal(sig, _signal.SIG_IGN)
    _signal.signal(_signal.SIGTERM, _signal.SIG_DFL)
    while True:
        try:
            if os.read(go, 1) != b"1":
                return
            break
        except InterruptedError:
            continue
    os.close(go)
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


class Holder:
    """A holder just started: (pid, start); `confirm()` once it is recorded."""

    def __init__(self, pid: int, start: int, go: int):
        self.pid, self.start, self._go = pid, start, go

    def confirm(self) -> None:
        os.write(self._go, b"1")
        self.close()

    def close(self) -> None:
        if self._go >= 0:
            os.close(self._go)
            self._go = -1


def start_holder(lifeline: int, init_pidfd: int | None) -> Holder:
    """Fork a detached `nsshell-holder` (own session, reparented away from the shell)
    that holds LIFELINE.  It stays only once `confirm()`ed: a persist killed before it
    recorded the holder leaves no holder running."""
    r, w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            spawn.harden.protect()  # it holds a PID namespace's init alive (core/proc/harden.py)
            os.close(go_w)
            os.setsid()
            if os.fork():
                os._exit(0)
            devnull = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            keep = {lifeline, w, go_r} | ({init_pidfd} if init_pidfd is not None else set())
            syscalls.close_fds_except(keep)
            os.chdir("/")
            syscalls.set_process_title(HOLDER_COMM)
            os.write(w, str(os.getpid()).encode())
            os.close(w)
            _holder_main(lifeline, init_pidfd, go_r)
        finally:
            os._exit(0)
    os.close(w)
    os.close(go_r)
    try:
        data = spawn.read_all(r)
    finally:
        os.close(r)
        spawn._wait(pid)
    if not data:
        os.close(go_w)
        raise NsshellError("the holder of the PID namespace's init did not start")
    hpid = int(data)
    return Holder(hpid, start_time(hpid) or 0, go_w)


class PersistedInit(InitHolder):
    """The init of a persisted PID namespace, known by pid and start time.  With a
    LIFELINE (a copy of its holder's, see take_lifeline) this session keeps it alive
    too; without one it is kept by a holder or the keeper, not by this shell."""

    __slots__ = ("init_pid", "start")

    def __init__(self, pid: int | None, start: int | None, pidfd: int | None = None,
                 lifeline: int | None = None):
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
        super().__init__(pidfd, lifeline)
        self.init_pid, self.start = pid, start

    def alive(self) -> bool:
        return self.pidfd is not None and self.pidfd >= 0 and spawn.pidfd_alive(self.pidfd)
