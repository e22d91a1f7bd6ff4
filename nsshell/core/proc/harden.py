"""Who a process nsshell starts is, and who can take control of it: two rules, each
enforced here and nowhere else (DESIGN.md, "Security rules").

1. Identity (`become_root`).  A program `run` in a user namespace that maps root runs
   as that root: uid 0 and gid 0 of the namespace, i.e. the mapped host ids (kuid
   100000 after `map 0 100000 65536`), never the caller's host ids.  The kernel
   decides from the user namespace itself, not from a map file read through whatever
   /proc is mounted at that moment (a container's, a new PID namespace's where
   /proc/self does not exist, or none at all).

2. Control (`protect`).  No helper nsshell leaves inside a namespace (PID init, the
   holder, the run helper, the socket opener, the keeper, any forked helper) can be
   controlled from inside with more privilege than the inside has.

   The choice: PR_SET_DUMPABLE 0, not (only) dropping to the mapped ids.
   - A helper forked from the shell keeps the shell's mm, and an mm belongs to the
     user namespace it was created in (the shell's: the initial one).  For a process
     that is not dumpable, the kernel (__ptrace_may_access) asks for CAP_SYS_PTRACE in
     *that* namespace before ptrace attach/seize, /proc/PID/mem, environ, fd/,
     pidfd_getfd and process_vm_readv: a container's root never has it.  Without it,
     the container's root passes the first check by holding CAP_SYS_PTRACE in the
     namespace the helper's credentials live in (PID 1 of `new user+pid`, host uid 0)
     and could inject syscalls that run as host root, or write pickles to the shell
     through the helper's channel.
   - Dropping ids alone cannot do it: the init and the creating helper exist before
     any map does, and the run helper already runs as the mapped root -- the very
     uid of the container's root, so the same-uid rule lets it in; only the dumpable
     check keeps it out.
   - exec() makes the program dumpable again, in an mm owned by the container's user
     namespace: right, the program is the container's own.
   The kernel also resets the flag (to fs.suid_dumpable, which may be 1) whenever a
   process changes its ids, so `become_root` calls `protect` again afterwards.
"""

from __future__ import annotations

import errno
import os

from ...errors import KernelError, from_oserror
from ...kernel import syscalls


def protect() -> None:
    """Make this helper uncontrollable from inside the namespaces it is in or enters
    (rule 2 above).  Call it first thing in every forked helper; it costs one prctl."""
    syscalls.set_dumpable(False)


def expose_to_map_writer(writer_privileged: bool) -> None:
    """The one exception to `protect`: the short-lived child whose /proc/PID/uid_map,
    gid_map and setgroups an unprivileged shell writes (directly, or through the
    setuid newuidmap, which checks that /proc/PID belongs to its caller).  A process
    that is not dumpable has its /proc files owned by root, so the writer could not
    open them.  Such a child holds nothing (it only waits to be told to leave) and its
    ids are the unprivileged caller's own: whoever can reach it gains nothing.  For a
    privileged writer it stays protected."""
    if not writer_privileged:
        syscalls.set_dumpable(True)


def open_own_proc_file(name: str, flags: int) -> int:
    """An fd on this helper's own /proc/self/NAME that only its owner may open (e.g.
    timens_offsets, mode 0644): a protected process's /proc files belong to root, so
    it is dumpable for the one open() and protected again at once.  Call it only
    before entering any namespace, as spawn's PREPARE does: in the shell's own user
    namespace nothing inside a container can reach it (the kernel refuses ptrace from
    a descendant user namespace without CAP_SYS_PTRACE over the target's).  The fd
    also reaches this process through the shell's /proc, whichever /proc the
    namespaces entered later have mounted."""
    syscalls.set_dumpable(True)
    try:
        return os.open(f"/proc/self/{name}", flags | os.O_CLOEXEC)
    finally:
        protect()


def drop_groups() -> None:
    """Leave every supplementary group this process may leave (host group 0 above all).
    EPERM (no CAP_SETGID here, or setgroups denied in this user namespace) leaves the
    list as it is: it is then the caller's own."""
    try:
        syscalls.setgroups_empty()
    except PermissionError:
        pass


