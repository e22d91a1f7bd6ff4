"""Sockets opened inside a network namespace and handed back to the shell.

A socket belongs for its whole life to the network namespace it was created
in, so the shell can use it from its own namespaces afterwards (this is how
netlink operations on another namespace run without the shell ever calling
setns()).

Two ways to get one:
- an opener: a long-lived, single-threaded helper forked on first use.  It
  receives a namespace fd over SCM_RIGHTS, setns()es into it (a network
  namespace may be entered again and again), creates the socket and sends it
  back: one round trip, no fork per namespace.  Root's opener stays in the
  shell's namespaces.  For an unprivileged shell acting in namespaces it
  created, one opener per owning user namespace joins that user namespace
  (where it holds every capability) and makes a network namespace of its own
  there to return to between requests.
- a forked helper (spawn.call) that also enters the user namespace owning the
  target: the way when no opener can do it (it then says why).
"""

from __future__ import annotations

import atexit
import errno
import os
import _signal
import socket

from ...errors import KernelError, from_oserror
from ...kernel import nsfs, nstypes, syscalls
from ..proc import channel, harden, spawn
from .handle import CLOSE_HOOKS

# The wire (core/proc/channel.py, JSON: the opener sits in namespaces it serves, so the
# shell decodes nothing that could run code): [family, type, proto] with the namespace fd;
# the answer {"errno": 0} with the socket, or {"errno": N}.
_MAX = 4096


class _Opener:
    def __init__(self, userns_fd: int | None = None) -> None:
        import array, json  # noqa: E401,F401 - what the channel loads, before the opener closes fds
        parent, child = channel.socketpair()
        pid = os.fork()
        if pid == 0:  # the opener: never returns
            try:
                harden.protect()  # it sits in the namespaces it serves
                parent.close()
                if userns_fd is not None:
                    # In the user namespace that owns the targets, with a network namespace
                    # of its own to come home to (it could not re-enter the shell's).
                    syscalls.setns(userns_fd, nstypes.CLONE_NEWUSER)
                    syscalls.unshare(nstypes.CLONE_NEWNET)
                    harden.protect()  # again, after the credentials changed
                _serve(child)
            finally:
                os._exit(0)
        child.close()
        self.pid = pid
        self.owner = os.getpid()  # a forked child of the shell must not share the channel
        self.sock = parent

    def open(self, nsfd: int, family: int, type_: int, proto: int) -> int:
        try:
            channel.send(self.sock, [family, type_, proto], [nsfd])
            reply, fds = channel.recv(self.sock, maxfds=1, maxsize=_MAX)
        except BaseException:
            # Interrupted half way (Ctrl-C), the answer could reach the next request: end
            # this opener; the next call starts a fresh one.
            self.close()
            raise
        err = reply.get("errno") if isinstance(reply, dict) else None
        if not isinstance(err, int) or (err == 0) != (len(fds) == 1):
            channel.close_all(fds)
            self.close()
            raise channel.BadFrame(f"the socket opener answered {reply!r}")
        if err:
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
        syscalls.prctl(syscalls.PR_SET_PDEATHSIG, _signal.SIGKILL)
    except OSError:
        pass
    syscalls.set_process_title("nsshell-sockets")
    # Back home after each socket: sitting in a namespace would keep it alive after `close`.
    home = nsfs.open_proc_ns("self", nstypes.NET)
    while True:
        try:
            req, fds = channel.recv(sock, maxfds=1, maxsize=_MAX)
        except InterruptedError:
            continue
        except channel.PeerGone:
            return  # the shell closed its end
        except channel.ChannelError:
            channel.send(sock, {"errno": errno.EINVAL})
            return  # out of step with the shell: end, it starts another opener
        made = None
        try:
            if (len(fds) != 1 or not isinstance(req, list) or len(req) != 3
                    or not all(type(v) is int for v in req)):
                raise OSError(errno.EINVAL, "a bad request")
            family, type_, proto = req
            syscalls.setns(fds[0], nstypes.CLONE_NEWNET)
            made = socket.socket(family, type_ | socket.SOCK_CLOEXEC, proto)
            channel.send(sock, {"errno": 0}, [made.fileno()])
        except OSError as e:
            channel.send(sock, {"errno": e.errno or errno.EINVAL})
        finally:
            channel.close_all(fds)
            if made is not None:
                made.close()
            try:
                syscalls.setns(home, nstypes.CLONE_NEWNET)
            except OSError:
                return  # cannot go home: end, the shell starts another opener when needed


# The openers by the user namespace they are in: None for root's (the shell's own).
_OPENERS: dict = {}


def _opener(key=None, userns_fd: int | None = None) -> _Opener:
    opener = _OPENERS.get(key)
    if opener is not None and (opener.owner != os.getpid() or opener.sock is None):
        opener = None  # inherited through fork (the shell's, not ours), or closed
    if opener is None:
        opener = _OPENERS[key] = _Opener(userns_fd)
    return opener


def _close_opener(key=None) -> None:
    opener = _OPENERS.pop(key, None)
    if opener is not None and opener.owner == os.getpid():
        opener.close()


def _close_openers() -> None:
    for key in list(_OPENERS):
        _close_opener(key)


atexit.register(_close_openers)  # costs nothing when no opener was started


def _userns_closing(handle) -> None:
    """An opener sitting in a user namespace would keep it alive after its handle closes."""
    if handle.type is nstypes.USER and handle.nsid in _OPENERS:
        _close_opener(handle.nsid)


CLOSE_HOOKS.add(_userns_closing)


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
        fd = _via_opener(None, None, handle, family, type_, proto, what)
        if fd is not None:
            return fd
    entries = [handle.entry()]
    owner_fd = None
    try:
        try:
            owner_fd = nsfs.owner_userns_fd(handle.fd)
        except OSError:
            owner_fd = None
        if owner_fd is not None and nsfs.nsid_of_fd(owner_fd, "user") != _own_userns():
            owner = nsfs.nsid_of_fd(owner_fd, "user")
            fd = _via_opener(owner, owner_fd, handle, family, type_, proto, what)
            if fd is not None:
                return fd
            entries.append(spawn.Entry(nstypes.USER, owner_fd, str(owner)))
        # No opener could: a helper of its own, whose error says why.
        _, fds = spawn.call(entries, _open_in_helper, family, type_, proto)
    finally:
        if owner_fd is not None:
            os.close(owner_fd)
    if not fds:
        raise KernelError(f"{what}: the helper gave no socket back")
    return fds[0]


def _via_opener(key, userns_fd: int | None, handle, family: int, type_: int, proto: int,
                what: str) -> int | None:
    """A socket from the opener KEY (started in USERNS_FD's user namespace if need be);
    None when it may not enter HANDLE's namespace, or died: the caller forks a helper."""
    try:
        return _opener(key, userns_fd).open(handle.fd, family, type_, proto)
    except PermissionError:
        return None  # owned by a user namespace whose root we must become
    except (channel.ChannelError, BrokenPipeError, ConnectionResetError):
        _close_opener(key)  # it died (or could not start): the next call starts another
        return None
    except OSError as e:
        raise from_oserror(e, what) from None

