"""The mount commands, and how each runs: in a helper inside the context's mount namespace
(ops.py holds what that helper does)."""

from __future__ import annotations

import os
import re

from nsshell.plugin import (Annotated, Choice, Entry, Message, Opt, ParamType, Path,
                            Table, UsageError, call_in, mountinfo, nstypes, syscalls)

from . import ops

__all__ = ["register"]


# -- parameter types -----------------------------------------------------------------

class Size(ParamType):
    """A tmpfs size: bytes, or a number with k, m, g, or a percentage of RAM."""
    metavar = "SIZE"

    def parse(self, text, session):
        if not re.fullmatch(r"\d+[kKmMgG%]?", text):
            raise ValueError("a size is a number with k, m, g or % (e.g. 64m)")
        return text

    def complete(self, prefix, session, ctx=None):
        return [(s, "") for s in ("16m", "64m", "256m", "1g", "50%") if s.startswith(prefix)]


Dir = Annotated[str, Path("DIR", dirs_only=True)]


# -- running in the context's mount namespace ----------------------------------------

def _abs(path: str) -> str:
    """Relative paths are taken from the shell's working directory."""
    return path if path.startswith("/") else os.path.abspath(path)


def _host_groups() -> set[int]:
    """Propagation peer groups the shell's own mount namespace takes part in."""
    groups: set[int] = set()
    for m in mountinfo.read():
        groups |= m.peer_groups()
    return groups


def _same_ns(fd: int, path: str) -> bool:
    a, b = os.fstat(fd), os.stat(path)
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _in_mnt(sh, fn, *args, host: bool = False, change: bool = True, pid: bool = False):
    """Run ops.FN(procfd, [host_groups,] *ARGS) in a helper inside the context's mount
    namespace (and its owning user namespace; and its PID namespace when PID).
    (The host's own mount namespace was refused before, unless --host: the plugin
    API's changes="mnt" marker.)"""
    on_host = sh.is_host("mnt")
    types = ["user", "mnt"] + (["pid"] if pid else [])
    entries = list(sh.entries(types))
    owner_fd = None
    if not on_host and sh.is_host("user") and os.geteuid() != 0:
        # Unprivileged: the capabilities come from the user namespace that owns it.
        owner_fd = syscalls.ns_get_userns(sh.context["mnt"].fd)
        if _same_ns(owner_fd, "/proc/self/ns/user"):
            os.close(owner_fd)
            owner_fd = None
        else:
            entries.insert(0, Entry(nstypes.USER, owner_fd, "the owner of the mount namespace"))
    procfd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        extra = (set() if on_host else _host_groups(),) if change else ()
        value, fds = call_in(entries, fn, procfd, *extra, *args,
                             fork_after=pid and sh.needs_fork_after(["pid"]))
    finally:
        os.close(procfd)
        if owner_fd is not None:
            os.close(owner_fd)
    for fd in fds:
        os.close(fd)
    return value


# -- the commands ---------------------------------------------------------------------

