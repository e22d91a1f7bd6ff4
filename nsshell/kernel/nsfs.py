"""Namespace identity and relations, from nsfs files and ioctl_ns(2)."""

from __future__ import annotations

import errno
import os
import stat
from .values import Frozen

from . import nstypes, syscalls


class NsId(Frozen):
    """A namespace's identity: its type and the (st_dev, st_ino) of its nsfs file."""
    __slots__ = ("type", "ino", "dev")
    _fields = __slots__

    def __init__(self, type: str, ino: int, dev: int = 0) -> None:
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "ino", ino)
        object.__setattr__(self, "dev", dev)

    # written out (not Frozen's, over _fields): NsIds are the keys of every scan
    def _key(self) -> tuple:
        return (self.type, self.ino, self.dev)

    def __eq__(self, other):
        if other.__class__ is NsId:
            return self.ino == other.ino and self.type == other.type and self.dev == other.dev
        return NotImplemented

    def __hash__(self):
        return hash((self.type, self.ino, self.dev))

    def __lt__(self, other):
        return self._key() < other._key() if other.__class__ is NsId else NotImplemented

    def __le__(self, other):
        return self._key() <= other._key() if other.__class__ is NsId else NotImplemented

    def __gt__(self, other):
        return self._key() > other._key() if other.__class__ is NsId else NotImplemented

    def __ge__(self, other):
        return self._key() >= other._key() if other.__class__ is NsId else NotImplemented

    def __str__(self) -> str:
        return f"{self.type}:[{self.ino}]"


def nsid_of_fd(fd: int, nstype: str | None = None) -> NsId:
    st = os.fstat(fd)
    if nstype is None:
        nstype = type_of_fd(fd).name
    return NsId(nstype, st.st_ino, st.st_dev)


def nsid_of_path(path: str, nstype: str) -> NsId:
    st = os.stat(path)
    return NsId(nstype, st.st_ino, st.st_dev)


def type_of_fd(fd: int) -> nstypes.NsType:
    """The type of the namespace FD refers to; OSError(ENOTTY) if it is not one."""
    return nstypes.BY_FLAG[syscalls.ns_get_nstype(fd)]


# --- the one way to open a namespace file ----------------------------------------------
#
# Every namespace file nsshell opens goes through open_ns / open_proc_ns / open_bind_mount
# below, and every fd they return has passed check_ns_fd: it is on nsfs (fstatfs
# NSFS_MAGIC) and NS_GET_NSTYPE names its type (the expected one when given).  A path is
# first opened with O_PATH, which never calls a driver's open and never blocks, so a FIFO,
# a device or any other file is refused before it is opened for real; only a file that
# is already known to be on nsfs is then opened (O_RDONLY | O_NONBLOCK | O_NOCTTY,
# through /proc/self/fd/N: the very file that was checked, not the path again).  The last
# component is not followed when it is a symlink, except a /proc magic link
# (/proc/PID/ns/TYPE, /proc/PID/fd/N), whose target is checked like any other file.

NSFS_MAGIC = 0x6E736673
PROC_SUPER_MAGIC = 0x9FA0

_PATH_FLAGS = os.O_PATH | os.O_CLOEXEC
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


class NotNamespaceError(OSError):
    """A path or fd that is not a namespace file (or not one of the expected type).
    errno is ENOTTY, what NS_GET_NSTYPE says of a file that is not nsfs."""

    def __init__(self, shown: str, what: str):
        super().__init__(errno.ENOTTY, f"not a namespace file ({what})", shown or None)
        self.shown = shown
        self.what = what


class WrongTypeError(NotNamespaceError):
    """A namespace file of another type than the one asked for."""

    def __init__(self, shown: str, found: str, wanted: str):
        OSError.__init__(self, errno.EINVAL, f"a {found} namespace, not a {wanted} one",
                         shown or None)
        self.shown, self.found, self.wanted = shown, found, wanted
        self.what = f"a {found} namespace"


def describe_mode(mode: int) -> str:
    for test, what in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return what
    return "a regular file" if stat.S_ISREG(mode) else "not a namespace file"


