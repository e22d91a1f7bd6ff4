"""What the mount commands do inside a helper that has entered the context's mount namespace.

Every function here runs in a forked helper (never in the shell): after setns()
into a mount namespace its root and working directory are that namespace's root,
so paths are read as the namespace sees them.  Each takes `procfd`, an fd on the
shell's own /proc (inherited across the fork), to read its own mountinfo even
where the namespace has no proc mounted (a new root before `mount proc`), and
`host_groups`, the propagation peer groups the host's mount namespace takes part
in: a mount that would propagate into one of them is refused (a mount namespace
joined with shared propagation would otherwise reach the host's mount table).
"""

from __future__ import annotations

import errno
import os

from nsshell.plugin import KernelError, NsshellError, UsageError, from_oserror, mountinfo, syscalls

NEEDS_CAP = ("needs CAP_SYS_ADMIN in the user namespace that owns the mount namespace; "
             "create them together (`new user+mnt`) and map root (`map root`)")


def read_mounts(procfd: int) -> list[mountinfo.Mount]:
    """This helper's mount table, read through the shell's /proc."""
    return mountinfo.read("self/mountinfo", dir_fd=procfd)


def _covering(mounts: list[mountinfo.Mount], path: str,
              skip_top: bool = False) -> mountinfo.Mount | None:
    """The mount PATH lies on (the last mounted of the deepest target above it).
    With skip_top: the parent of the topmost mount at PATH (what an unmount changes)."""
    best = mountinfo.covering(mounts, path)
    if skip_top and best is not None and best.target == path:
        by_id = {m.id: m for m in mounts}
        return by_id.get(best.parent)
    return best


def check_private(procfd: int, host_groups: set[int], path: str, skip_top: bool = False) -> None:
    """Refuse when a change at PATH would propagate into the host's mount namespace."""
    if not host_groups:
        return
    m = _covering(read_mounts(procfd), path, skip_top)
    if m is None:
        return
    for tag in m.optional:
        kind, _, group = tag.partition(":")
        if kind == "shared" and group.isdigit() and int(group) in host_groups:
            raise NsshellError(
                f"{m.target} is shared with the host's mount namespace (peer group {group}): "
                f"a mount on {path} would appear on the host too; refusing",
                f"make it private first (`mount propagation private {m.target} -r`), "
                "or give --host if that is what you want")


def real(path: str) -> str:
    """PATH resolved in the helper's mount namespace; it must exist."""
    resolved = os.path.realpath(path)
    if not os.path.lexists(resolved):
        raise KernelError(f"{path}: No such file or directory",
                          "the path must exist in the context's mount namespace "
                          "(`run mkdir -p PATH` creates it there)", errno.ENOENT)
    return resolved


def _error(err: OSError, what: str, extra: dict | None = None):
    hint = (extra or {}).get(err.errno)
    if hint is None and err.errno == errno.EPERM:
        hint = NEEDS_CAP
    if hint is None and err.errno == errno.ENOENT:
        hint = "the path must exist in the context's mount namespace"
    return from_oserror(err, what, hint)


def _locked_flags(path: str) -> int:
    """The flags a remount must keep (in a user namespace, nosuid/nodev/noexec and the
    atime flags of a mount from a more privileged namespace are locked)."""
    f = os.statvfs(path).f_flag
    flags = 0
    for st, ms in ((os.ST_NOSUID, syscalls.MS_NOSUID), (os.ST_NODEV, syscalls.MS_NODEV),
                   (os.ST_NOEXEC, syscalls.MS_NOEXEC), (os.ST_NOATIME, 1024),
                   (os.ST_NODIRATIME, 2048), (os.ST_RELATIME, 1 << 21)):
        if f & st:
            flags |= ms
    return flags


# -- the operations ---------------------------------------------------------------------

def ls(procfd: int) -> list[dict]:
    return [m.to_json() for m in read_mounts(procfd)]


