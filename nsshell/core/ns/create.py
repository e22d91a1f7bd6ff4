"""Creating namespaces: a helper enters the context, unshares, and hands back fds."""

from __future__ import annotations

import errno
import itertools
import os
from ...kernel.values import Value

from ...errors import KernelError, NsshellError, UsageError, from_oserror
from ...kernel import nsfs, nstypes, syscalls
from ...kernel.nstypes import NsType
from ...progress import NULL as NULL_PROGRESS
from ...progress import Progress
from ..proc import harden, program, reaper, spawn
from . import creator
from .handle import Handle, InitHolder

TYPE_CHECKING = False   # typing is not imported to start (tests/test_imports.py)
if TYPE_CHECKING:
    from typing import Sequence

PROPAGATION = {
    "private": syscalls.MS_PRIVATE, "shared": syscalls.MS_SHARED,
    "slave": syscalls.MS_SLAVE, "unchanged": 0,
}


class CreateOptions(Value):
    propagation: str = "private"
    monotonic: float | None = None
    boottime: float | None = None
    mount_proc: bool = False

    _fields = ("propagation", "monotonic", "boottime", "mount_proc")

    def __init__(self, propagation="private", monotonic=None, boottime=None,
                 mount_proc=False) -> None:
        self.propagation = propagation
        self.monotonic = monotonic
        self.boottime = boottime
        self.mount_proc = mount_proc


def _offsets_text(opts: CreateOptions) -> str:
    lines = []
    for clock, value in (("monotonic", opts.monotonic), ("boottime", opts.boottime)):
        if value:
            secs = int(value // 1)
            nsecs = int(round((value - secs) * 1e9))
            lines.append(f"{clock} {secs} {nsecs}\n")
    return "".join(lines)


# The helper reads its new namespaces through the shell's /proc, opened before it
# enters anything (spawn's PREPARE): the context's mount namespace may have another
# proc on /proc (a PID namespace's, where this helper has no /proc/self), or none.
# Clock offsets are written to the creating process's own timens_offsets, which only
# its owner may open: opened before entering too (harden.open_own_proc_file), and the
# process that unshares the time namespace must be that helper.  With fork_after (a
# new PID namespace nested in the context's), the rest is unshared in the grandchild,
# so the user and time namespaces are made first, in the helper (spawn's EARLY).

def _open_proc(offsets: bool) -> tuple[int, int | None]:
    proc = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    if not offsets:
        return proc, None
    try:
        return proc, harden.open_own_proc_file("timens_offsets", os.O_WRONLY)
    except OSError as err:
        raise from_oserror(err, "opening the clock offsets of the new time namespace") from None


def _write_offsets(fd: int, opts: CreateOptions) -> None:
    try:
        os.write(fd, _offsets_text(opts).encode())
    except OSError as err:
        raise from_oserror(err, "setting the clock offsets of the new time namespace") from None


def _early(types: Sequence[NsType], opts: CreateOptions, fork_after: bool,
           opened: tuple[int, int | None]) -> tuple[int, int | None, int]:
    """(the shell's /proc, an offsets fd still to write, flags already unshared)."""
    proc, offsets = opened
    if offsets is None or not fork_after:
        return proc, offsets, 0
    first = [t for t in types if t in (nstypes.USER, nstypes.TIME)]
    _unshare(first, types)
    _write_offsets(offsets, opts)
    os.close(offsets)
    return proc, None, nstypes.flags_of(first)


def _steps(types: Sequence[NsType], opts: CreateOptions, fork_after: bool) -> dict:
    """spawn's PREPARE and EARLY for creating TYPES."""
    offsets = nstypes.TIME in types and bool(_offsets_text(opts))
    # closures, not functools.partial: functools (and collections under it) would be
    # ~2 ms of a batch's start that nothing else on its way imports
    types = tuple(types)
    return dict(prepare=lambda: _open_proc(offsets),
                early=lambda opened: _early(types, opts, fork_after, opened))


def _unshare(these: Sequence[NsType], types: Sequence[NsType]) -> None:
    if not these:
        return
    try:
        syscalls.unshare(nstypes.flags_of(these))
    except OSError as err:
        raise _unshare_error(err, types) from None
    harden.protect()  # new credentials (a new user namespace): still not the inside's


def _create_in_child(early: tuple[int, int | None, int], types: Sequence[NsType],
                     opts: CreateOptions, lifeline: int | None):
    """Runs in the helper, already inside the context.  EARLY: what `_early` did (the
    shell's /proc, an offsets fd left to write, and the flags it already unshared)."""
    proc, offsets, done = early
    _unshare([t for t in types if not t.flag & done], types)
    if nstypes.MNT in types and PROPAGATION[opts.propagation]:
        # As unshare(1): nothing mounted in the new namespace may reach the host.
        try:
            syscalls.mount("none", "/", None, syscalls.MS_REC | PROPAGATION[opts.propagation])
        except OSError as err:
            raise from_oserror(err, f"making / {opts.propagation} in the new mount namespace")
    if offsets is not None:
        _write_offsets(offsets, opts)
    fds: list[int] = []
    names: list[str] = []
    pidfd = None
    # pid_for_children can be opened only once the init exists.
    if nstypes.PID in types:
        pidfd = reaper.start_init(lifeline, mount_proc=opts.mount_proc and nstypes.MNT in types)
    for t in types:
        fds.append(nsfs.open_proc_ns("self", t, for_children=True, proc_fd=proc))
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
           opts: CreateOptions, fork_after: bool = False,
           more_likely: bool = True) -> dict[str, Handle]:
    """New namespaces of TYPES inside the context ENTRIES; handles keyed by type name.
    MORE_LIKELY: more `new`s in this context may follow (not when this one is joined):
    worth starting the context's creator (core/ns/creator.py) if none runs."""
    if opts.propagation not in PROPAGATION:
        raise UsageError(f"unknown propagation {opts.propagation!r}",
                         f"valid: {', '.join(PROPAGATION)}")
    if (opts.monotonic or opts.boottime) and nstypes.TIME not in types:
        raise UsageError("clock offsets need a new time namespace", "add time to the types")
    fds = _by_creator(entries, types, opts, more_likely)
    if fds is not None:
        return _handles([t.name for t in types], fds, None)
    lifeline_r = lifeline_w = None
    try:
        if nstypes.PID in types:
            lifeline_r, lifeline_w = os.pipe2(os.O_CLOEXEC)
        # Only a new PID namespace needs the grandchild (it nests in the context's).
        fork_after = fork_after and nstypes.PID in types
        names, fds = spawn.call(entries, _create_in_child, tuple(types), opts, lifeline_r,
                                fork_after=fork_after, **_steps(types, opts, fork_after))
    except BaseException as e:
        if lifeline_w is not None:
            os.close(lifeline_w)
        # EMFILE here (receiving the fds) or in the helper (opening them; its error
        # comes back as a KernelError with the errno)
        if isinstance(e, (OSError, KernelError)) and e.errno == errno.EMFILE:
            raise _no_fds() from None
        raise
    finally:
        if lifeline_r is not None:
            os.close(lifeline_r)
    holder = None
    if lifeline_w is not None:
        holder = InitHolder(fds.pop(), lifeline_w)
    return _handles(names, fds, holder)


