"""Sockets opened inside a network namespace and handed back to the shell.

A socket belongs for its whole life to the network namespace it was created
in, so the shell can use it from its own namespaces afterwards (this is how
netlink operations on another namespace run without the shell ever calling
setns()).

Two ways to get one:
- the opener: one long-lived, single-threaded helper forked on first use.  It
  receives a namespace fd over SCM_RIGHTS, setns()es into it (a network
  namespace may be entered again and again), creates the socket and sends it
  back: one round trip, no fork per namespace.  It is used when the shell may
  enter the namespace without joining a user namespace (root).
- a forked helper (spawn.call) that also enters the user namespace owning the
  target, for an unprivileged shell acting in namespaces it created.
"""

from __future__ import annotations

import array
import atexit
import os
import signal
import socket
import struct

from ..errors import KernelError, from_oserror
from ..kernel import nsfs, nstypes, syscalls
from . import spawn

_REQ = struct.Struct("=iii")   # family, type, proto (+ the namespace fd)
_REP = struct.Struct("=i")     # errno, 0 when the socket is attached


class _Opener:
    def __init__(self) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # the opener: never returns
            try:
                parent.close()
                _serve(child)
            finally:
                os._exit(0)
        child.close()
        self.pid = pid
        self.owner = os.getpid()  # a forked child of the shell must not share the channel
        self.sock = parent

    def open(self, nsfd: int, family: int, type_: int, proto: int) -> int:
        try:
            self.sock.sendmsg([_REQ.pack(family, type_, proto)],
                              [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [nsfd]))])
            data, anc, _, _ = self.sock.recvmsg(_REP.size, socket.CMSG_SPACE(4),
                                                socket.MSG_CMSG_CLOEXEC)
        except BaseException:
            # Interrupted half way (Ctrl-C), the answer could reach the next request: end
            # this opener; the next call starts a fresh one.
            self.close()
            raise
        if len(data) < _REP.size:
            raise EOFError("the socket opener exited")
        fds = array.array("i")
        for level, kind, raw in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(raw[:len(raw) - len(raw) % 4])
        (err,) = _REP.unpack(data)
        if err:
            for fd in fds:
                os.close(fd)
            raise OSError(err, os.strerror(err))
        return fds[0]

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass


def _serve(sock: socket.socket) -> None:
    syscalls.close_fds_except({sock.fileno()})
    os.setsid()  # Ctrl-C at the shell's terminal is not for it
    try:
        syscalls.prctl(syscalls.PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass
    syscalls.set_process_title("nsshell-sockets")
    # Back home after each socket: sitting in a namespace would keep it alive after `close`.
    home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    while True:
        fds = array.array("i")
        try:
            data, anc, _, _ = sock.recvmsg(_REQ.size, socket.CMSG_SPACE(4))
        except InterruptedError:
            continue
        if not data:
            return  # the shell closed its end
        for level, kind, raw in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(raw[:len(raw) - len(raw) % 4])
        if not fds:
            sock.send(_REP.pack(22))
            continue
        family, type_, proto = _REQ.unpack(data)
        made = None
        try:
            syscalls.setns(fds[0], nstypes.CLONE_NEWNET)
            made = socket.socket(family, type_ | socket.SOCK_CLOEXEC, proto)
            sock.sendmsg([_REP.pack(0)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                            array.array("i", [made.fileno()]))])
        except OSError as e:
            sock.send(_REP.pack(e.errno or 22))
        finally:
            for fd in fds:
                os.close(fd)
            if made is not None:
                made.close()
            try:
                syscalls.setns(home, nstypes.CLONE_NEWNET)
            except OSError:
                return  # cannot go home: end, the shell starts another opener when needed


_OPENER: _Opener | None = None


def _opener() -> _Opener:
    global _OPENER
    if _OPENER is not None and (_OPENER.owner != os.getpid() or _OPENER.sock is None):
        _OPENER = None  # inherited through fork (the shell's, not ours), or closed
    if _OPENER is None:
        _OPENER = _Opener()
        atexit.register(_close_opener)
    return _OPENER


def _close_opener() -> None:
    global _OPENER
    if _OPENER is not None and _OPENER.owner == os.getpid():
        _OPENER.close()
        _OPENER = None


def _open_in_helper(family: int, type_: int, proto: int) -> spawn.Handoff:
    s = socket.socket(family, type_ | socket.SOCK_CLOEXEC, proto)
    return spawn.Handoff(None, [s.detach()])


def _own_userns():
    return nsfs.nsid_of_path("/proc/self/ns/user", "user")


_OWN_NET: dict = {}


def _own_netns():
    pid = os.getpid()
    if pid not in _OWN_NET:
        _OWN_NET.clear()
        _OWN_NET[pid] = nsfs.nsid_of_path("/proc/self/ns/net", "net")
    return _OWN_NET[pid]


def socket_in(handle, family: int, type_: int, proto: int = 0) -> int:
    """An fd of a new socket created inside HANDLE's network namespace (the caller owns it)."""
    if handle.type is not nstypes.NET:
        raise KernelError(f"{handle.label} is not a network namespace")
    handle.check_usable()
    what = f"opening a socket in {handle.label}"
    if handle.nsid == _own_netns():
        # The shell's own network namespace (it never leaves it): no helper, no privilege.
        try:
            return socket.socket(family, type_ | socket.SOCK_CLOEXEC, proto).detach()
        except OSError as e:
            raise from_oserror(e, what) from None
    if os.geteuid() == 0:
        try:
            return _opener().open(handle.fd, family, type_, proto)
        except PermissionError:
            pass  # owned by a user namespace whose root we must become: the slow way
        except (EOFError, BrokenPipeError, ConnectionResetError):
            _close_opener()  # it died: the next call starts another; this one forks a helper
        except OSError as e:
            raise from_oserror(e, what) from None
    entries = [handle.entry()]
    owner_fd = None
    try:
        try:
            owner_fd = nsfs.owner_userns_fd(handle.fd)
        except OSError:
            owner_fd = None
        if owner_fd is not None and nsfs.nsid_of_fd(owner_fd, "user") != _own_userns():
            owner = nsfs.nsid_of_fd(owner_fd, "user")
            entries.append(spawn.Entry(nstypes.USER, owner_fd, str(owner)))
        _, fds = spawn.call(entries, _open_in_helper, family, type_, proto)
    finally:
        if owner_fd is not None:
            os.close(owner_fd)
    if not fds:
        raise KernelError(f"{what}: the helper gave no socket back")
    return fds[0]
