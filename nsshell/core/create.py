"""Creating namespaces: a helper enters the context, unshares, and hands back fds."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

from ..errors import KernelError, UsageError, from_oserror
from ..kernel import nstypes, syscalls
from ..kernel.nstypes import NsType
from . import spawn
from .handle import Handle, InitHolder

PROPAGATION = {
    "private": syscalls.MS_PRIVATE, "shared": syscalls.MS_SHARED,
    "slave": syscalls.MS_SLAVE, "unchanged": 0,
}


@dataclass
class CreateOptions:
    propagation: str = "private"
    monotonic: float | None = None
    boottime: float | None = None
    mount_proc: bool = False


def _offsets_text(opts: CreateOptions) -> str:
    lines = []
    for clock, value in (("monotonic", opts.monotonic), ("boottime", opts.boottime)):
        if value:
            secs = int(value // 1)
            nsecs = int(round((value - secs) * 1e9))
            lines.append(f"{clock} {secs} {nsecs}\n")
    return "".join(lines)


def _create_in_child(types: Sequence[NsType], opts: CreateOptions, lifeline: int | None):
    """Runs in the helper, already inside the context."""
    flags = nstypes.flags_of(types)
    try:
        syscalls.unshare(flags)
    except OSError as err:
        raise _unshare_error(err, types) from None
    if nstypes.MNT in types and PROPAGATION[opts.propagation]:
        # As unshare(1): nothing mounted in the new namespace may reach the host.
        try:
            syscalls.mount("none", "/", None, syscalls.MS_REC | PROPAGATION[opts.propagation])
        except OSError as err:
            raise from_oserror(err, f"making / {opts.propagation} in the new mount namespace")
    if nstypes.TIME in types:
        text = _offsets_text(opts)
        if text:
            try:
                with open("/proc/self/timens_offsets", "w") as f:
                    f.write(text)
            except OSError as err:
                raise from_oserror(err, "setting the clock offsets of the new time namespace")
    fds: list[int] = []
    names: list[str] = []
    pidfd = None
    if nstypes.PID in types:
        pidfd = spawn.start_init(lifeline, mount_proc=opts.mount_proc and nstypes.MNT in types)
    for t in types:
        fds.append(os.open(f"/proc/self/ns/{t.for_children}", os.O_RDONLY | os.O_CLOEXEC))
        names.append(t.name)
    if pidfd is not None:
        fds.append(pidfd)
    return spawn.Handoff(names, fds)


def _current_userns() -> str:
    try:
        return os.readlink("/proc/self/ns/user")
    except OSError:
        return "the current user namespace"


def _unshare_error(err: OSError, types: Sequence[NsType]) -> KernelError:
    what = f"creating {'+'.join(t.name for t in types)} namespaces"
    if err.errno == 1 and nstypes.USER not in types:
        return from_oserror(err, what, "creating namespaces other than user needs CAP_SYS_ADMIN "
                            f"in the current user namespace ({_current_userns()}, where uid "
                            f"{os.geteuid()} lacks it); create a user namespace with them "
                            f"(`new user+{'+'.join(t.name for t in types)}`)")
    if err.errno == 1:
        return from_oserror(err, what, "creating a user namespace was refused: see "
                            "/proc/sys/kernel/unprivileged_userns_clone, /proc/sys/user/"
                            "max_user_namespaces, or a seccomp/AppArmor policy; a chrooted or "
                            "threaded caller is refused too")
    if err.errno == 28:
        return from_oserror(err, what, "a namespace limit was reached "
                            "(/proc/sys/user/max_*_namespaces) or user namespaces nest 32 deep")
    if err.errno == 22:
        return from_oserror(err, what, "the kernel refused the combination "
                            "(time namespaces need Linux 5.6; check the current context)")
    return from_oserror(err, what)


def create(entries: Sequence[spawn.Entry], types: Sequence[NsType],
           opts: CreateOptions, fork_after: bool = False) -> dict[str, Handle]:
    """New namespaces of TYPES inside the context ENTRIES; handles keyed by type name."""
    if opts.propagation not in PROPAGATION:
        raise UsageError(f"unknown propagation {opts.propagation!r}",
                         f"valid: {', '.join(PROPAGATION)}")
    if (opts.monotonic or opts.boottime) and nstypes.TIME not in types:
        raise UsageError("clock offsets need a new time namespace", "add time to the types")
    lifeline_r = lifeline_w = None
    if nstypes.PID in types:
        lifeline_r, lifeline_w = os.pipe2(os.O_CLOEXEC)
    try:
        names, fds = spawn.call(entries, _create_in_child, tuple(types), opts, lifeline_r,
                                fork_after=fork_after)
    except BaseException:
        if lifeline_w is not None:
            os.close(lifeline_w)
        raise
    finally:
        if lifeline_r is not None:
            os.close(lifeline_r)
    holder = None
    if lifeline_w is not None:
        holder = InitHolder(fds.pop(), lifeline_w)
    handles: dict[str, Handle] = {}
    for name, fd in zip(names, fds):
        handles[name] = Handle(fd, nstypes.BY_NAME[name], origin="new",
                               holder=holder if name == "pid" else None)
    return handles
