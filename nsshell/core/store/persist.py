"""Keeping namespaces: the bind-mount store, /run/netns compatibility, reload by name.

Layout (ROOT: a value the caller gives; the CLI decides it once, from --persist-root,
$NSSHELL_PERSIST_ROOT or /run/nsshell, and the `persist_root` setting may change it):

    ROOT/NAME/TYPE        a bind mount of the namespace file (nsfs), one per type
    ROOT/NAME/meta.json   identities, the /run/netns entry made, the PID init and its holder
    /run/netns/NAME       the net namespace again, so `ip netns exec NAME` works

ROOT is made a private bind mount of itself first (the kernel refuses bind
mounts of mount-namespace files on a shared mount); /run/netns is set up the
way `ip netns add` does it (a bind mount of itself, shared), so both tools can
use it at once.  Paths are walked one component at a time with O_NOFOLLOW;
the parent directory is flock()ed for the whole change, so two shells
persisting one name at once cannot both win.  Anything half-made is undone.

An unprivileged user cannot mount on the host: their sets are kept by the
per-user keeper process instead (core/store/keeper.py).  The walking of paths and the
mount table are in core/store/storefs.py, a persisted PID init's holder in
core/store/holder.py.

Everything here takes plain values (a root path, names, handles), never a session:
the command layer (nsshell/commands/persist.py) resolves persisted names for a
session, lazily, and keeps the session's own records.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time

from ... import names
from ...errors import KernelError, NotFoundError, NsshellError, UsageError
from ...kernel import nstypes, syscalls
from ...kernel.nsfs import open_ns, open_proc_ns, owner_nsid
from ..proc import spawn
from ..ns.handle import Handle, NsSet
from .entry import Persisted, init_info
from .holder import (PersistedInit, proven_init, same_process, start_holder,
                     stop_proven_holder, take_lifeline)
from .storefs import (DIR_FLAGS, NETNS_DIR, ROOT_MARK, check_trusted, ensure_netns_dir, ensure_private_root,
                      exists_dir, fdpath, mount_error, normal, release_root, store_error,
                      symlink_error, walk, write_atomic)

from . import DEFAULT_ROOT, ENV_ROOT  # noqa: E402,F401 - (the store's; the CLI's default)
META = "meta.json"

# A persisted name is a name like any other: the one rule (nsshell/names.py).
NAME_OK = names.valid


def check_name(name: str) -> str:
    """NAME, or the refusal every command gives a name that breaks the rule."""
    why = names.problem(name)
    if why is not None:
        raise UsageError(f"NAME {name!r}: {why}", names.RULE)
    return name


# --- the root ---------------------------------------------------------------------

def parse_root(text: str) -> str:
    """TEXT as a persist root (absolute, no '..', normalised); ValueError saying why not."""
    if "\0" in text:
        raise ValueError("the persist root cannot contain a NUL byte")
    if not text.startswith("/"):
        raise ValueError("the persist root must be an absolute path")
    try:
        return normal(text)
    except UsageError as e:
        raise ValueError(e.message) from None


# --- the store (runs in a forked helper) --------------------------------------------------
#
# An entry is made and removed as a transaction, so that a helper killed at any step
# (OOM, kill -9 of the process group) leaves something the next `persist`,
# `unpersist` or `ls` can finish or roll back:
#
#   persist:   .NAME.new/meta.json  {"state": "making", everything it will make}
#              rename .NAME.new -> NAME          (the intent, under its real name)
#              holder started, then recorded in meta.json (it stays only once confirmed)
#              placeholders and bind mounts, /run/netns/NAME
#              holder confirmed; meta.json {"state": "done"}   (the commit: a rename)
#   unpersist: meta.json {"state": "removing"}; unbind, unlink; the holder;
#              rename NAME -> .NAME.gone; meta.json and the directory removed
#
# A "making" entry is rolled back, a "removing" one finished, a .NAME.new or .NAME.gone
# directory removed: all by `_remove_entry`, the one way an entry is taken apart.
# Nothing is removed that meta.json does not name and the kernel does not confirm
# (the namespace file's inode), and only in directories root or the caller owns.

MAKING, DONE, REMOVING = "making", "done", "removing"
KILL_ENV = "NSSHELL_TEST_KILL_AT"  # tests: "persist:N" SIGKILLs the helper at its Nth step


class _Steps:
    """The steps of a store change; with $NSSHELL_TEST_KILL_AT=OP:N the helper is killed
    for real (SIGKILL) at step N, so tests can interrupt every step deterministically."""

    def __init__(self, op: str):
        self.op, self.n, self.kill_at = op, 0, None
        want = os.environ.get(KILL_ENV, "")
        if want.startswith(op + ":") and want[len(op) + 1:].isdigit():
            self.kill_at = int(want[len(op) + 1:])

    def __call__(self, name: str) -> None:
        self.n += 1
        if self.kill_at == self.n:
            os.write(2, f"nsshell-test: killed at {self.op}:{self.n} ({name})\n".encode())
            os.kill(os.getpid(), 9)


def _no_steps(_name: str) -> None:
    pass


def _open_meta(dfd: int, name: str = META) -> int | None:
    try:
        return os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                       dir_fd=dfd)
    except OSError:
        return None


def _read_meta(dfd: int, where: str = "") -> dict | None:
    """The entry's meta.json; None if there is none (or it is not JSON).  One that root or
    the caller does not own, or others can write, is an error: it is never trusted."""
    import json
    fd = _open_meta(dfd)
    if fd is None:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        check_trusted(fd, f"{where}/{META}" if where else META)
        with os.fdopen(fd, "r") as f:
            fd = None
            data = json.load(f)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None
    finally:
        if fd is not None:
            os.close(fd)


def _write_meta(dfd: int, meta: dict, where: str) -> None:
    import json
    write_atomic(dfd, META, json.dumps(meta, indent=1, sort_keys=True).encode(),
                 f"writing {where}/{META}", where)


def _state(meta: dict | None) -> str | None:
    if meta is None:
        return None
    return meta.get("state", DONE)  # version 1 entries were written once, when done


_NSFS_DEV: int | None = None


def nsfs_dev() -> int:
    global _NSFS_DEV
    if _NSFS_DEV is None:
        _NSFS_DEV = os.stat("/proc/self/ns/net").st_dev
    return _NSFS_DEV


def _stat_ns(dfd: int, name: str) -> os.stat_result | None:
    """stat of DFD/NAME if it is a mounted namespace file (not a symlink)."""
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except OSError:
        return None
    return st if st.st_dev == nsfs_dev() else None


def _is_placeholder(dfd: int, name: str) -> bool:
    """DFD/NAME is an empty regular file root (or the caller) made: a bind target."""
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except OSError:
        return False
    return (stat.S_ISREG(st.st_mode) and st.st_size == 0 and st.st_dev != nsfs_dev()
            and st.st_uid in (0, os.geteuid()))


def _meta_ino(meta: dict, t: str) -> int | None:
    v = (meta.get("types") or {}).get(t)
    ino = v.get("ino") if isinstance(v, dict) else None
    return ino if isinstance(ino, int) else None


def _same_entry(dfd: int, meta: dict | None, ids: dict[str, list[int]]) -> bool:
    if not meta or _state(meta) != DONE or set(meta.get("types") or {}) != set(ids):
        return False
    for t, (ino, _dev) in ids.items():
        st = _stat_ns(dfd, t)
        if st is None or st.st_ino != ino:
            return False
    return True


def _placeholder(dfd: int, name: str, shown: str) -> None:
    """Create DFD/NAME (O_EXCL, no symlink): the file a namespace is bound onto."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o444, dir_fd=dfd)
    except FileExistsError:
        raise KernelError(f"creating {shown}: it exists", None, errno.EEXIST) from None
    except OSError as e:
        raise store_error(e, f"creating {shown}", shown) from None
    os.close(fd)


