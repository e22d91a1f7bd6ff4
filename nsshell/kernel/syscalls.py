"""ctypes wrappers for the syscalls Python 3.11's os module lacks.

Every wrapper raises OSError(errno) on failure, like the os module does.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct

from . import procfs


def _load_libc() -> ctypes.CDLL:
    # Not ctypes.util.find_library first: it runs `ldconfig -p` in a subprocess,
    # which cost every start-up several milliseconds (see bench/README.md).
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        from ctypes.util import find_library
        return ctypes.CDLL(find_library("c"), use_errno=True)


_libc = _load_libc()

# Numbers of the calls glibc 2.36 may not wrap, per architecture (uname's machine, for
# a 64-bit process: a 32-bit one on a 64-bit kernel has other numbers).  Importing this
# module never fails elsewhere: there the table is empty, and only a call of one of these
# raises OSError(ENOSYS) naming the call and the machine.
_NR_BY_ARCH = {
    "x86_64": {"pidfd_send_signal": 424, "pidfd_getfd": 438, "close_range": 436,
               "pivot_root": 155, "openat2": 437, "statx": 332, "statmount": 457},
    "aarch64": {"pidfd_send_signal": 424, "pidfd_getfd": 438, "close_range": 436,
                "pivot_root": 41, "openat2": 437, "statx": 291, "statmount": 457},
}


class _Numbers(dict):
    def __missing__(self, name: str):
        raise OSError(errno.ENOSYS, f"{name}: nsshell knows no syscall number for it on "
                                    f"{_machine()} ({ctypes.sizeof(ctypes.c_void_p) * 8}-bit)")


def _machine() -> str:
    return os.uname().machine


def _numbers() -> _Numbers:
    if ctypes.sizeof(ctypes.c_void_p) != 8:
        return _Numbers()
    return _Numbers(_NR_BY_ARCH.get(_machine(), {}))


_NR = _numbers()

_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def _check(ret: int, *what) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), *[w for w in what[:1] if w is not None])
    return ret


def _b(path) -> bytes | None:
    return None if path is None else os.fsencode(path)


# --- namespaces -------------------------------------------------------------

def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)))


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)))


# ioctl_ns(2)
NS_GET_USERNS = 0xB701
NS_GET_PARENT = 0xB702
NS_GET_NSTYPE = 0xB703
NS_GET_OWNER_UID = 0xB704


def ns_get_userns(fd: int) -> int:
    """A new O_CLOEXEC fd for the user namespace that owns the namespace FD."""
    return fcntl.ioctl(fd, NS_GET_USERNS)


def ns_get_parent(fd: int) -> int:
    """A new fd for the parent of a user or PID namespace (EPERM at the top)."""
    return fcntl.ioctl(fd, NS_GET_PARENT)


def ns_get_nstype(fd: int) -> int:
    return fcntl.ioctl(fd, NS_GET_NSTYPE)


def ns_get_owner_uid(fd: int) -> int:
    """The uid (in the caller's user namespace) of the creator of user namespace FD."""
    buf = bytearray(4)
    fcntl.ioctl(fd, NS_GET_OWNER_UID, buf, True)
    return struct.unpack("I", buf)[0]


SIOCGSKNS = 0x894C   # sockios.h


def socket_netns(sockfd: int) -> int:
    """A new O_CLOEXEC fd on the network namespace socket SOCKFD was created in."""
    return fcntl.ioctl(sockfd, SIOCGSKNS)


# --- processes --------------------------------------------------------------

def pidfd_open(pid: int) -> int:
    return os.pidfd_open(pid)


def pidfd_getfd(pidfd: int, fd: int) -> int:
    """A copy (O_CLOEXEC) of the process PIDFD's file descriptor FD (pidfd_getfd(2), Linux
    5.6; it takes ptrace rights over that process)."""
    return _check(_syscall(_NR["pidfd_getfd"], ctypes.c_int(pidfd), ctypes.c_int(fd),
                           ctypes.c_uint(0)))


def pidfd_send_signal(pidfd: int, sig: int) -> None:
    _check(_syscall(_NR["pidfd_send_signal"], ctypes.c_int(pidfd), ctypes.c_int(sig),
                    None, ctypes.c_uint(0)))


CLOSE_RANGE_CLOEXEC = 1 << 2


def close_range(first: int, last: int = 0xFFFFFFFF, flags: int = 0) -> None:
    _check(_syscall(_NR["close_range"], ctypes.c_uint(first), ctypes.c_uint(last),
                    ctypes.c_uint(flags)))


def close_fds_except(keep) -> None:
    """Close every fd >= 3 not in KEEP (a forked helper must not hold the shell's fds)."""
    lo = 3
    for fd in sorted(k for k in set(keep) if k >= 3):
        if fd > lo:
            close_range(lo, fd - 1)
        lo = fd + 1
    close_range(lo)


PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NAME = 15


def prctl(option: int, arg2: int = 0) -> int:
    return _check(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg2),
                              ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)))


def set_dumpable(on: bool) -> None:
    """prctl(PR_SET_DUMPABLE): 0 gives this process's /proc files to root and closes
    ptrace and /proc/PID/mem to all but CAP_SYS_PTRACE in its mm's user namespace."""
    prctl(PR_SET_DUMPABLE, 1 if on else 0)


def set_comm(name: str) -> None:
    """Set the process name shown by ps/lsns (15 bytes at most)."""
    _libc.prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)