def check_ns_fd(fd: int, nstype: nstypes.NsType | None = None, shown: str = "") -> nstypes.NsType:
    """FD's namespace type, after checking it is an nsfs file (of type NSTYPE if given);
    NotNamespaceError otherwise.  Works on a real fd (not O_PATH: the ioctl needs one)."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or syscalls.fstatfs_type(fd) != NSFS_MAGIC:
        raise NotNamespaceError(shown, describe_mode(st.st_mode))
    try:
        found = nstypes.BY_FLAG[syscalls.ns_get_nstype(fd)]
    except (OSError, KeyError):
        raise NotNamespaceError(shown, "an nsfs file that is not a namespace") from None
    if nstype is not None and found is not nstype:
        raise WrongTypeError(shown, found.name, nstype.name)
    return found


def _reopen_checked(pfd: int, nstype, shown: str, again, proc_fd: int | None = None) -> int:
    """A real fd on the file O_PATH fd PFD is, once PFD is known to be an nsfs file
    (through PROC_FD, an open /proc, when given: a helper inside another mount namespace
    must not trust that namespace's /proc)."""
    st = os.fstat(pfd)
    if not stat.S_ISREG(st.st_mode) or syscalls.fstatfs_type(pfd) != NSFS_MAGIC:
        raise NotNamespaceError(shown, describe_mode(st.st_mode))
    try:
        if proc_fd is not None:
            fd = os.open(f"self/fd/{pfd}", _OPEN_FLAGS, dir_fd=proc_fd)
        else:
            fd = os.open(f"/proc/self/fd/{pfd}", _OPEN_FLAGS)
    except FileNotFoundError:
        # No /proc/self here (a helper after it mounted another PID namespace's proc):
        # open the same way again, non-blocking, and make sure it is the checked file.
        fd = again()
    try:
        st2 = os.fstat(fd)
        if (st2.st_dev, st2.st_ino) != (st.st_dev, st.st_ino):
            raise NotNamespaceError(shown, "it changed while being opened")
        check_ns_fd(fd, nstype, shown)
        return fd
    except BaseException:
        os.close(fd)
        raise


def open_ns(path: str, nstype: nstypes.NsType | None = None, *, dir_fd: int | None = None) -> int:
    """An O_CLOEXEC read-only fd on the namespace file PATH (relative to DIR_FD if given),
    checked to be nsfs and of type NSTYPE if given: NotNamespaceError otherwise, raised
    before anything but O_PATH touched the file (no FIFO blocks, no device is opened).
    A symlink as the last component is refused unless it is a /proc magic link."""
    head, base = os.path.split(path)
    if not base or base in (".", ".."):
        raise NotNamespaceError(path, "a directory")
    dfd = os.open(head or ".", _PATH_FLAGS | os.O_DIRECTORY, dir_fd=dir_fd)
    try:
        pfd = os.open(base, _PATH_FLAGS | os.O_NOFOLLOW, dir_fd=dfd)
        flags = _OPEN_FLAGS | os.O_NOFOLLOW
        try:
            if stat.S_ISLNK(os.fstat(pfd).st_mode):
                if syscalls.fstatfs_type(dfd) != PROC_SUPER_MAGIC:
                    raise NotNamespaceError(path, "a symbolic link")
                # /proc/PID/ns/TYPE or /proc/PID/fd/N: the link is meant; what it
                # leads to is checked below like any other file.
                os.close(pfd)
                pfd = -1
                pfd = os.open(base, _PATH_FLAGS, dir_fd=dfd)
                flags = _OPEN_FLAGS
            return _reopen_checked(pfd, nstype, path,
                                   lambda: os.open(base, flags, dir_fd=dfd))
        finally:
            if pfd >= 0:
                os.close(pfd)
    finally:
        os.close(dfd)


def open_proc_ns(pid: int | str, t: nstypes.NsType, for_children: bool = False, *,
                 proc_fd: int | None = None) -> int:
    """An fd on namespace T of process PID (/proc/PID/ns/TYPE: a magic link into nsfs,
    opened directly), checked like every other.  PROC_FD: an open /proc to use."""
    name = t.for_children if for_children else t.proc
    rel = f"{pid}/ns/{name}"
    fd = os.open(rel if proc_fd is not None else f"/proc/{rel}", _OPEN_FLAGS, dir_fd=proc_fd)
    try:
        check_ns_fd(fd, t, f"/proc/{rel}")
        return fd
    except BaseException:
        os.close(fd)
        raise


def open_bind_mount(pid: int | str, mountpoint: str, mnt_id: int,
                    nstype: nstypes.NsType | None = None, *, proc_fd: int | None = None) -> int:
    """An fd on the namespace bind-mounted at MOUNTPOINT as mount MNT_ID of the mount table
    of process PID, reached under its root (/proc/PID/root) without following any symlink
    or leaving that root (openat2 RESOLVE_NO_SYMLINKS | RESOLVE_IN_ROOT), and taken only if
    what the path leads to now is that very mount (statx STATX_MNT_ID), not another one
    stacked on it or on a directory above it.  PROC_FD: an open /proc to use (a helper
    that entered another mount namespace passes the shell's, with PID "self")."""
    shown = f"/proc/{pid}/root{mountpoint}"
    if proc_fd is not None:
        root = os.open(f"{pid}/root", _PATH_FLAGS | os.O_DIRECTORY, dir_fd=proc_fd)
    else:
        root = os.open(f"/proc/{pid}/root", _PATH_FLAGS | os.O_DIRECTORY)
    try:
        rel = mountpoint.lstrip("/") or "."
        pfd = syscalls.openat2(root, rel, _PATH_FLAGS | os.O_NOFOLLOW,
                               syscalls.RESOLVE_NO_SYMLINKS | syscalls.RESOLVE_IN_ROOT)
        try:
            if syscalls.statx_mnt_id(pfd) != mnt_id:
                raise NotNamespaceError(shown, f"not mount {mnt_id} any more: something is "
                                               "mounted over it")
            return _reopen_checked(pfd, nstype, shown, lambda: syscalls.openat2(
                root, rel, _OPEN_FLAGS | os.O_NOFOLLOW,
                syscalls.RESOLVE_NO_SYMLINKS | syscalls.RESOLVE_IN_ROOT), proc_fd)
        finally:
            os.close(pfd)
    finally:
        os.close(root)


def owner_userns_fd(fd: int) -> int:
    return syscalls.ns_get_userns(fd)


def parent_fd(fd: int) -> int | None:
    """The parent of a user or PID namespace; None at the top of what we may see."""
    try:
        return syscalls.ns_get_parent(fd)
    except PermissionError:
        return None


def owner_uid(userns_fd: int) -> int:
    return syscalls.ns_get_owner_uid(userns_fd)


def owner_nsid(fd: int) -> NsId | None:
    """The identity of the user namespace owning FD's namespace (None if not visible)."""
    try:
        ufd = owner_userns_fd(fd)
    except PermissionError:
        return None
    try:
        return nsid_of_fd(ufd, "user")
    finally:
        os.close(ufd)