def _bind_onto(src_fd: int, dfd: int, name: str, nstype: str, shown: str) -> None:
    try:
        tfd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                      dir_fd=dfd)
    except OSError as e:
        raise store_error(e, f"opening {shown}", shown) from None
    try:
        syscalls.mount(fdpath(src_fd), fdpath(tfd), None, syscalls.MS_BIND)
    except OSError as e:
        raise mount_error(e, f"binding {nstype} onto {shown}", shown, nstype) from None
    finally:
        os.close(tfd)


def _unbind(dfd: int, name: str, ino: int | None, step=_no_steps) -> bool:
    """Take DFD/NAME apart if it is ours: the namespace INO bound there (unmounted), or an
    empty placeholder (unlinked).  Anything else is left.  True if something went."""
    did = False
    st = _stat_ns(dfd, name)
    if st is not None:
        if ino is not None and st.st_ino != ino:
            return False
        try:
            syscalls.umount2(fdpath(dfd, name), syscalls.MNT_DETACH | syscalls.UMOUNT_NOFOLLOW)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.ENOENT):
                raise
        did = True
        step(f"unmount {name}")
    if _is_placeholder(dfd, name):
        try:
            os.unlink(name, dir_fd=dfd)
            did = True
        except FileNotFoundError:
            pass
        step(f"unlink {name}")
    return did


def _split(path: str) -> tuple[str, str]:
    path = normal(path)
    head, _, base = path.rpartition("/")
    if not base:
        raise UsageError(f"{path} cannot hold a persisted set")
    return head or "/", base


def _open_entry(pfd: int, base: str, shown: str) -> int:
    """The entry directory, opened without following a symlink, and trusted."""
    try:
        dfd = os.open(base, DIR_FLAGS, dir_fd=pfd)
    except FileNotFoundError:
        raise NotFoundError(f"nothing is persisted at {shown}") from None
    except OSError:
        raise symlink_error(shown) from None
    try:
        check_trusted(dfd, shown)
    except BaseException:
        os.close(dfd)
        raise
    return dfd


def _netns_remove(meta: dict, entry_net: int | None, notes: list[str], step) -> str | None:
    """Remove /run/netns/NAME if this entry made it (meta.json says so) and the kernel
    confirms it is the network namespace bound in the entry itself (ENTRY_NET), or it is
    still only our empty placeholder.  Nothing else is ever removed there."""
    netns = meta.get("netns") or {}
    if not isinstance(netns, dict) or not netns.get("ours"):
        return None
    path = netns.get("path")
    if not isinstance(path, str) or path.rpartition("/")[0] != NETNS_DIR:
        return None
    nname = path.rpartition("/")[2]
    if not NAME_OK(nname) or nname != meta.get("name"):
        return None
    try:
        nfd = walk(NETNS_DIR)
    except NsshellError:
        return None
    try:  # no lock on /run/netns: a persist being undone holds it; the inode decides
        st = _stat_ns(nfd, nname)
        if st is not None:
            if entry_net is None or st.st_ino != entry_net:
                notes.append(f"{path} is not this set's network namespace: left alone")
                return None
            return path if _unbind(nfd, nname, entry_net, step) else None
        return path if _unbind(nfd, nname, None, step) else None  # our empty placeholder
    finally:
        os.close(nfd)


