"""The persist store's file system: paths walked without following symlinks (and
only through directories root or the caller owns), the mount table, the store
root made a private mount of itself (and unmade once empty, if nsshell made it),
/run/netns set up as `ip netns add` leaves it, and store errors explained."""

from __future__ import annotations

import errno
import fcntl
import os
import stat

from ...errors import KernelError, NotFoundError, NsshellError, UsageError, from_oserror
from ...kernel import idmap, mountinfo, syscalls

from . import NETNS_DIR  # noqa: E402,F401
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


def untrusted_error(path: str, st: os.stat_result) -> NsshellError:
    who = f"uid {st.st_uid}" if st.st_uid not in (0, os.geteuid()) else "others"
    return NsshellError(f"{path} is {'owned by ' + who if who != 'others' else 'writable by others'}"
                        ": nsshell trusts only store entries that root (or you) own and "
                        "nobody else can write",
                        "remove or fix it yourself (`ls -ld` it), or use another persist root")


_OVERFLOW: int | None = None


def _overflow_owner(uid: int) -> bool:
    """Inside a user namespace (e.g. `unshare -r`) host root's directories show as owned
    by the overflow uid: as ancestors, they are what they were on the host.  (Such a
    shell cannot mount on the host: it only reads the store, and the keeper holds its
    own sets.)"""
    global _OVERFLOW
    if _OVERFLOW is None:
        try:
            initial = idmap.is_identity(idmap.read_map("self", "uid"))
            with open("/proc/sys/kernel/overflowuid") as f:
                _OVERFLOW = -1 if initial else int(f.read())
        except (OSError, ValueError):
            _OVERFLOW = -1
    return uid == _OVERFLOW


def check_trusted(fd: int, path: str, ancestor: bool = False) -> os.stat_result:
    """fstat FD (PATH opened without following symlinks) and refuse it unless root or the
    caller owns it and no one else can write it (a sticky directory such as /tmp may be
    an ANCESTOR: there nobody can rename or remove what others made)."""
    st = os.fstat(fd)
    if st.st_uid not in (0, os.geteuid()) and not (ancestor and _overflow_owner(st.st_uid)):
        raise untrusted_error(path, st)
    if st.st_mode & 0o022 and not (ancestor and stat.S_ISDIR(st.st_mode)
                                   and st.st_mode & stat.S_ISVTX):
        raise untrusted_error(path, st)
    return st


def walk(path: str, create: bool = False, mode: int = 0o755) -> int:
    """An O_DIRECTORY fd on PATH, reached one component at a time with O_NOFOLLOW
    (creating missing directories with CREATE).  Every component, "/" included, is
    checked on its opened fd: owned by root or the caller, writable by no one else
    unless sticky (/tmp), so nothing another user controls is ever trusted.  An
    entry's own directory and files are checked strictly by the store (no sticky)."""
    path = normal(path)
    comps = [p for p in path.split("/") if p]
    fd = os.open("/", DIR_FLAGS)
    done = ""
    try:
        check_trusted(fd, "/", ancestor=True)
        for comp in comps:
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
                    raise store_error(e, f"creating {done}", done) from None
                try:
                    nxt = os.open(comp, DIR_FLAGS, dir_fd=fd)
                except OSError as e:
                    if e.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise symlink_error(done) from None
                    raise store_error(e, f"opening {done}", done) from None
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise symlink_error(done) from None
                raise store_error(e, f"opening {done}", done) from None
            os.close(fd)
            fd = nxt
            check_trusted(fd, done, ancestor=True)
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


ROOT_MARK = ".nsshell-root"