def set_process_title(name: str) -> None:
    """Name this process NAME for ps and top: its comm (prctl) and its command line
    (/proc/PID/cmdline), which is read from the process's own argument area: that
    is overwritten, as setproctitle(3) does.  Only for forked helpers (the shell's
    own command line stays); Python keeps copies of argv, not the area itself."""
    set_comm(name)
    st = procfs.stat()
    try:
        start, end = st.field(48), st.field(49)   # proc(5): arg_start, arg_end
    except (AttributeError, IndexError, ValueError):
        return
    size = end - start
    if size <= 1:
        return
    raw = name.encode()[:size - 1]
    area = bytearray(size)
    area[:len(raw)] = raw
    if size > len(raw) + 1:
        # A last byte that is not NUL tells the kernel the area holds a title, to be read
        # up to its first NUL (fs/proc/base.c get_mm_proctitle), not the whole area.
        area[-1] = 0x20
    ctypes.memmove(start, bytes(area), size)


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, ctypes.c_size_t(len(raw))))


# --- mounts -----------------------------------------------------------------

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20

MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8


def mount(source, target, fstype=None, flags: int = 0, data=None) -> None:
    _check(_libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags),
                       _b(data)), None)


def umount2(target, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), ctypes.c_int(flags)))


def pivot_root(new_root, put_old) -> None:
    _check(_syscall(_NR["pivot_root"], _b(new_root), _b(put_old)))


# --- opening safely: openat2(2), statx(2), statmount(2), fstatfs(2) ------------

AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_IN_ROOT = 0x10


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def openat2(dirfd: int, path, flags: int, resolve: int = 0, mode: int = 0) -> int:
    """openat2(2): open PATH under DIRFD with RESOLVE_* restrictions on how it is walked."""
    how = _OpenHow(flags, mode, resolve)
    return _check(_syscall(_NR["openat2"], ctypes.c_int(dirfd), _b(path), ctypes.byref(how),
                           ctypes.c_size_t(ctypes.sizeof(how))), path)


STATX_MNT_ID = 0x1000
STATX_MNT_ID_UNIQUE = 0x4000   # Linux 6.8: the 64-bit id statmount(2) takes
_STATX_SIZE = 256
_STATX_MNT_ID_OFFSET = 0x90  # __u64 stx_mnt_id in struct statx


def statx_mnt_id(fd: int, path="", *, unique: bool = False) -> int:
    """The id of the mount PATH (relative to FD; FD itself when PATH is empty: an O_PATH
    fd does) lies on, as field 1 of /proc/PID/mountinfo shows it (statx(2) STATX_MNT_ID);
    with UNIQUE, the 64-bit id that statmount takes (STATX_MNT_ID_UNIQUE)."""
    want = STATX_MNT_ID_UNIQUE if unique else STATX_MNT_ID
    buf = ctypes.create_string_buffer(_STATX_SIZE)
    _check(_syscall(_NR["statx"], ctypes.c_int(fd), _b(path),
                    ctypes.c_int(0 if path else AT_EMPTY_PATH), ctypes.c_uint(want), buf))
    mask = struct.unpack_from("I", buf.raw, 0)[0]
    if not mask & want:
        raise OSError(errno.ENOSYS, "statx gave no mount id")
    return struct.unpack_from("Q", buf.raw, _STATX_MNT_ID_OFFSET)[0]


STATMOUNT_MNT_BASIC = 0x2
_MNT_ID_REQ = struct.Struct("IIQQ")   # struct mnt_id_req, version 0 (24 bytes)
_STATMOUNT_IDS = struct.Struct("QQ")  # mnt_id, mnt_parent_id in struct statmount
_STATMOUNT_IDS_OFFSET = 40


def statmount_ids(mnt_id: int) -> tuple[int, int]:
    """(mount id, parent mount id), unique ids both, of mount MNT_ID (a unique id) of the
    caller's mount namespace (statmount(2) STATMOUNT_MNT_BASIC, Linux 6.8)."""
    req = ctypes.create_string_buffer(_MNT_ID_REQ.pack(_MNT_ID_REQ.size, 0, mnt_id,
                                                       STATMOUNT_MNT_BASIC))
    buf = ctypes.create_string_buffer(512)
    _check(_syscall(_NR["statmount"], req, buf, ctypes.c_size_t(len(buf)), ctypes.c_uint(0)))
    return _STATMOUNT_IDS.unpack_from(buf.raw, _STATMOUNT_IDS_OFFSET)


_STATFS_SIZE = 256  # >= sizeof(struct statfs) on every Linux ABI; f_type comes first


def fstatfs_type(fd: int) -> int:
    """f_type of the file system FD is on (fstatfs(2)); works on O_PATH fds."""
    buf = ctypes.create_string_buffer(_STATFS_SIZE)
    _check(_libc.fstatfs(ctypes.c_int(fd), buf))
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


# --- credentials ------------------------------------------------------------

def setgroups_empty() -> None:
    _check(_libc.setgroups(ctypes.c_size_t(0), None))


# --- capabilities (run --keep-caps) -----------------------------------------

PR_SET_KEEPCAPS = 8
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def capget() -> tuple[int, int, int]:
    """This thread's (effective, permitted, inheritable) capability sets, as 64-bit masks."""
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(_libc.capget(ctypes.byref(hdr), data))
    return tuple(getattr(data[0], f) | (getattr(data[1], f) << 32)
                 for f in ("effective", "permitted", "inheritable"))


def capset(effective: int, permitted: int, inheritable: int) -> None:
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in (0, 1):
        data[i].effective = (effective >> (32 * i)) & 0xFFFFFFFF
        data[i].permitted = (permitted >> (32 * i)) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> (32 * i)) & 0xFFFFFFFF
    _check(_libc.capset(ctypes.byref(hdr), data))


def cap_ambient_raise(cap: int) -> None:
    _check(_libc.prctl(ctypes.c_int(PR_CAP_AMBIENT), ctypes.c_ulong(PR_CAP_AMBIENT_RAISE),
                       ctypes.c_ulong(cap), ctypes.c_ulong(0), ctypes.c_ulong(0)))