def register(api) -> None:
    """Declare the mount commands; all but `mount ls` change the context's mount
    namespace (changes="mnt": the plugin API refuses the host's own unless --host)."""

    @api.command("mount ls")
    def mount_ls(sh):
        """List the mounts of the current mount namespace, as /proc/self/mountinfo has them.

        Paths are as the namespace sees them (after `mount root`, relative to the new
        root).  Propagation is private, shared:N (peer group N), master:N (a slave
        of N) or unbindable.

        Examples:
          mount ls
          mount ls --json
        """
        mounts = _in_mnt(sh, ops.ls, change=False)
        rows = [[m["id"], m["parent"], m["target"], m["fstype"], m["source"], m["options"],
                 m["propagation"]] for m in mounts]
        return Table(["id", "parent", "target", "type", "source", "options", "propagation"],
                     rows, key="mounts", data=mounts)

    @api.command("mount tmpfs", changes="mnt")
    def mount_tmpfs(sh, dir: Dir, size: Annotated[str, Size()] = None, *, host: bool = False):
        """Mount a new tmpfs on DIR in the current mount namespace.

        Arguments:
          dir: where to mount it (it must exist there)
          size: the size limit: bytes, or a number with k, m, g, or % of RAM (default: half of RAM)

        Options:
          host: allow mounting in the host's own mount namespace

        Examples:
          new user+mnt; map root; mount tmpfs /mnt 64m
        """
        _in_mnt(sh, ops.tmpfs, _abs(dir), size, host=host)

    @api.command("mount bind", changes="mnt")
    def mount_bind(sh, src: Annotated[str, Path("SRC")], dst: Annotated[str, Path("DST")],
                   mode: Annotated[str, Choice("ro", "rw", metavar="ro")] = "rw", *,
                   host: bool = False):
        """Bind-mount SRC (with the mounts below it) on DST in the current mount namespace.

        Arguments:
          src: the file or directory to show
          dst: where to show it (a directory for a directory, a file for a file)
          mode: ro makes the new mount read-only

        Options:
          host: allow mounting in the host's own mount namespace

        Examples:
          mount bind /etc /mnt ro
          mount bind /srv/data /mnt/data
        """
        _in_mnt(sh, ops.bind, _abs(src), _abs(dst), mode == "ro", host=host)

    @api.command("mount proc", changes="mnt")
    def mount_proc(sh, dir: Dir = "/proc", *, host: bool = False):
        """Mount a proc filesystem of the current PID namespace on DIR (default /proc).

        The mount is made by a process inside the context's PID namespace, so it
        shows that namespace's processes.  In a user namespace proc can be mounted
        only while a fully visible proc is mounted in the mount namespace: mount it
        into a new root before `mount root` detaches the old one.

        Arguments:
          dir: where to mount it

        Options:
          host: allow mounting in the host's own mount namespace

        Examples:
          new user+mnt+pid; map root; mount proc
          mount proc /mnt/root/proc
        """
        _in_mnt(sh, ops.proc, _abs(dir), host=host, pid=True)

    @api.command("mount overlay", changes="mnt")
    def mount_overlay(sh, lower: Annotated[str, Path("LOWER", dirs_only=True)],
                      upper: Annotated[str, Path("UPPER", dirs_only=True)],
                      work: Annotated[str, Path("WORK", dirs_only=True)], dir: Dir, *,
                      host: bool = False):
        """Mount an overlay filesystem on DIR: LOWER read-only, changes written to UPPER.

        LOWER may be several directories joined with ':' (the first on top).  UPPER
        and WORK must be on the same filesystem, WORK empty; in a user namespace
        they are typically on a tmpfs mounted there first (Linux 5.11+).

        Arguments:
          lower: the read-only layer(s)
          upper: the directory that receives changes
          work: an empty directory beside UPPER, for the kernel's use
          dir: where the merged tree appears

        Options:
          host: allow mounting in the host's own mount namespace

        Examples:
          mount overlay build/rootfs /mnt/upper /mnt/work /mnt/root
        """
        lowers = [_abs(p) for p in lower.split(":") if p]
        if not lowers:
            raise UsageError("LOWER is empty", "give a directory, or several joined with ':'")
        _in_mnt(sh, ops.overlay, lowers, _abs(upper), _abs(work), _abs(dir), host=host)

    @api.command("mount propagation", changes="mnt")
    def mount_propagation(sh, mode: Annotated[str, Choice("private", "shared", "slave",
                                                          "unbindable", metavar="MODE")],
                          path: Annotated[str, Path("PATH", dirs_only=True)], *,
                          recursive: Annotated[bool, Opt("-r")] = False,
                          host: bool = False):
        """Change the propagation of the mount at PATH (and the mounts below it with -r).

        Arguments:
          mode: private, shared, slave or unbindable
          path: a mount point

        Options:
          recursive: also every mount below PATH
          host: allow changing the host's own mount namespace

        Examples:
          mount propagation private / -r
          mount propagation shared /mnt
        """
        _in_mnt(sh, ops.propagation, mode, _abs(path), recursive, host=host)

    @api.command("mount umount", changes="mnt")
    def mount_umount(sh, dir: Dir, *, lazy: Annotated[bool, Opt("-l")] = False,
                     host: bool = False):
        """Unmount the mount on DIR in the current mount namespace.

        Arguments:
          dir: a mount point

        Options:
          lazy: detach it now even if busy (MNT_DETACH); it goes when no longer used
          host: allow unmounting in the host's own mount namespace

        Examples:
          mount umount /mnt
          mount umount -l /mnt
        """
        _in_mnt(sh, ops.umount, _abs(dir), lazy, host=host)

    @api.command("mount root", changes="mnt")
    def mount_root(sh, dir: Dir, *, host: bool = False):
        """Make DIR the root of the current mount namespace (pivot_root); the old root is detached.

        DIR is bind-mounted onto itself first unless it is a mount point.
        Afterwards `run`, `sh` and these commands see DIR as /, and nothing of the
        old root is reachable from the namespace.  Mount proc into DIR before this
        (see `mount proc`).

        Arguments:
          dir: the new root (a container's root filesystem)

        Options:
          host: allow changing the host's own mount namespace (almost never what you want)

        Examples:
          mount root /mnt/root
        """
        done = _in_mnt(sh, ops.root, _abs(dir), host=host)
        if done == "":
            return Message(f"finished an interrupted `mount root`: the old root was still stacked "
                           f"on the new one and is now detached; {dir} was not pivoted into "
                           "(give `mount root` again to pivot further)")
        return None