def become_root() -> None:
    """In a helper that has just joined a user namespace (setns or unshare): become its
    root, uid 0 and gid 0, when the namespace maps them, as nsenter does; otherwise
    keep the caller's ids.

    setresuid(0, 0, 0) fails with EINVAL exactly when uid 0 has no mapping in the
    current user namespace; the helper holds every capability there, so nothing else
    refuses it.  That is the namespace's own answer, whichever /proc is mounted.  Half
    a mapping (uid 0 without gid 0) is refused: the program would keep the caller's
    host group.  The ids are then read back (getresuid/getresgid); anything but what
    was intended is an error, never silence.
    """
    drop_groups()  # while the helper still may (before a namespace that denies setgroups)
    before = (os.getresuid(), os.getresgid())
    try:
        os.setresuid(0, 0, 0)
    except OSError as err:
        if err.errno != errno.EINVAL:
            raise from_oserror(err, "becoming root of the user namespace (setresuid 0)") from None
        # Root is not mapped (or no map is written yet): the program runs as the caller.
        now = (os.getresuid(), os.getresgid())
        if now != before:
            raise KernelError(f"a refused setresuid changed the ids: {before} became {now}")
        protect()
        return
    try:
        os.setresgid(0, 0, 0)
    except OSError as err:
        protect()
        if err.errno == errno.EINVAL:
            raise KernelError("uid 0 is mapped in the user namespace but gid 0 is not: "
                              "the program would keep the caller's group",
                              "write the gid map too (`map -g 0 OUTSIDE COUNT`), or "
                              "`set root off` to run as yourself") from None
        raise from_oserror(err, "becoming root of the user namespace (setresgid 0)") from None
    protect()  # the id change reset the flag to fs.suid_dumpable
    drop_groups()  # again: allowed now if this namespace allows setgroups
    got = (os.getresuid(), os.getresgid())
    if got != ((0, 0, 0), (0, 0, 0)):
        raise KernelError(f"becoming root of the user namespace left the ids at {got}")


def become(uid: int | None, gid: int | None, groups: tuple[int, ...] | None,
           keep_caps: bool = False) -> None:
    """`run --uid/--gid/--groups/--keep-caps`: after `enter` (and `become_root`), take the
    ids asked for, as nsenter -S/-G does.  Rule 1 still holds: the ids are ids of the
    user namespace the helper is in, and the kernel alone says whether they are mapped
    (EINVAL from setresuid/setresgid), never a map file.  With KEEP_CAPS the capabilities
    the helper holds there survive the uid change and the exec (raised as ambient
    capabilities, as nsenter --keep-caps does).  Protected again afterwards (an id change
    resets the dumpable flag); the ids are read back and anything else is an error."""
    if keep_caps:
        syscalls.prctl(syscalls.PR_SET_KEEPCAPS, 1)
    try:
        if groups is not None:
            os.setgroups(list(groups))
        elif uid is not None or gid is not None:
            drop_groups()
        if gid is not None:
            os.setresgid(gid, gid, gid)
        if uid is not None:
            os.setresuid(uid, uid, uid)
    except OSError as err:
        protect()
        if err.errno == errno.EINVAL:
            raise KernelError(f"uid {uid} or gid {gid} is not mapped in the context's user namespace",
                              "`map` it first, or pick an id the namespace maps") from None
        raise from_oserror(err, f"taking the ids uid={uid} gid={gid} groups={groups}",
                           "changing ids needs CAP_SETUID/CAP_SETGID in the context's user "
                           "namespace (and setgroups not denied there)") from None
    protect()
    got_u, got_g = os.getresuid(), os.getresgid()
    if (uid is not None and got_u != (uid, uid, uid)) or (gid is not None and got_g != (gid, gid, gid)):
        raise KernelError(f"taking uid {uid} gid {gid} left the ids at {got_u} {got_g}")
    if groups is not None and sorted(os.getgroups()) != sorted(set(groups)):
        raise KernelError(f"setting the groups {list(groups)} left them at {os.getgroups()}")
    if keep_caps:
        _, permitted, _ = syscalls.capget()
        syscalls.capset(permitted, permitted, permitted)
        cap = 0
        while permitted >> cap:
            if permitted >> cap & 1:
                syscalls.cap_ambient_raise(cap)
            cap += 1
        syscalls.prctl(syscalls.PR_SET_KEEPCAPS, 0)