def _remove_entry(pfd: int, base: str, shown: str, meta: dict, step=_no_steps) -> dict:
    """Take the entry PFD/BASE apart (what META records, confirmed by the kernel): its bind
    mounts and placeholders, the /run/netns entry it made, its holder, meta.json, the
    directory.  The one path of unpersist, of a failed persist's undo and of recovery."""
    removed: list[str] = []
    notes: list[str] = []
    dfd = _open_entry(pfd, base, shown)
    try:
        types = meta.get("types") if isinstance(meta.get("types"), dict) else {}
        pid_ino = _meta_ino(meta, "pid")
        st = _stat_ns(dfd, "pid")
        if st is not None and pid_ino is None:
            pid_ino = st.st_ino
        net = _stat_ns(dfd, "net")
        want = _meta_ino(meta, "net")
        netns = _netns_remove(meta, net.st_ino if net is not None and want in (None, net.st_ino)
                              else None, notes, step)
        if netns:
            removed.append(netns)
        for t in nstypes.NAMES:
            if t in types or _stat_ns(dfd, t) is not None or _is_placeholder(dfd, t):
                if _unbind(dfd, t, _meta_ino(meta, t) if t in types else None, step):
                    removed.append(t)
        holder = meta.get("holder")
        if holder and stop_proven_holder(holder, meta.get("init"), pid_ino):
            removed.append(f"holder {holder.get('pid')}")
            step("holder")
        ours = {META} | set(nstypes.NAMES)
        foreign = [n for n in os.listdir(fdpath(dfd))
                   if n not in ours and not (n.startswith(f".{META}.") and n[len(META) + 2:].isdigit())]
        gone = base if base.startswith(".") or foreign else f".{base}.gone"
        if gone != base:
            try:
                os.rename(base, gone, src_dir_fd=pfd, dst_dir_fd=pfd)
            except OSError as e:
                raise store_error(e, f"removing {shown}", shown) from None
            step("rename")
        for n in os.listdir(fdpath(dfd)):
            if n == META or (n.startswith(f".{META}.") and n[len(META) + 2:].isdigit()):
                os.unlink(n, dir_fd=dfd)
        step("meta")
    finally:
        os.close(dfd)
    if foreign:  # someone else's files: their directory stays where it is, as it is
        notes.append(f"{shown} kept: it holds files nsshell did not make "
                     f"({', '.join(sorted(foreign)[:5])})")
        return {"removed": removed, "notes": notes}
    try:
        os.rmdir(gone, dir_fd=pfd)
    except OSError as e:
        notes.append(f"{shown} kept as {gone}: {e.strerror}")
    return {"removed": removed, "notes": notes}


def _half_made(name: str, meta: dict | None) -> str | None:
    """What an entry left by an interrupted change is (None: a whole entry)."""
    if name.startswith(".") and name.endswith(".new"):
        return "persist"
    if name.startswith(".") and name.endswith(".gone"):
        return "unpersist"
    st = _state(meta)
    if st == MAKING:
        return "persist"
    if st == REMOVING:
        return "unpersist"
    return None