def _by_creator(entries: Sequence[spawn.Entry], types: Sequence[NsType],
                opts: CreateOptions, start: bool) -> list[int] | None:
    """fds on new namespaces of TYPES made by the context's creator (core/ns/creator.py),
    or None when it does not make such (user, pid, time), none runs and START is false,
    or it refused: the caller forks a helper."""
    if not all(t.name in creator.TYPES for t in types):
        return None
    c = creator.creator_for(entries, root=True, start=start)
    if c is None or not c.can(types):
        return None
    return c.make(types, PROPAGATION[opts.propagation] if nstypes.MNT in types else 0)


def _handles(names: Sequence[str], fds: list[int],
             holder: InitHolder | None) -> dict[str, Handle]:
    if fds and max(fds) + 64 >= _soft_nofile():
        _grow_soft_nofile()  # thousands of `new`s: grow the fd limit before one fails
    handles: dict[str, Handle] = {}
    for name, fd in zip(names, fds):
        handles[name] = Handle(fd, nstypes.BY_NAME[name], origin="new",
                               holder=holder if name == "pid" else None)
    return handles


# --- many at once ---------------------------------------------------------------------

MANY_EXCLUDED = ("user", "pid")  # a user namespace would nest in the previous; pid needs an init each
_CHUNK_FDS = 240  # fds per helper (SCM_RIGHTS carries at most 253 in one message)


def _no_fds() -> NsshellError:
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return NsshellError(f"too many open files: the session holds as many handles as "
                        f"RLIMIT_NOFILE allows (soft {soft}, hard {hard})",
                        "`close` some, or raise the hard limit before starting nsshell "
                        "(ulimit -Hn as root, LimitNOFILE= in a systemd unit)")