def _read_mark(dfd: int) -> str | None:
    try:
        fd = os.open(ROOT_MARK, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                     dir_fd=dfd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid not in (0, os.geteuid()):
            return None
        return os.read(fd, 64).decode(errors="replace").strip()
    finally:
        os.close(fd)


def write_atomic(dfd: int, name: str, data: bytes, what: str, path: str) -> None:
    """Replace DFD/NAME with DATA at once: written to a temporary file (.NAME.PID, never
    through a symlink), then renamed over NAME, so a kill leaves the old file or the new
    one, never half of one.  WHAT and PATH name it in the error."""
    tmp = f"{name if name.startswith('.') else '.' + name}.{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o644, dir_fd=dfd)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException as e:
        try:
            os.unlink(tmp, dir_fd=dfd)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise store_error(e, what, path) from None
        raise


def _write_mark(dfd: int, text: str, path: str) -> None:
    write_atomic(dfd, ROOT_MARK, text.encode(), f"recording the self-bind of {path}", path)


def ensure_private_root(path: str, fd: int, step=lambda _name: None) -> None:
    """Make PATH a private mount (a bind mount of itself first), as ip does for /run/netns.

    A self-bind nsshell makes is recorded in PATH/.nsshell-root ("pending" before the
    mount, then its mount id), so `release_root` undoes it, and only it, once the root
    is empty again.  FD is PATH opened before (the directory beneath any mount)."""
    table = mountinfo.read()
    if mountinfo.mount_at(table, path) is None:
        _write_mark(fd, "pending", path)
        step("root-intent")
        try:
            syscalls.mount(fdpath(fd), fdpath(fd), None, syscalls.MS_BIND | syscalls.MS_REC)
        except OSError as e:
            try:
                os.unlink(ROOT_MARK, dir_fd=fd)
            except OSError:
                pass
            raise mount_error(e, f"making {path} a mount of itself", path) from None
        step("root-bind")
        table = mountinfo.read()
        m = mountinfo.mount_at(table, path)
        if m is not None:
            _write_mark(fd, str(m.id), path)
    m = mountinfo.mount_at(table, path)
    if m is not None and m.shared:
        top = walk(path)  # the fd opened before the bind names the directory beneath it
        try:
            syscalls.mount("none", fdpath(top), None, syscalls.MS_PRIVATE | syscalls.MS_REC)
        except OSError as e:
            raise from_oserror(e, f"making {path} private") from None
        finally:
            os.close(top)


def _is_self_bind(path: str, m: mountinfo.Mount, table: list[mountinfo.Mount]) -> bool:
    """Is M (mounted on PATH) a bind of the very directory beneath it?"""
    head = path.rpartition("/")[0] or "/"
    below = mountinfo.covering([x for x in table if x.id != m.id], head)
    if below is None or below.fstype != m.fstype:
        return False
    point = below.target.rstrip("/")
    rel = path[len(point):] if point else path
    return m.root == (below.root.rstrip("/") + rel)


def release_root(path: str, step=lambda _name: None) -> bool:
    """Undo the self-bind nsshell made of the persist root PATH once nothing is kept in
    it (called with the root's lock held).  A self-bind nsshell did not record is left."""
    try:
        top = walk(path)
    except NsshellError:
        return False
    try:
        try:
            names = os.listdir(fdpath(top))
        except OSError:
            return False
        if any(n != ROOT_MARK for n in names):
            for n in names:  # a record being written when a persist was killed
                if n.startswith(ROOT_MARK + ".") and n[len(ROOT_MARK) + 1:].isdigit():
                    try:
                        os.unlink(n, dir_fd=top)
                    except OSError:
                        pass
            names = os.listdir(fdpath(top))
        if any(n != ROOT_MARK for n in names):
            return False
        mark = _read_mark(top)
        if mark is None:
            return False
        table = mountinfo.read()
        m = mountinfo.mount_at(table, path)
        ours = m is not None and (mark == str(m.id) or mark == "pending") \
            and _is_self_bind(path, m, table)
        if ours:
            head, _, base = path.rpartition("/")
            pfd = walk(head or "/")
            try:
                # the mount first, then its record: killed in between, the record of a
                # self-bind that is gone is dropped by the next one (below)
                syscalls.umount2(fdpath(pfd, base), syscalls.MNT_DETACH | syscalls.UMOUNT_NOFOLLOW)
                step("root unmount")
                below = os.open(base, DIR_FLAGS, dir_fd=pfd)
                try:
                    os.unlink(ROOT_MARK, dir_fd=below)
                finally:
                    os.close(below)
            finally:
                os.close(pfd)
            return True
        if m is None:  # a record of a self-bind that is gone (killed before the mount)
            try:
                os.unlink(ROOT_MARK, dir_fd=top)
            except OSError:
                pass
        return False
    except OSError:
        return False
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
        if mountinfo.mount_at(mountinfo.read(), NETNS_DIR) is None:
            syscalls.mount(fdpath(lock), fdpath(lock), None, syscalls.MS_BIND | syscalls.MS_REC)
            top = walk(NETNS_DIR)
            try:
                syscalls.mount("none", fdpath(top), None, syscalls.MS_SHARED | syscalls.MS_REC)
            finally:
                os.close(top)
    except OSError as e:
        raise mount_error(e, f"setting up {NETNS_DIR}", NETNS_DIR) from None
    return walk(NETNS_DIR)


def store_error(err: OSError, what: str, path: str) -> KernelError:
    """A store file operation failed: say where, and what the file system said."""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return KernelError(f"{what}: the file system holding {path} is full",
                           f"free space there (`df {path}`), or use another persist root",
                           err.errno)
    if err.errno == errno.EROFS:
        return KernelError(f"{what}: {path} is on a read-only file system",
                           "remount it read-write, or use another persist root "
                           "(`set persist_root DIR`)", err.errno)
    return from_oserror(err, what)


def mount_error(err: OSError, what: str, target: str, nstype: str | None = None) -> KernelError:
    if err.errno == errno.EINVAL:
        m = mountinfo.covering(mountinfo.read(), target)
        if m is not None and m.shared:
            return KernelError(
                f"{what}: {target} is on {m.target}, a mount with shared propagation "
                f"({m.shared}); the kernel refuses to bind a namespace file there (EINVAL)",
                f"make it private (`mount --make-private {m.target}`) or use the default "
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
    if err.errno == errno.ENOSPC:  # mount(2): the mount namespace has too many mounts
        return KernelError(f"{what}: the mount namespace has as many mounts as "
                           "/proc/sys/fs/mount-max allows",
                           "unpersist sets no longer needed, or raise fs.mount-max", err.errno)
    if err.errno in (errno.EROFS, errno.EDQUOT):
        return store_error(err, what, target)
    return from_oserror(err, f"{what} ({target})" if target not in what else what)