def tmpfs(procfd: int, host_groups: set[int], path: str, size: str | None) -> str:
    target = real(path)
    check_private(procfd, host_groups, target)
    try:
        syscalls.mount("tmpfs", target, "tmpfs", syscalls.MS_NOSUID | syscalls.MS_NODEV,
                       f"size={size}" if size else None)
    except OSError as err:
        raise _error(err, f"mounting tmpfs on {path}",
                     {errno.EINVAL: "SIZE is a number with k, m, g or % (e.g. 64m)"}) from None
    return target


def bind(procfd: int, host_groups: set[int], src: str, dst: str, readonly: bool) -> str:
    source, target = real(src), real(dst)
    check_private(procfd, host_groups, target)
    try:
        syscalls.mount(source, target, None, syscalls.MS_BIND | syscalls.MS_REC)
    except OSError as err:
        raise _error(err, f"bind-mounting {src} on {dst}", {
            errno.ENOTDIR: "a directory binds onto a directory, a file onto a file",
            errno.EINVAL: "the source must be reachable in this mount namespace"}) from None
    if readonly:
        try:
            syscalls.mount(None, target, None, syscalls.MS_BIND | syscalls.MS_REMOUNT
                           | syscalls.MS_RDONLY | _locked_flags(target))
        except OSError as err:
            syscalls.umount2(target, syscalls.MNT_DETACH)  # nothing changed
            raise _error(err, f"making the bind mount on {dst} read-only") from None
    return target


PROC_HINT = ("in a user namespace proc can be mounted only while a fully visible proc is "
             "mounted in the mount namespace, and only by a user namespace that owns the "
             "PID namespace: mount proc into the new root before `mount root`")


def proc(procfd: int, host_groups: set[int], path: str) -> str:
    target = real(path)
    check_private(procfd, host_groups, target)
    try:
        syscalls.mount("proc", target, "proc",
                       syscalls.MS_NOSUID | syscalls.MS_NODEV | syscalls.MS_NOEXEC)
    except OSError as err:
        raise _error(err, f"mounting proc on {path}", {errno.EPERM: PROC_HINT}) from None
    return target


def overlay(procfd: int, host_groups: set[int], lower: list[str], upper: str, work: str,
            path: str) -> str:
    lowers = [real(p) for p in lower]
    up, wk, target = real(upper), real(work), real(path)
    for p in lowers + [up, wk]:
        if "," in p or ":" in p:
            raise UsageError(f"overlay layer paths cannot contain ',' or ':' ({p})")
    check_private(procfd, host_groups, target)
    data = f"lowerdir={':'.join(lowers)},upperdir={up},workdir={wk}"
    try:
        syscalls.mount("overlay", target, "overlay", 0, data)
    except OSError as err:
        raise _error(err, f"mounting an overlay on {path}", {
            errno.EINVAL: "UPPER and WORK must be directories on one filesystem (not an "
                          "overlay itself), WORK empty, both outside LOWER; the kernel log "
                          "(dmesg) names the reason",
            errno.EBUSY: "UPPER or WORK is already used by another overlay",
            errno.ELOOP: "the layers overlap: keep UPPER and WORK outside LOWER and DIR"}) from None
    return target


PROPAGATION = {"private": syscalls.MS_PRIVATE, "shared": syscalls.MS_SHARED,
               "slave": syscalls.MS_SLAVE, "unbindable": syscalls.MS_UNBINDABLE}


def propagation(procfd: int, host_groups: set[int], mode: str, path: str,
                recursive: bool) -> str:
    target = real(path)
    flags = PROPAGATION[mode] | (syscalls.MS_REC if recursive else 0)
    try:
        syscalls.mount("none", target, None, flags)
    except OSError as err:
        raise _error(err, f"making {path} {mode}", {
            errno.EINVAL: f"{path} must be a mount point (`mount bind {path} {path}` "
                          "makes it one)"}) from None
    return target