def _soft_nofile() -> int:
    import resource
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _grow_soft_nofile() -> None:
    """Double the soft fd limit, as far as the hard limit allows (at the hard limit, the
    `new` that does not fit says so: _no_fds)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = soft * 2 if hard == resource.RLIM_INFINITY else min(hard, soft * 2)
    if new > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def ensure_fd_room(more: int) -> int:
    """Raise the soft RLIMIT_NOFILE so MORE fds fit beside those open; return the soft limit.

    Raised as far as needed (not to the hard limit: programs `run` inherit it).
    When even the hard limit is too low, a clear error says so and nothing changes.
    """
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 64
    need = in_use + more + 64
    if need <= soft:
        return soft
    if hard != resource.RLIM_INFINITY and need > hard:
        room = max(hard - in_use - 64, 0)
        raise NsshellError(
            f"holding {more} more handles needs {need} open files, but the hard limit "
            f"(RLIMIT_NOFILE) is {hard}: room for about {room} more",
            "raise it before starting nsshell (ulimit -Hn as root, LimitNOFILE= in a "
            "systemd unit, nofile in /etc/security/limits.conf), or create fewer")
    new_soft = need + need // 4
    if hard != resource.RLIM_INFINITY:
        new_soft = min(new_soft, hard)
    program.remember_nofile(soft, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
    return new_soft


def _create_many_in_child(early: tuple[int | None, int], types: Sequence[NsType],
                          opts: CreateOptions, count: int):
    fds: list[int] = []
    for _ in range(count):  # no PID namespace among TYPES: no fork_after, nothing done early
        fds.extend(_create_in_child(early, types, opts, None).fds)
    return spawn.Handoff([t.name for t in types], fds)


_MIN_CHUNK = 16  # below this, a helper's fork costs more than the namespaces it makes


def _cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except OSError:
        return os.cpu_count() or 1


def _chunk_sizes(count: int, most: int) -> list[int]:
    """COUNT split over helpers: at most MOST each (one SCM_RIGHTS message), and over
    as many CPUs as there are while each helper still gets enough to be worth a fork."""
    helpers = max(-(-count // most), min(_cpus(), count // _MIN_CHUNK))
    base, extra = divmod(count, helpers)
    return [base + (1 if i < extra else 0) for i in range(helpers)]


def create_many(entries: Sequence[spawn.Entry], types: Sequence[NsType], opts: CreateOptions,
                count: int, fork_after: bool = False,
                progress: Progress = NULL_PROGRESS) -> list[dict[str, Handle]]:
    """COUNT new sets of namespaces of TYPES inside ENTRIES, a few helpers for all of
    them (each creates up to ~240 fds' worth and hands them back in one message),
    instead of a helper per set.  Handles keyed by type name, one dict per set."""
    bad = [t.name for t in types if t.name in MANY_EXCLUDED]
    if bad:
        raise UsageError(f"--count cannot create {'+'.join(bad)} namespaces",
                         "a user namespace would nest in the one before, and each PID "
                         "namespace needs its own init: create those one at a time")
    if count < 1:
        raise UsageError("--count must be at least 1")
    if opts.propagation not in PROPAGATION:
        raise UsageError(f"unknown propagation {opts.propagation!r}",
                         f"valid: {', '.join(PROPAGATION)}")
    if (opts.monotonic or opts.boottime) and nstypes.TIME not in types:
        raise UsageError("clock offsets need a new time namespace", "add time to the types")
    ensure_fd_room(count * len(types))
    sizes = _chunk_sizes(count, max(1, _CHUNK_FDS // len(types)))
    out: list[dict[str, Handle]] = []
    running: list[spawn.Pending] = []
    task = progress.task(f"creating {'+'.join(t.name for t in types)} namespaces", total=count)
    try:
        # Up to one helper per CPU at once: creating a network namespace is mostly
        # work outside the rtnl lock (pernet init), so they do scale.
        waiting = iter(sizes)
        for n in itertools.islice(waiting, _cpus()):
            running.append(spawn.start(entries, _create_many_in_child, tuple(types), opts, n,
                                       **_steps(types, opts, False)))
        for n in sizes:
            names, fds = running.pop(0).result()
            nxt = next(waiting, None)
            if nxt is not None:
                running.append(spawn.start(entries, _create_many_in_child, tuple(types), opts,
                                           nxt, **_steps(types, opts, False)))
            if len(fds) != n * len(names):
                for fd in fds:
                    os.close(fd)
                raise NsshellError(f"a helper handed back {len(fds)} namespaces, not {n * len(names)}")
            for i in range(n):
                chunk = fds[i * len(names):(i + 1) * len(names)]
                out.append({name: Handle(fd, nstypes.BY_NAME[name], origin="new")
                            for name, fd in zip(names, chunk)})
            task.advance(n)
    except BaseException:
        for pending in running:
            pending.cancel()
        for handles in out:  # all or nothing
            for h in handles.values():
                h.close()
        raise
    finally:
        task.finish()
    return out
