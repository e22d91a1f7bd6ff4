"""Writing uid/gid maps and setgroups of a user namespace.

A map is written through /proc/PID of a process inside the namespace, by a
process in the namespace's parent.  Neither needs to live on: the writer (the
shell when the parent is its own user namespace, else a helper that entered the
parent) forks a child that joins the target, writes the child's files, and the
child exits.
"""

from __future__ import annotations

import os
from ...kernel.values import Value

from ...errors import KernelError, NsshellError, from_oserror
from ...kernel import idmap, nstypes, syscalls
from ...kernel.idmap import IdRange
from ..proc import harden, spawn

TYPE_CHECKING = False   # typing is not imported to start (tests/test_imports.py)
if TYPE_CHECKING:
    from typing import Sequence


class MapRequest(Value):
    uid: list[IdRange] | None
    gid: list[IdRange] | None
    setgroups: str | None = None     # 'deny' / 'allow' / None
    use_helper: bool = False         # newuidmap/newgidmap (subordinate ranges)

    _fields = ("uid", "gid", "setgroups", "use_helper")

    def __init__(self, uid, gid, setgroups=None, use_helper=False) -> None:
        self.uid = uid
        self.gid = gid
        self.setgroups = setgroups
        self.use_helper = use_helper


def _describe(kind: str, ranges: Sequence[IdRange]) -> str:
    return f"{kind}_map ({'; '.join(map(str, ranges))})"


def _write_from_parent(user_fd: int, label: str, req: MapRequest, privileged: bool) -> dict:
    """Runs in the target's parent user namespace, in the shell or a helper (PRIVILEGED:
    the shell is root where its memory belongs, so it may open a protected process's
    /proc files)."""
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        try:
            # It holds nothing of the shell's (it may be dumpable below): only its two pipes.
            syscalls.close_fds_except({ready_w, go_r, user_fd})
            syscalls.setns(user_fd, nstypes.CLONE_NEWUSER)
            os.close(user_fd)
            harden.expose_to_map_writer(privileged)
            os.write(ready_w, b"1")
            os.read(go_r, 1)
            os._exit(0)
        except BaseException:
            os._exit(1)
    os.close(ready_w)
    os.close(go_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise KernelError(f"could not enter {label} to write its maps",
                              "the caller must own the user namespace or have CAP_SYS_ADMIN in it")
        done = {}
        for kind, ranges in (("uid", req.uid), ("gid", req.gid)):
            if ranges is None:
                continue
            if idmap.read_map(pid, kind):
                raise NsshellError(f"the {kind} map of {label} is already written",
                                   "the kernel takes a map once; create a new user namespace")
        if req.setgroups is not None:
            try:
                idmap.write_setgroups(pid, req.setgroups)
            except OSError as err:
                raise from_oserror(err, f"writing {req.setgroups} to setgroups of {label}",
                                   "setgroups can be changed only before gid_map is written, and "
                                   "only to deny when the parent namespace denies it")
            done["setgroups"] = req.setgroups
        for kind, ranges in (("uid", req.uid), ("gid", req.gid)):
            if ranges is None:
                continue
            try:
                if req.use_helper:
                    idmap.write_map_with_helper(pid, kind, ranges)
                else:
                    idmap.write_map(pid, kind, ranges)
            except OSError as err:
                raise _map_error(err, kind, ranges, label) from None
            done[kind] = [r.to_json() for r in ranges]
        return done
    finally:
        os.close(ready_r)
        os.close(go_w)
        os.waitpid(pid, 0)


def _map_error(err: OSError, kind: str, ranges, label: str) -> KernelError:
    what = f"writing {_describe(kind, ranges)} of {label}"
    if err.errno == 1:
        mine = os.geteuid() if kind == "uid" else os.getegid()
        hint = (f"without CAP_SET{kind.upper()} in the parent user namespace only your own "
                f"{kind} ({mine}) may be mapped, as one id (`map root`), and gid_map needs "
                "setgroups denied first; ranges from /etc/sub{kind} go through `map auto`")
        return from_oserror(err, what, hint)
    if err.errno == 22:
        return from_oserror(err, what, "the kernel refused the ranges: they overlap, exceed "
                            "340 lines, or name ids not mapped in the parent namespace")
    return from_oserror(err, what)


def write(parent_entry: spawn.Entry | None, user_entry: spawn.Entry, req: MapRequest) -> dict:
    """Write REQ to the user namespace USER_ENTRY, from its parent (None: the shell's own)."""
    privileged = os.geteuid() == 0
    if parent_entry is None:
        # The shell is in the parent already: it writes, to the /proc of a child of its
        # own that joins the target (the child does the setns), with no helper between.
        return _write_from_parent(user_entry.fd, user_entry.label, req, privileged)
    value, _ = spawn.call([parent_entry], _write_from_parent, user_entry.fd, user_entry.label,
                          req, privileged, root=False)
    return value


def read_maps_in_child(user_fd: int) -> dict:
    """uid_map, gid_map and setgroups of a user namespace, read through a child inside it."""
    def inside():
        return {
            "uid_map": [r.to_json() for r in idmap.read_map("self", "uid")],
            "gid_map": [r.to_json() for r in idmap.read_map("self", "gid")],
            "setgroups": idmap.read_setgroups("self"),
        }
    value, _ = spawn.call([spawn.Entry(nstypes.USER, user_fd, "user")], inside, root=False)
    return value