def umount(procfd: int, host_groups: set[int], path: str, lazy: bool) -> str:
    target = real(path)
    check_private(procfd, host_groups, target, skip_top=True)
    try:
        syscalls.umount2(target, syscalls.MNT_DETACH if lazy else 0)
    except OSError as err:
        raise _error(err, f"unmounting {path}", {
            errno.EINVAL: f"{path} is not a mount point in the context's mount namespace "
                          "(`mount ls` shows them), or it is locked: mounted by a more "
                          "privileged namespace",
            errno.EBUSY: "a process uses it or something is mounted below it; "
                         "`mount umount --lazy` detaches it now"}) from None
    return target


# -- the root: pivot_root(".", ".") and the detach of the old root, as one step ----------------
#
# pivot_root(".", ".") leaves the old root stacked on top of the new one; the detach
# that follows removes it.  A helper killed between the two (SIGKILL, OOM) would leave
# the host's tree as what every later helper entering the namespace sees at "/" (setns
# goes to the top of the mounts stacked on the namespace's root), and a retry would
# resolve DIR there.  So `mount root` first looks for that state and finishes it.
# It is recognised by mount identity (statx STATX_MNT_ID_UNIQUE + statmount, Linux
# 6.8+): the namespace's bottom mount (rootfs, its own parent) carries the root; a
# root mount whose parent is itself stacked on another mount is an unfinished pivot.

def _mount_ids(mnt_id: int) -> tuple[int, int] | None:
    """(mount id, parent mount id) of a mount of this namespace (statmount); None
    when the kernel cannot say."""
    try:
        return syscalls.statmount_ids(mnt_id)
    except OSError:
        return None


def _root_mount_id() -> int | None:
    try:
        return syscalls.statx_mnt_id(syscalls.AT_FDCWD, "/", unique=True)
    except OSError:
        return None


def unfinished_pivot() -> bool:
    """Whether "/" here is an old root left stacked on a new one by a pivot_root whose
    detach never ran."""
    top = _root_mount_id()
    ids = _mount_ids(top) if top else None
    if ids is None or ids[1] == ids[0]:
        return False
    below = _mount_ids(ids[1])        # the mount "/" sits on
    if below is None or below[1] == below[0]:
        return False                  # on the namespace's bottom mount: the normal case
    return True


def finish_pivot() -> None:
    """Detach the old root stacked on the new one (the second half of a pivot)."""
    try:
        syscalls.umount2("/", syscalls.MNT_DETACH)
    except OSError as err:
        raise _error(err, "detaching the old root left by an interrupted `mount root`") from None
    os.chdir("/")


def root(procfd: int, host_groups: set[int], path: str) -> str:
    """pivot_root into PATH: bind it onto itself unless it is a mount point, make it the
    root with pivot_root(".", "."), then detach the old root stacked on top of it.
    A pivot interrupted before its detach is finished instead (see above)."""
    if unfinished_pivot():
        finish_pivot()
        return ""
    target = real(path)
    if not os.path.isdir(target):
        raise UsageError(f"{path} is not a directory")
    if target == "/":
        raise UsageError(f"{path} is already the root")
    check_private(procfd, host_groups, target)
    bound = False
    if mountinfo.mount_at(read_mounts(procfd), target) is None:
        try:
            syscalls.mount(target, target, None, syscalls.MS_BIND | syscalls.MS_REC)
        except OSError as err:
            raise _error(err, f"bind-mounting {path} onto itself") from None
        bound = True
    try:
        os.chdir(target)
        syscalls.pivot_root(".", ".")
    except OSError as err:
        if bound:
            syscalls.umount2(target, syscalls.MNT_DETACH)
        raise _error(err, f"pivot_root into {path}", {
            errno.EINVAL: "the current root or DIR's parent mount has shared propagation "
                          "(`mount propagation private / -r` first), or DIR is the root "
                          "already"}) from None
    # The old root is now stacked on top of the new one at "/": detach it.
    try:
        syscalls.umount2(".", syscalls.MNT_DETACH)
    except OSError as err:
        raise _error(err, "detaching the old root after pivot_root") from None
    os.chdir("/")
    return target
