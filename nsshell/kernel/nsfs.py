"""Namespace identity and relations, from nsfs files and ioctl_ns(2)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import nstypes, syscalls


@dataclass(frozen=True, order=True)
class NsId:
    """A namespace's identity: its type and the (st_dev, st_ino) of its nsfs file."""

    type: str
    ino: int
    dev: int = 0

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


def open_ns(path: str) -> int:
    """An O_CLOEXEC read-only fd on a namespace file (O_PATH would not do for setns
    on old kernels, and ioctls need a real open)."""
    # O_NONBLOCK: a FIFO (or a device) given as a path must not hang the open
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)


def proc_ns_path(pid: int | str, t: nstypes.NsType, for_children: bool = False) -> str:
    return f"/proc/{pid}/ns/{t.for_children if for_children else t.proc}"


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
