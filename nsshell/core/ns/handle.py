"""Handles: one owned O_CLOEXEC nsfs fd each, with identity and metadata; and sets of them."""

from __future__ import annotations

import os

from ...errors import StaleError
from ...hooks import Hooks
from ...kernel import nstypes
from ...kernel.nsfs import NsId, nsid_of_fd, open_ns, open_proc_ns, type_of_fd
from ...kernel.nstypes import NsType
from ..proc import spawn


class InitHolder:
    """The init (reaper) process that keeps a PID namespace usable.

    The shell holds the write end of a pipe (its lifeline) and a pidfd; closing
    the lifeline makes the init exit, and the kernel then ends the namespace.
    """

    __slots__ = ("pidfd", "lifeline", "__weakref__")

    def __init__(self, pidfd: int, lifeline: int | None):
        self.pidfd = pidfd
        self.lifeline = lifeline

    def alive(self) -> bool:
        return spawn.pidfd_alive(self.pidfd)

    @property
    def pid(self) -> int | None:
        return spawn.pidfd_pid(self.pidfd)

    def close(self) -> None:
        for fd in (self.lifeline, self.pidfd):
            if fd is not None and fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.lifeline = self.pidfd = -1


# Run with a Handle just before its fd closes (plugin caches of resources bound to a
# namespace, e.g. a netlink socket opened inside it, drop them here); see nsshell/plugin.py.
# A hook that fails is passed over: it must not keep a handle open.
CLOSE_HOOKS = Hooks("handle close", on_error=lambda hook, exc: None)


class Handle:
    """An open namespace: closing the last handle (and every other holder) ends it."""

    __slots__ = ("fd", "type", "nsid", "origin", "holder", "refs", "__weakref__")

    def __init__(self, fd: int, nstype: NsType, nsid: NsId | None = None,
                 origin: str = "", holder: InitHolder | None = None):
        self.fd = fd
        self.type = nstype
        self.nsid = nsid or nsid_of_fd(fd, nstype.name)
        self.origin = origin
        self.holder = holder
        self.refs = 0

    @classmethod
    def open(cls, path: str, nstype: NsType | None = None, origin: str = "") -> "Handle":
        """A handle on the namespace file PATH, opened the one safe way (nsfs.open_ns:
        no blocking, no symlink but /proc's, nsfs of type NSTYPE checked first)."""
        fd = open_ns(path, nstype)
        try:
            return cls(fd, nstype or type_of_fd(fd), origin=origin or path)
        except BaseException:
            os.close(fd)
            raise

    @property
    def label(self) -> str:
        return str(self.nsid)

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def check_usable(self) -> None:
        if self.closed:
            raise StaleError(f"{self.label} was closed")
        if self.holder is not None and not self.holder.alive():
            raise StaleError(f"{self.label}: its init process has exited, so the PID "
                             "namespace can run no more processes",
                             "`close` it and create a new one with `new pid`")

    def entry(self) -> spawn.Entry:
        self.check_usable()
        return spawn.Entry(self.type, self.fd, self.label)

    def close(self) -> None:
        if self.holder is not None:
            self.holder.close()
            self.holder = None
        if self.fd >= 0:
            CLOSE_HOOKS.run(self)
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = -1

    def __del__(self) -> None:  # a safety net; sessions close explicitly
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"<Handle {self.label} fd={self.fd}>"


class NsSet:
    """A named set holding at most one handle per type (what `new`, `open`, `join` speak of)."""

    __slots__ = ("name", "handles", "origin", "persisted")

    def __init__(self, name: str | None, handles: dict[str, Handle] | None = None,
                 origin: str = ""):
        self.name = name
        self.handles: dict[str, Handle] = dict(handles or {})
        self.origin = origin
        self.persisted: str | None = None

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if len(self.handles) == 1:
            return next(iter(self.handles.values())).label
        return self.origin or "(unnamed)"

    def types(self) -> list[NsType]:
        return [t for t in nstypes.ALL if t.name in self.handles]

    def pick(self, types) -> "NsSet":
        """The sub-set of TYPES; an error names the types it lacks."""
        from ...errors import NotFoundError
        missing = [t.name for t in types if t.name not in self.handles]
        if missing:
            have = " ".join(self.handles) or "none"
            raise NotFoundError(f"{self.label} has no {'+'.join(missing)} namespace (it has: {have})")
        return NsSet(self.name, {t.name: self.handles[t.name] for t in types}, self.origin)

    def __repr__(self) -> str:
        return f"<NsSet {self.label} {' '.join(self.handles)}>"


def open_process(pid: int | str, types=nstypes.ALL, origin: str | None = None) -> dict[str, Handle]:
    """Handles on the namespaces process PID is in (those we may open)."""
    out: dict[str, Handle] = {}
    try:
        for t in types:
            try:
                fd = open_proc_ns(pid, t)
            except FileNotFoundError:
                continue  # e.g. no time namespaces on this kernel
            out[t.name] = Handle(fd, t, origin=origin or f"pid:{pid}")
    except BaseException:
        for h in out.values():
            h.close()
        raise
    return out
