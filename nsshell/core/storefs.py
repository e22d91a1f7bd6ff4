"""The persist store's file system: paths walked without following symlinks, the
mount table, the store root made a private mount of itself, /run/netns set up
as `ip netns add` leaves it, and mount errors explained."""

from __future__ import annotations

import errno
import fcntl
import os
from dataclasses import dataclass, field

from ..errors import KernelError, NotFoundError, NsshellError, UsageError, from_oserror
from ..kernel import syscalls

NETNS_DIR = "/run/netns"
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def normal(path: str) -> str:
    parts = [p for p in path.split("/") if p and p != "."]
    if ".." in parts:
        raise UsageError(f"{path}: '..' is not allowed in a persist path",
                         "give the path without '..'")
    return "/" + "/".join(parts)


def symlink_error(path: str) -> NsshellError:
    return NsshellError(f"{path} is a symbolic link (or not a directory); persist paths are "
                        "never followed through symlinks",
                        "give the real path (e.g. /run rather than /var/run)")


def walk(path: str, create: bool = False, mode: int = 0o755) -> int:
    """An O_DIRECTORY fd on PATH, reached one component at a time with O_NOFOLLOW
    (creating missing directories with CREATE)."""
    path = normal(path)
    fd = os.open("/", DIR_FLAGS)
    done = ""
    try:
        for comp in [p for p in path.split("/") if p]:
            done += "/" + comp
            try:
                nxt = os.open(comp, DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise NotFoundError(f"no directory {done}") from None
                try:
                    os.mkdir(comp, mode, dir_fd=fd)
                except FileExistsError:
                    pass
                except OSError as e:
                    raise from_oserror(e, f"creating {done}") from None
                try:
                    nxt = os.open(comp, DIR_FLAGS, dir_fd=fd)
                except OSError as e:
                    if e.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise symlink_error(done) from None
                    raise from_oserror(e, f"opening {done}") from None
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise symlink_error(done) from None
                raise from_oserror(e, f"opening {done}") from None
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def exists_dir(path: str) -> bool:
    try:
        fd = walk(path)
    except NsshellError:
        return False
    os.close(fd)
    return True


def fdpath(fd: int, name: str | None = None) -> str:
    return f"/proc/self/fd/{fd}" + (f"/{name}" if name else "")


# --- mount table ----------------------------------------------------------------------

@dataclass
class MountInfo:
    mount_id: int
    point: str
    fstype: str
    root: str
    optional: list[str] = field(default_factory=list)

    @property
    def shared(self) -> str | None:
        for o in self.optional:
            if o.startswith("shared:"):
                return o
        return None


def unescape(s: str) -> str:
    return s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def mounts() -> list[MountInfo]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            out.append(MountInfo(int(fields[0]), unescape(fields[4]), fields[sep + 1],
                                 unescape(fields[3]), fields[6:sep]))
    return out


def mount_of(path: str, table: list[MountInfo] | None = None) -> MountInfo | None:
    """The mount PATH (canonical) lies on: the last one mounted on its longest prefix."""
    best = None
    for m in table or mounts():
        p = m.point.rstrip("/") or "/"
        if path == p or path.startswith(p.rstrip("/") + "/") or p == "/":
            if best is None or len(p) >= len(best.point.rstrip("/") or "/"):
                best = m
    return best


def mount_point(path: str, table: list[MountInfo]) -> MountInfo | None:
    found = None
    for m in table:
        if m.point == path:
            found = m
    return found


def ensure_private_root(path: str, fd: int) -> None:
    """Make PATH a private mount (a bind mount of itself first), as ip does for /run/netns."""
    table = mounts()
    if mount_point(path, table) is None:
        try:
            syscalls.mount(fdpath(fd), fdpath(fd), None, syscalls.MS_BIND | syscalls.MS_REC)
        except OSError as e:
            raise mount_error(e, f"making {path} a mount of itself", path) from None
        table = mounts()
    m = mount_point(path, table)
    if m is not None and m.shared:
        top = walk(path)  # the fd opened before the bind names the directory beneath it
        try:
            syscalls.mount("none", fdpath(top), None, syscalls.MS_PRIVATE | syscalls.MS_REC)
        except OSError as e:
            raise from_oserror(e, f"making {path} private") from None
        finally:
            os.close(top)


def ensure_netns_dir(keep: list[int]) -> int:
    """/run/netns as `ip netns add` leaves it: a bind mount of itself with shared
    propagation (so netns mounts propagate to later mount namespaces).  The directory
    stays flock()ed (its fd is added to KEEP) so two shells do not stack two mounts."""
    lock = walk(NETNS_DIR, create=True)
    keep.append(lock)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        if mount_point(NETNS_DIR, mounts()) is None:
            syscalls.mount(fdpath(lock), fdpath(lock), None, syscalls.MS_BIND | syscalls.MS_REC)
            top = walk(NETNS_DIR)
            try:
                syscalls.mount("none", fdpath(top), None, syscalls.MS_SHARED | syscalls.MS_REC)
            finally:
                os.close(top)
    except OSError as e:
        raise mount_error(e, f"setting up {NETNS_DIR}", NETNS_DIR) from None
    return walk(NETNS_DIR)


def mount_error(err: OSError, what: str, target: str, nstype: str | None = None) -> KernelError:
    if err.errno == errno.EINVAL:
        m = mount_of(target)
        if m is not None and m.shared:
            return KernelError(
                f"{what}: {target} is on {m.point}, a mount with shared propagation "
                f"({m.shared}); the kernel refuses to bind a namespace file there (EINVAL)",
                f"make it private (`mount --make-private {m.point}`) or use the default "
                "persist root, which nsshell makes private itself", err.errno)
        if nstype == "mnt":
            return KernelError(
                f"{what}: the kernel refused (EINVAL): a mount namespace cannot be bound "
                "inside itself, nor inside a mount namespace newer than itself",
                "persist it from a shell whose own mount namespace is older (the host's)",
                err.errno)
    if err.errno in (errno.EPERM, errno.EACCES):
        return from_oserror(err, what, "bind mounts on the host need CAP_SYS_ADMIN in the "
                            "host's user namespace (root); unprivileged, `persist` uses the keeper")
    return from_oserror(err, what)
