"""The creator: a long-lived helper that makes namespaces for `new`, at the kernel's pace.

Forking the shell for every `new` costs milliseconds (the shell is a large Python
process; the child then enters the context, unshares, opens and answers); the
kernel's part of `new net` is about a quarter of a millisecond.  So the first
`new` in a run of them forks ONE small helper, `nsshell-create`, that enters the
context once and then, per request: unshare()s, makes / private in a new mount
namespace (as unshare(1)), opens the new namespaces through the shell's /proc,
setns()es back into the context (its "home") and hands the fds back over the one
helper channel (core/proc/channel.py, JSON: nothing is imported or pickled on the
hot path).

What it makes: namespaces of the types it can leave again -- net, uts, ipc, mnt,
cgroup -- each checked once at start-up by entering its home (a rootless context
whose network namespace belongs to the host cannot be re-entered, for example:
then those types are not offered).  A user namespace (the helper could not leave
it), a PID namespace (it needs an init of its own) and a time namespace (offsets
are written by the creating process, before anything enters) are made by a forked
helper as before (core/ns/create.py).  A request the creator refuses (an errno)
is made again by the forked helper, whose error is today's, word for word.

Invariants, each tested in tests/test_creator.py:
- the shell never calls setns()/unshare(): the creator does;
- it is never inside a context it was not asked into: between requests it is in
  its home, the context's namespaces, and one that cannot go home ends at once;
- nothing stale: it lives only while consecutive `new`s use it: the engine drops
  it before any other command (`map`, `join`, `ls` ...) and when a batch or a
  typed line ends, and a `new` in another context (key: the context's namespaces,
  the root setting) replaces it;
- nothing is left when the shell ends: the channel is its lifeline (EOF ends it)
  and PR_SET_PDEATHSIG kills it when the shell is killed;
- it is not dumpable (harden.protect) and holds only its channel, the shell's /proc
  and its home fds (no handle of the shell stays alive through it).
"""

from __future__ import annotations

import atexit
import os
import _signal

from ...kernel import nsfs, nstypes, syscalls
from ..proc import harden, spawn

TYPE_CHECKING = False   # typing is not imported to start (tests/test_imports.py)
if TYPE_CHECKING:
    from typing import Sequence

# The types the creator makes (those it can setns() back out of, into its home).
TYPES = ("net", "uts", "ipc", "mnt", "cgroup")

# Those whose new namespace starts empty, whatever the current one is (net: only lo;
# ipc: no objects); uts, mnt and cgroup copy the current one's host name, mounts, root.
FRESH = ("net", "ipc")

_MAXFDS = len(TYPES)


def _key(entries: Sequence[spawn.Entry], root: bool) -> tuple:
    return tuple((e.nstype.name, e.label, e.fd) for e in entries) + (root,)


# --- inside the helper ---------------------------------------------------------------

def _serve(entries: Sequence[spawn.Entry], root: bool, sock, parent: int) -> None:
    harden.protect()  # it sits in the context: the inside must not drive it
    syscalls.prctl(syscalls.PR_SET_PDEATHSIG, _signal.SIGKILL)
    if os.getppid() != parent:
        return  # the shell died before the line above: nothing to serve
    os.setsid()  # Ctrl-C at the shell's terminal is not for it
    syscalls.set_process_title("nsshell-create")
    from ..proc import channel  # (its imports were made before the fork)
    # The shell's /proc, opened before entering: the context's mount namespace may have
    # another proc on /proc (a PID namespace's, without this process), or none.
    proc = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        spawn.enter(entries, root=root)
    except Exception as exc:  # noqa: BLE001 - said to the shell, which falls back
        channel.send(sock, ["err", str(exc)])
        return
    home: dict[int, int] = {}  # flag -> fd on the namespace to come back to
    for name in TYPES:
        t = nstypes.BY_NAME[name]
        fd = nsfs.open_proc_ns("self", t, proc_fd=proc)
        try:
            syscalls.setns(fd, t.flag)  # can it come back here after making one?
        except OSError:
            os.close(fd)
            fd = _own_home(t, proc)
            if fd is None:
                continue
        home[t.flag] = fd
    # Hold nothing of the shell's: its channel, the shell's /proc and the home fds only.
    syscalls.close_fds_except({sock.fileno(), proc, *home.values()})
    channel.send(sock, ["ok", sorted(home)])
    fresh = 0
    for name in FRESH:
        fresh |= nstypes.BY_NAME[name].flag
    spare = None  # (request, fds): made ahead while the shell reads the last answer
    served = 0
    while True:
        try:
            request, _ = channel.recv(sock, maxsize=4096)
        except EOFError:
            return  # the shell closed its end (or is gone)
        flags, order, propagation = request
        if spare is not None and spare[0] == request:
            err, lost, fds = 0, False, spare[1]
        else:
            if spare is not None:
                channel.close_all(spare[1])
            err, lost, fds = _make(flags, order, propagation, home, proc)
        spare = None
        try:
            channel.send(sock, [err, lost], fds)
        finally:
            channel.close_all(fds)
        if lost:
            return
        served += 1
        if not err and not flags & ~fresh and served > 1:
            # After two alike, the next `new` of a batch is most likely the same: make it
            # now, on the other CPU, while the shell reads this answer.  Only for types whose new namespace
            # copies nothing (net: only lo; ipc: empty), so one made ahead is exactly the
            # one made on request; dropped unused with the creator.
            err, lost, fds = _make(flags, order, propagation, home, proc)
            if lost:
                channel.close_all(fds)
                return
            if not err:
                spare = (request, fds)