def _recover(pfd: int, head: str, only: str | None = None) -> list[str]:
    """Finish or roll back every half-made entry in PFD (HEAD), or only the one of ONLY
    (the lock on the root is held).  One line each, saying what was done."""
    notes = []
    try:
        names = os.listdir(fdpath(pfd))
    except OSError:
        return notes
    for n in sorted(names):
        plain = n[1:].rsplit(".", 1)[0] if n.startswith(".") else n
        if only is not None and plain != only:
            continue
        if n.startswith(".") and not (n.endswith(".new") or n.endswith(".gone")):
            continue
        try:
            st = os.stat(n, dir_fd=pfd, follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid not in (0, os.geteuid()):
            continue
        shown = f"{head.rstrip('/')}/{n}"
        try:
            dfd = _open_entry(pfd, n, shown)
        except NsshellError:
            continue
        try:
            meta = _read_meta(dfd, shown)
        except NsshellError:
            continue
        finally:
            os.close(dfd)
        what = _half_made(n, meta)
        if what is None:
            continue
        done = _remove_entry(pfd, n, shown, meta or {})
        verb = "rolled back" if what == "persist" else "finished removing"
        notes.append(f"{verb} {plain}, left half-made by an interrupted {what}"
                     + (f" ({'; '.join(done['notes'])})" if done["notes"] else ""))
    return notes


def _lock_root(root: str, fds: list[int], create: bool, step=_no_steps) -> None:
    rfd = walk(root, create=create)
    fds.append(rfd)
    fcntl.flock(rfd, fcntl.LOCK_EX)
    if create:
        ensure_private_root(root, rfd, step)


def _persist_helper(plan: dict) -> dict:
    """In a helper (host namespaces): make the entry of PLAN, all or nothing."""
    step = _Steps("persist")
    fds_to_close: list[int] = []
    root = plan.get("root")
    made = None  # (pfd, name in pfd, meta) once the intent is on disk
    holder = None
    try:
        # One lock (on the root's inode) for the set-up of the root and the whole
        # change: two shells must neither stack two root mounts nor race for a name.
        if root:
            _lock_root(root, fds_to_close, True, step)
        head, base = _split(plan["dir"])
        pfd = walk(head, create=bool(root))  # after the set-up: the top mount
        fds_to_close.append(pfd)
        if not root:
            fcntl.flock(pfd, fcntl.LOCK_EX)
        notes = _recover(pfd, head, None if root else base)
        try:
            dfd = os.open(base, DIR_FLAGS, dir_fd=pfd)
        except FileNotFoundError:
            dfd = None
        except OSError:
            raise symlink_error(plan["dir"]) from None
        if dfd is not None:
            fds_to_close.append(dfd)
            check_trusted(dfd, plan["dir"])
            meta = _read_meta(dfd, plan["dir"])
            if _same_entry(dfd, meta, plan["ids"]):
                return {"same": True, "dir": plan["dir"], "notes": notes}
            what = (" ".join(f"{t}:[{_meta_ino(meta, t)}]" for t in meta.get("types") or {})
                    if meta else "something else")
            raise NsshellError(f"{plan['dir']} exists and holds {what}, not this set",
                               "`unpersist` it first, or pick another name")
        netns = None
        if plan.get("netns"):
            nfd = ensure_netns_dir(fds_to_close)
            fds_to_close.append(nfd)
            st = _stat_ns(nfd, plan["name"])
            if st is not None and st.st_ino == plan["ids"]["net"][0]:
                netns = {"path": f"{NETNS_DIR}/{plan['name']}", "ours": False}
            elif st is not None or os.path.lexists(fdpath(nfd, plan["name"])):
                raise NsshellError(f"{NETNS_DIR}/{plan['name']} exists and is another network "
                                   "namespace", "pick another name, or remove it "
                                   f"(`ip netns del {plan['name']}`)")
            else:
                netns = {"path": f"{NETNS_DIR}/{plan['name']}", "ours": True}
        meta = {"version": 2, "state": MAKING, "name": plan["name"], "uid": os.getuid(),
                "created": time.time(),
                "types": {t: {"ino": v[0], "dev": v[1]} for t, v in plan["ids"].items()},
                "netns": netns, "holder": None, "init": plan.get("init")}
        # the intent, under a name no entry can have, then under its own
        stage = f".{base}.new"
        try:
            os.mkdir(stage, 0o755, dir_fd=pfd)
        except OSError as e:
            raise store_error(e, f"creating {head}/{stage}", head) from None
        made = (pfd, stage, meta)
        step("stage")
        sfd = os.open(stage, DIR_FLAGS, dir_fd=pfd)
        fds_to_close.append(sfd)
        _write_meta(sfd, meta, plan["dir"])
        step("intent")
        try:
            os.rename(stage, base, src_dir_fd=pfd, dst_dir_fd=pfd)
        except OSError as e:
            raise store_error(e, f"creating {plan['dir']}", plan["dir"]) from None
        made = (pfd, base, meta)
        step("entry")
        dfd = sfd  # the same directory, now under its name
        if plan.get("lifeline") is not None:
            holder = start_holder(plan["lifeline"], plan.get("init_pidfd"))
            step("holder started")
            meta["holder"] = {"pid": holder.pid, "start": holder.start}
            _write_meta(dfd, meta, plan["dir"])
            step("holder recorded")
        for t, fd in plan["fds"].items():
            shown = f"{plan['dir']}/{t}"
            _placeholder(dfd, t, shown)
            step(f"placeholder {t}")
            _bind_onto(fd, dfd, t, t, shown)
            step(f"bind {t}")
        if netns and netns["ours"]:
            nfd = walk(NETNS_DIR)
            fds_to_close.append(nfd)
            shown = netns["path"]
            try:
                _placeholder(nfd, plan["name"], shown)
            except KernelError as e:
                if e.errno == errno.EEXIST:
                    raise NsshellError(f"{shown} exists and is another network namespace",
                                       "pick another name, or remove it "
                                       f"(`ip netns del {plan['name']}`)") from None
                raise
            step("placeholder netns")
            _bind_onto(plan["fds"]["net"], nfd, plan["name"], "net", shown)
            step("bind netns")
        if holder is not None:
            holder.confirm()
            step("holder confirmed")
        meta["state"] = DONE
        _write_meta(dfd, meta, plan["dir"])
        step("commit")
        return {"same": False, "dir": plan["dir"], "netns": netns,
                "holder": meta["holder"], "notes": notes}
    except BaseException:
        if holder is not None:
            holder.close()  # an unconfirmed holder leaves by itself
        if made is not None:
            try:
                _remove_entry(made[0], made[1], plan["dir"], made[2])
            except Exception:  # noqa: BLE001 - the first error is the one to report
                pass
        raise
    finally:
        if root:
            try:
                release_root(root)
            except Exception:  # noqa: BLE001
                pass
        for fd in fds_to_close:
            os.close(fd)


def _pipe_holders(pipe_inos: set[int], skip: set[int]) -> list[int]:
    """Processes (other than SKIP) holding an fd on one of the pipes PIPE_INOS."""
    want = {f"pipe:[{i}]" for i in pipe_inos}
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in skip:
            continue
        try:
            fds = os.listdir(f"/proc/{d}/fd")
        except OSError:
            continue
        for n in fds:
            try:
                if os.readlink(f"/proc/{d}/fd/{n}") in want:
                    out.append(int(d))
                    break
            except OSError:
                continue
    return out


def _pid_users(meta: dict, pid_ino: int | None) -> tuple[list[int], list[int]]:
    """(processes running in the entry's PID namespace besides its init, processes other
    than the holder that keep the init alive: sessions that took a lifeline)."""
    init = meta.get("init") if isinstance(meta.get("init"), dict) else None
    if pid_ino is None or not proven_init(init, pid_ino):
        return [], []
    from ..look.discover import processes_in
    users = [p for p in processes_in(nstypes.PID, pid_ino) if p != init["pid"]]
    if not users:
        return [], []
    from .holder import _pipes
    holder = meta.get("holder") or {}
    skip = {init["pid"], os.getpid()} | ({holder["pid"]} if isinstance(holder.get("pid"), int)
                                         else set())
    # the init's pipes: its lifeline (whose write ends keep it alive) and its own wake-up
    # pipe (which nobody else holds)
    keepers = _pipe_holders(set(_pipes(init["pid"])), skip | set(users))
    return users, keepers


def _unpersist_helper(path: str, name: str, root: str | None, force: bool) -> dict:
    step = _Steps("unpersist")
    head, base = _split(path)
    fds: list[int] = []
    try:
        if root:
            _lock_root(root, fds, False)
        pfd = walk(head)
        fds.append(pfd)
        if not root:
            fcntl.flock(pfd, fcntl.LOCK_EX)
        notes = _recover(pfd, head, None if root else base)
        recovered = [n for n in notes if f" {base}," in n]
        try:
            dfd = _open_entry(pfd, base, path)
        except NotFoundError:
            if recovered:
                return {"removed": [], "notes": notes}
            raise
        try:
            meta = _read_meta(dfd, path)
            pid_st = _stat_ns(dfd, "pid")
            if not meta:  # a half-known entry: only the namespace files we recognise
                if not any(_stat_ns(dfd, t) is not None for t in nstypes.NAMES):
                    raise NotFoundError(f"{path} holds no persisted set (no {META}, no "
                                        "namespace files)")
                meta = {"types": {}}
        finally:
            os.close(dfd)
        pid_ino = _meta_ino(meta, "pid") or (pid_st.st_ino if pid_st else None)
        users, keepers = _pid_users(meta, pid_ino)
        if users and not keepers and not force:
            shown = " ".join(map(str, users[:10])) + (" ..." if len(users) > 10 else "")
            raise NsshellError(f"{name}'s PID namespace pid:[{pid_ino}] is in use by pid "
                               f"{shown}: unpersisting ends its init, and the kernel then "
                               "kills them",
                               f"end them first, or `unpersist --force {name}`")
        step("checked")
        if meta.get("types"):
            meta["state"] = REMOVING
            dfd = _open_entry(pfd, base, path)
            try:
                _write_meta(dfd, meta, path)
            finally:
                os.close(dfd)
            step("intent")
        out = _remove_entry(pfd, base, path, meta, step)
        out["notes"] = notes + out["notes"]
        if keepers and pid_ino is not None:
            out["notes"].append(f"pid:[{pid_ino}] lives on while the sessions of pid "
                                f"{' '.join(map(str, keepers))} hold it")
        elif users:
            out["notes"].append(f"killed pid {' '.join(map(str, users))} (--force)")
        return out
    finally:
        if root:
            try:
                release_root(root, step)
            except Exception:  # noqa: BLE001
                pass
        for fd in fds:
            os.close(fd)


def _recover_helper(root: str) -> list[str]:
    fds: list[int] = []
    try:
        _lock_root(root, fds, False)
        pfd = walk(root)
        fds.append(pfd)
        notes = _recover(pfd, root)
        if release_root(root) and not notes:
            notes.append(f"undid nsshell's self-bind of {root}: it keeps nothing any more")
        return notes
    except NsshellError:
        return []
    finally:
        for fd in fds:
            os.close(fd)


# --- the shell side -------------------------------------------------------------------------

def use_keeper() -> bool:
    """No bind mounts possible: not root, or root of a user namespace that does not own the
    shell's mount namespace (e.g. under `unshare -r`).  Then the per-user keeper holds sets."""
    if os.geteuid() != 0:
        return True
    try:
        fd = open_proc_ns("self", nstypes.MNT)
    except OSError:
        return False
    try:
        ufd = syscalls.ns_get_userns(fd)
    except OSError:
        return True  # the owner is out of sight: an ancestor of our user namespace
    finally:
        os.close(fd)
    try:
        return os.fstat(ufd).st_ino != os.stat("/proc/self/ns/user").st_ino
    finally:
        os.close(ufd)


def persist(nsset: NsSet, name: str, *, root: str, dirpath: str | None = None,
            host_mnt: Handle | None = None) -> Persisted:
    """Bind-mount every namespace of NSSET under ROOT/NAME (or DIRPATH); net also at
    /run/netns/NAME; a PID namespace gets a detached holder of its init.  HOST_MNT: the
    caller's own mount namespace, which cannot be bound inside itself."""
    check_name(name)
    if not nsset.handles:
        raise NsshellError(f"{nsset.label} holds no namespaces")
    for h in nsset.handles.values():
        h.check_usable()
    if use_keeper():
        if dirpath:
            raise NsshellError(f"cannot keep {nsset.label} in {dirpath}: without root there are "
                               "no bind mounts on the host",
                               f"leave DIR out: the per-user keeper holds it as {name}")
        from . import keeper
        return keeper.persist(nsset, name)
    mnt = nsset.handles.get("mnt")
    if mnt is not None and host_mnt is not None and mnt.nsid == host_mnt.nsid:
        raise NsshellError(f"{mnt.label} is the shell's own mount namespace: a mount namespace "
                           "cannot be bind-mounted inside itself, and the shell's is where "
                           "the bind mounts are made",
                           "persist a set without it (e.g. `open pid:N net+uts as x; persist x`)")
    root = normal(root)
    path = normal(dirpath) if dirpath else f"{root}/{name}"
    fds = {t: h.fd for t, h in nsset.handles.items()}
    ids = {t: [h.nsid.ino, h.nsid.dev] for t, h in nsset.handles.items()}
    plan = {"name": name, "dir": path, "root": None if dirpath else root, "fds": fds,
            "ids": ids, "netns": "net" in fds}
    notes = []
    if "pid" in nsset.handles:
        lifeline, info, pidfd = init_info(nsset.handles["pid"])
        plan["init"] = info
        if lifeline is not None:
            plan["lifeline"] = lifeline
            plan["init_pidfd"] = pidfd
        elif info is None:
            notes.append("the PID namespace's init is not nsshell's: it lives as long as "
                         "that process does")
        else:
            notes.append(f"its init (pid {info['pid']}) is kept alive by whoever persisted "
                         "it first")
    result, _ = spawn.call([], _persist_helper, plan)
    if result.get("same"):
        notes.append("already persisted there (same namespaces)")
    notes = result.get("notes", []) + notes
    return Persisted(name, path, list(fds), (result.get("netns") or {}).get("path"),
                     (result.get("holder") or {}).get("pid"), bool(result.get("same")),
                     notes=notes)


def unpersist(text: str, *, root: str, force: bool = False, held: str | None = None) -> dict:
    """Remove what `persist` made for TEXT (a name or a directory): the bind mounts,
    the files, the /run/netns entry it made, the holder.  Nothing else: an `ip netns`
    entry nsshell did not make is refused.  A PID namespace that processes run in is
    refused unless FORCE, or unless sessions keep its init alive (they took a lifeline).
    HELD: where the caller knows the set TEXT to be persisted (`persist NAME DIR`).
    The result's "path" is the entry removed."""
    root = normal(root)
    in_root = False
    if "/" in text:
        path = normal(text)
    elif held and not held.startswith("keeper:") and not held.startswith(NETNS_DIR + "/"):
        path = held
    else:
        path = f"{root}/{text}"
        in_root = True
    # a user whose sets the keeper holds means their own set by a name first (issue 10.8)
    out = _unpersist_own_first(text)
    # what interrupted changes left in the root is finished or rolled back first
    recovered = recover(root) if in_root and out is None else []
    if out is not None:
        pass
    elif _entry_exists(path) or (in_root and _half_made_here(root, text)):
        if use_keeper():
            raise NsshellError(f"{path} was persisted with bind mounts; removing them needs root")
        out, _ = spawn.call([], _unpersist_helper, path, text,
                            root if path.rpartition("/")[0] == root else None, force)
        out["path"] = path
    elif "/" not in text:
        out = _unpersist_kept(text)
        if out is None and _stat_netns(text) is not None:
            raise NsshellError(f"{NETNS_DIR}/{text} was not made by nsshell (no persisted set "
                               f"{text!r} in {root}): nsshell removes only what it made",
                               f"`ip netns del {text}` removes it")
    if out is None and recovered:
        out = {"removed": [], "notes": [], "path": path}
    if out is None:
        raise NotFoundError(f"nothing is persisted as {text!r}",
                            f"`handles` lists persisted sets (root: {root})")
    out["notes"] = recovered + out["notes"]
    return out


def _unpersist_kept(text: str) -> dict | None:
    from . import keeper
    if not keeper.available():
        return None
    dropped = keeper.drop(text)
    return None if dropped is None else {"removed": dropped, "notes": [], "path": f"keeper:{text}"}


def _unpersist_own_first(text: str) -> dict | None:
    """A user whose sets the keeper holds means their own set by a name (issue 10.8): root's
    /run/nsshell/NAME or /run/netns/NAME of the same name does not hide it."""
    if "/" in text or not use_keeper():
        return None
    return _unpersist_kept(text)


def _entry_exists(path: str) -> bool:
    """Is there a directory at PATH?  One nsshell does not trust is an error, said as such."""
    if use_keeper():  # no bind mounts to remove: what is there is said by the caller
        return exists_dir(path)
    try:
        fd = walk(path)
    except NotFoundError:
        return False
    except NsshellError as e:
        if "symbolic link" in e.message or "trusts only" in e.message:
            raise
        return False
    try:
        check_trusted(fd, path)
    finally:
        os.close(fd)
    return True


def _mark_file(name: str) -> bool:
    """ROOT's record of its self-bind, or one being written (ROOT_MARK.PID)."""
    return name == ROOT_MARK or (name.startswith(ROOT_MARK + ".")
                                 and name[len(ROOT_MARK) + 1:].isdigit())


def _half_made_here(root: str, name: str) -> bool:
    """Is there a staging directory of NAME in ROOT (a persist or unpersist cut short)?"""
    try:
        rfd = walk(root)
    except NsshellError:
        return False
    try:
        return any(os.path.isdir(fdpath(rfd, f".{name}.{k}")) for k in ("new", "gone"))
    finally:
        os.close(rfd)


def recover(root: str) -> list[str]:
    """Finish or roll back what an interrupted persist or unpersist left under ROOT (`ls`
    calls it): one line per entry.  Cheap when there is nothing to do (a listing)."""
    if use_keeper():
        return []
    root = normal(root)
    try:
        rfd = walk(root)
    except NsshellError:
        return []
    try:
        entries = list(os.scandir(fdpath(rfd)))
        # a self-bind nsshell made of a root that holds nothing any more (a persist cut
        # short before its entry existed) is undone too
        half = bool(entries) and all(_mark_file(e.name) for e in entries)
        for e in entries:
            if not e.is_dir(follow_symlinks=False):
                continue
            if e.name.startswith("."):
                half = half or e.name.endswith(".new") or e.name.endswith(".gone")
                continue
            try:
                dfd = os.open(e.name, DIR_FLAGS, dir_fd=rfd)
            except OSError:
                continue
            try:
                if _state(_read_meta(dfd)) in (MAKING, REMOVING):
                    half = True
            except NsshellError:
                pass
            finally:
                os.close(dfd)
    except OSError:
        return []
    finally:
        os.close(rfd)
    if not half:
        return []
    notes, _ = spawn.call([], _recover_helper, root)
    return notes


# --- finding persisted sets --------------------------------------------------------------------

def _stat_netns(name: str) -> os.stat_result | None:
    if not name or "/" in name or name in (".", ".."):
        return None
    try:
        st = os.stat(f"{NETNS_DIR}/{name}", follow_symlinks=False)
    except OSError:
        return None
    return st if st.st_dev == nsfs_dev() else None


def _open_in(dfd: int, name: str) -> int:
    return open_ns(name, nstypes.BY_NAME.get(name), dir_fd=dfd)


def open_dir(path: str) -> tuple[dict[str, Handle], dict]:
    """Handles on the namespaces persisted in PATH, and its meta data.  A PID namespace
    whose holder is provably nsshell's comes with a lifeline of the session's own, so its
    init lives while the session holds it, whatever `unpersist` does meanwhile."""
    dfd = walk(path)
    handles: dict[str, Handle] = {}
    try:
        check_trusted(dfd, path)
        meta = _read_meta(dfd, path) or {}
        state = _state(meta) if meta else None
        if state in (MAKING, REMOVING):
            raise NsshellError(f"{path} is half-made (an interrupted "
                               f"{'persist' if state == MAKING else 'unpersist'})",
                               "`ls` or `unpersist` finishes or rolls it back")
        types = [t for t in nstypes.NAMES if t in (meta.get("types") or {})] or \
                [t for t in nstypes.NAMES if _stat_ns(dfd, t) is not None]
        if not types:
            raise NotFoundError(f"{path} holds no persisted namespaces (no {META}, no "
                                "namespace files)", "`handles` lists persisted sets")
        for t in types:
            if _stat_ns(dfd, t) is None:
                raise NsshellError(f"{path}/{t} is not a mounted namespace file any more "
                                   "(half-removed?)", f"`unpersist {path}` cleans it up")
            fd = _open_in(dfd, t)
            holder = None
            init = meta.get("init") if isinstance(meta.get("init"), dict) else None
            if t == "pid" and init:
                lifeline = take_lifeline(meta.get("holder"), init, os.fstat(fd).st_ino) \
                    if os.geteuid() == 0 else None
                holder = PersistedInit(init.get("pid"), init.get("start"), lifeline=lifeline)
            try:
                handles[t] = Handle(fd, nstypes.BY_NAME[t], origin=f"{path}/{t}", holder=holder)
            except BaseException:
                if holder is not None:
                    holder.close()
                os.close(fd)
                raise
        return handles, meta
    except BaseException:
        for h in handles.values():
            h.close()
        raise
    finally:
        os.close(dfd)


def _store_names(root: str) -> list[str]:
    try:
        rfd = walk(root)
    except NsshellError:
        return []
    try:
        names = []
        for e in os.scandir(fdpath(rfd)):
            if e.is_dir(follow_symlinks=False) and not e.name.startswith("."):
                names.append(e.name)
        return sorted(names)
    except OSError:
        return []
    finally:
        os.close(rfd)


def list_persisted(root: str) -> list[dict]:
    """Every persisted namespace this user can see: one dict per (name, type) with
    name, type, path, nsid (str, 'net:[4026...]'), inode, source ('nsshell', 'ip netns',
    'keeper') and, for a PID namespace with a known init, alive (bool).  Cheap: a
    directory listing and a stat per file (the `ls` and `handles` commands call it)."""
    root = normal(root)
    out: list[dict] = []
    store_net = set()
    for name in _store_names(root):
        path = f"{root}/{name}"
        try:
            dfd = walk(path)
        except NsshellError:
            continue
        try:
            try:
                check_trusted(dfd, path)
                meta = _read_meta(dfd, path) or {}
            except NsshellError:
                continue  # not trusted: not listed
            if meta and _state(meta) != DONE:
                continue  # half-made: `ls` finishes or rolls it back (recover)
            for t in nstypes.NAMES:
                st = _stat_ns(dfd, t)
                if st is None:
                    continue
                row = {"name": name, "type": t, "path": f"{path}/{t}",
                       "nsid": f"{t}:[{st.st_ino}]", "inode": st.st_ino, "source": "nsshell"}
                if t == "pid" and meta.get("init"):
                    row["alive"] = same_process(meta["init"].get("pid"),
                                                meta["init"].get("start"))
                out.append(row)
                if t == "net":
                    store_net.add((name, st.st_ino))
        finally:
            os.close(dfd)
    try:
        netns = sorted(os.listdir(NETNS_DIR))
    except OSError:
        netns = []
    for name in netns:
        st = _stat_netns(name)
        if st is None or (name, st.st_ino) in store_net:
            continue
        out.append({"name": name, "type": "net", "path": f"{NETNS_DIR}/{name}",
                    "nsid": f"net:[{st.st_ino}]", "inode": st.st_ino, "source": "ip netns"})
    return _own_first(out)


def _own_first(rows: list[dict]) -> list[dict]:
    """ROWS with the keeper's sets added.  For a user whose sets the keeper holds, those
    come first, and another entry of the same name (root's store, /run/netns) is left
    out: the name means the user's own set for them (`lookup` agrees; the other entry is
    still reachable by its path)."""
    from . import keeper
    kept = keeper.listing() if keeper.available() else []
    if not kept or not use_keeper():
        return rows + kept
    mine = {r["name"] for r in kept}
    return kept + [r for r in rows if r["name"] not in mine]


def lookup(text: str, root: str) -> NsSet | None:
    """The persisted set called TEXT (under ROOT, in the keeper, or an `ip netns` name), or
    kept in directory TEXT, opened; None if there is none.  The set comes named (TEXT, for
    a name) and with .persisted: where it is kept.  The one lookup of persisted names."""
    if "/" in text:
        if not text.startswith("/"):
            return None
        try:
            dfd = walk(text)
        except NsshellError:
            return None
        try:
            if _read_meta(dfd) is None:
                return None
        finally:
            os.close(dfd)
        handles, meta = open_dir(text)
        return _found(None, handles, normal(text), normal(text))
    # Only a name can be kept (store and keeper alike): another text (a REF:IF end,
    # TYPE:[INODE]) costs neither the keeper's look (a scan of /tmp) nor use_keeper's,
    # only the /run/netns stat below (`ip netns` allows ':' in its names).
    is_name = NAME_OK(text)
    own_first = is_name and use_keeper()
    if own_first:
        s = _lookup_kept(text)
        if s is not None:
            return s
    path = f"{normal(root)}/{text}"
    if is_name and exists_dir(path):
        handles, _meta = open_dir(path)
        return _found(text, handles, path, "persisted")
    st = _stat_netns(text)
    if st is not None:
        stored = _stored_elsewhere(text, st.st_ino)
        if stored is not None:   # `persist NAME DIR`: the whole set, not only its net
            handles, _meta = open_dir(stored)
            return _found(text, handles, stored, "persisted")
        fd = open_ns(f"{NETNS_DIR}/{text}", nstypes.NET)
        h = Handle(fd, nstypes.NET, origin=f"{NETNS_DIR}/{text}")
        return _found(text, {"net": h}, f"{NETNS_DIR}/{text}", "ip netns")
    return None if own_first or not is_name else _lookup_kept(text)


def _lookup_kept(text: str) -> NsSet | None:
    """The set TEXT the user's keeper holds.  Asked first for a user whose sets the keeper
    holds (issue 10.8: root's entries of the same name must not hide it), last for root.
    The keeper holds only names (check_name before every put): a text that is none (a
    REF:IF end, TYPE:[INODE], pid:N) is refused here at once, before any look at /tmp."""
    if not NAME_OK(text):
        return None
    from . import keeper
    if not keeper.available():
        return None
    handles = keeper.get(text)
    if handles is None:
        return None
    return _found(text, handles, f"keeper:{text}", "keeper")


def _found(name: str | None, handles: dict[str, Handle], path: str, origin: str) -> NsSet:
    s = NsSet(name, handles, origin=origin)
    s.persisted = path
    return s


def _stored_elsewhere(name: str, ino: int) -> str | None:
    """The directory of `persist NAME DIR` whose /run/netns/NAME entry is net:[INO]: a bind
    mount DIR/net of that namespace (only root mounts) beside a meta.json of root's (or
    ours) that names NAME, net:[INO] and that entry; None when there is none."""
    from ...kernel import mountinfo
    for m in mountinfo.read(fstype="nsfs"):
        if m.root != f"net:[{ino}]" or not m.target.endswith("/net"):
            continue
        where = m.target[:-len("/net")]
        try:
            dfd = walk(where)
        except NsshellError:
            continue
        try:
            mst = os.stat(META, dir_fd=dfd, follow_symlinks=False)
            if mst.st_uid not in (0, os.geteuid()) or mst.st_mode & 0o022:
                continue
            meta = _read_meta(dfd) or {}
            net = _stat_ns(dfd, "net")
        except OSError:
            continue
        finally:
            os.close(dfd)
        if (meta.get("name") == name and net is not None and net.st_ino == ino
                and (meta.get("types") or {}).get("net", {}).get("ino") == ino
                and (meta.get("netns") or {}).get("path") == f"{NETNS_DIR}/{name}"):
            return where
    return None


def owner_of(path: str) -> str | None:
    """The owning user namespace of the namespace file PATH ('user:[...]'), if readable."""
    try:
        fd = open_ns(path)
    except OSError:
        return None
    try:
        o = owner_nsid(fd)
        return str(o) if o else None
    except OSError:
        return None
    finally:
        os.close(fd)