def _make(flags: int, order: list[int], propagation: int, home: dict[int, int],
          proc: int) -> tuple[int, bool, list[int]]:
    """unshare FLAGS, open the new namespaces (ORDER: their flags) and go home:
    (errno or 0, whether it could not go home, the fds)."""
    fds: list[int] = []
    err = 0
    lost = False
    try:
        syscalls.unshare(flags)
    except OSError as e:
        return e.errno or 22, False, fds
    try:
        if flags & nstypes.CLONE_NEWNS and propagation:
            # As unshare(1): nothing mounted in the new namespace may reach the host.
            syscalls.mount("none", "/", None, syscalls.MS_REC | propagation)
        for flag in order:
            fds.append(nsfs.open_proc_ns("self", nstypes.BY_FLAG[flag], proc_fd=proc))
    except OSError as e:
        err = e.errno or 22
        for fd in fds:
            os.close(fd)
        fds = []
    for flag in order:
        try:
            syscalls.setns(home[flag], flag)
        except OSError:
            lost = True  # not home: answer, then end (never stay in a new one)
    return err, lost, fds


def _own_home(t: nstypes.NsType, proc: int) -> int | None:
    """A home of its own for a type whose new namespaces copy nothing from the current
    one (net, ipc), when the context's cannot be re-entered (a rootless creator in a
    user namespace of its own, the network namespace the host's): a fresh, empty one,
    made once, as the rootless socket opener does (core/ns/nssocket.py).  What it
    makes is then what the forked helper makes: the same owner, the same empty start."""
    if t.name not in FRESH:
        return None
    try:
        syscalls.unshare(t.flag)
        return nsfs.open_proc_ns("self", t, proc_fd=proc)
    except OSError:
        return None


# --- in the shell ----------------------------------------------------------------------

class Creator:
    """One creator, started in the context ENTRIES (as `root` says: its user namespace's
    root when it maps one)."""

    def __init__(self, entries: Sequence[spawn.Entry], root: bool) -> None:
        # What the channel imports where used, imported before the fork: after entering,
        # a pivoted mount namespace may have no Python library to import from.
        import array  # noqa: F401
        import json  # noqa: F401 - the channel's codec
        from ..proc import channel
        self.key = _key(entries, root)
        self.owner = os.getpid()  # a forked child of the shell must not use the channel
        parent_sock, child_sock = channel.socketpair()
        me = os.getpid()
        pid = os.fork()
        if pid == 0:  # the creator: never returns
            try:
                parent_sock.close()
                _serve(entries, root, child_sock, me)
            except BaseException:  # noqa: BLE001
                pass
            finally:
                os._exit(0)
        child_sock.close()
        self.pid: int | None = pid
        self.sock = parent_sock
        self.flags = 0  # what it can make
        self.useless = False  # started and could make nothing: not started again
        try:
            (kind, value), _ = channel.recv(self.sock, maxsize=4096)
        except BaseException:
            self.close()
            raise
        if kind == "ok":
            for flag in value:
                self.flags |= flag
        if not self.flags:
            self.close()  # nothing it could make here: `new` forks as before, this batch
            self.useless = True

    def can(self, types: Sequence[nstypes.NsType]) -> bool:
        return self.sock is not None and all(t.flag & self.flags for t in types)

    def make(self, types: Sequence[nstypes.NsType], propagation: int) -> list[int] | None:
        """fds on new namespaces of TYPES (in that order); None when the creator refused
        or is gone (the caller makes them the slow way, which says why)."""
        from ..proc import channel
        flags = 0
        for t in types:
            flags |= t.flag
        try:
            channel.send(self.sock, [flags, [t.flag for t in types], propagation])
            (err, lost), fds = channel.recv(self.sock, maxfds=_MAXFDS, maxsize=4096)
        except (OSError, channel.ChannelError):
            self.close()
            return None
        except BaseException:  # Ctrl-C half way: the answer could reach the next request
            self.close()
            raise
        if lost:
            self.close()  # it could not go home: it has ended; wait for it
        if err or len(fds) != len(types):
            channel.close_all(fds)
            return None
        return fds

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()  # its lifeline: EOF ends it
            self.sock = None
        if self.pid is not None:
            spawn._wait(self.pid)
            self.pid = None


_CURRENT: list[Creator] = []  # at most one: the creator of the context of the last `new`


def creator_for(entries: Sequence[spawn.Entry], root: bool, start: bool = True) -> Creator | None:
    """The creator of the context ENTRIES (one started unless not START: None then; any
    other one ended)."""
    key = _key(entries, root)
    if _CURRENT:
        c = _CURRENT[0]
        if c.owner == os.getpid() and c.key == key and (c.sock is not None or c.useless):
            return c
        drop()
    if not start:
        return None
    c = Creator(entries, root)
    _CURRENT.append(c)
    return c


def running() -> bool:
    return bool(_CURRENT)


def drop() -> None:
    """End the creator (before any command but `new`, at the end of a batch, at exit)."""
    while _CURRENT:
        c = _CURRENT.pop()
        if c.owner == os.getpid():
            c.close()


def pid() -> int | None:
    """The running creator's pid (tests)."""
    return _CURRENT[0].pid if _CURRENT else None


atexit.register(drop)
