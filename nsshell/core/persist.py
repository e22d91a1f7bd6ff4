"""Keeping namespaces: the bind-mount store, /run/netns compatibility, reload by name.

Layout (root: the `persist_root` setting, $NSSHELL_PERSIST_ROOT, or /run/nsshell):

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
per-user keeper process instead (core/keeper.py).  The walking of paths and the
mount table are in core/storefs.py, a persisted PID init's holder in
core/holder.py.

Persisted sets are found lazily: the resolver installed by `install` looks a
name up only when the session's own names did not match.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from dataclasses import dataclass, field

from ..errors import KernelError, NotFoundError, NsshellError, UsageError, from_oserror
from ..kernel import nstypes, syscalls
from ..kernel.nsfs import owner_nsid
from . import spawn
from .handle import Handle, NsSet
from .holder import PersistedInit, kill_verified, same_process, start_holder, start_time
from .storefs import (DIR_FLAGS, NETNS_DIR, ensure_netns_dir, ensure_private_root, exists_dir, fdpath,
                      mount_error, normal, symlink_error, walk)

DEFAULT_ROOT = "/run/nsshell"
ENV_ROOT = "NSSHELL_PERSIST_ROOT"
META = "meta.json"

def NAME_OK(name: str) -> bool:
    """A persisted name is one safe path component: the one name rule (nsshell/names.py)."""
    from .. import names
    return names.valid(name) and name != META


# --- settings ---------------------------------------------------------------------

def default_root() -> str:
    return os.environ.get(ENV_ROOT) or DEFAULT_ROOT


def root_of(session) -> str:
    s = getattr(session, "settings", {}).get("persist_root") if session is not None else None
    return (s.value if s is not None and s.value else None) or default_root()


def _parse_root(text: str) -> str:
    if not text.startswith("/"):
        raise ValueError("the persist root must be an absolute path")
    try:
        return normal(text)
    except UsageError as e:
        raise ValueError(e.message) from None


# --- the store (runs in a forked helper) --------------------------------------------------

def _read_meta(dfd: int) -> dict | None:
    import json
    try:
        fd = os.open(META, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
    except OSError:
        return None
    try:
        with os.fdopen(fd, "r") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_meta(dfd: int, meta: dict) -> None:
    import json
    tmp = f".{META}.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o644, dir_fd=dfd)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True)
        os.rename(tmp, META, src_dir_fd=dfd, dst_dir_fd=dfd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dfd)
        except OSError:
            pass
        raise


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


def _same_entry(dfd: int, ids: dict[str, list[int]]) -> bool:
    meta = _read_meta(dfd)
    if not meta or set(meta.get("types", {})) != set(ids):
        return False
    for t, (ino, _dev) in ids.items():
        st = _stat_ns(dfd, t)
        if st is None or st.st_ino != ino:
            return False
    return True


def _bind(src_fd: int, dfd: int, name: str, nstype: str, shown: str) -> None:
    """Create DFD/NAME (O_EXCL, no symlink) and bind the namespace SRC_FD onto it."""
    try:
        tfd = os.open(name, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                      0o444, dir_fd=dfd)
    except OSError as e:
        raise from_oserror(e, f"creating {shown}") from None
    try:
        syscalls.mount(fdpath(src_fd), fdpath(tfd), None, syscalls.MS_BIND)
    except OSError as e:
        os.close(tfd)
        try:
            os.unlink(name, dir_fd=dfd)
        except OSError:
            pass
        raise mount_error(e, f"binding {nstype} onto {shown}", shown, nstype) from None
    os.close(tfd)


def _unbind(dfd: int, name: str) -> None:
    try:
        syscalls.umount2(fdpath(dfd, name), syscalls.MNT_DETACH | syscalls.UMOUNT_NOFOLLOW)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOENT):
            raise
    try:
        os.unlink(name, dir_fd=dfd)
    except FileNotFoundError:
        pass


def _split(path: str) -> tuple[str, str]:
    path = normal(path)
    head, _, base = path.rpartition("/")
    if not base:
        raise UsageError(f"{path} cannot hold a persisted set")
    return head or "/", base


def _persist_helper(plan: dict) -> dict:
    """In a helper (host namespaces): make the entry of PLAN, all or nothing."""
    undo: list = []
    fds_to_close: list[int] = []
    try:
        if plan.get("root"):
            # One lock (on the root's inode) for the set-up of the root and the whole
            # change: two shells must neither stack two root mounts nor race for a name.
            rfd = walk(plan["root"], create=True)
            fds_to_close.append(rfd)
            fcntl.flock(rfd, fcntl.LOCK_EX)
            ensure_private_root(plan["root"], rfd)
        head, base = _split(plan["dir"])
        pfd = walk(head, create=bool(plan.get("root")))  # after the set-up: the top mount
        fds_to_close.append(pfd)
        if not plan.get("root"):
            fcntl.flock(pfd, fcntl.LOCK_EX)
        try:
            os.mkdir(base, 0o755, dir_fd=pfd)
        except FileExistsError:
            try:
                dfd = os.open(base, DIR_FLAGS, dir_fd=pfd)
            except OSError:
                raise symlink_error(plan["dir"]) from None
            fds_to_close.append(dfd)
            if _same_entry(dfd, plan["ids"]):
                return {"same": True, "dir": plan["dir"]}
            meta = _read_meta(dfd)
            what = (" ".join(f"{t}:[{v['ino']}]" for t, v in meta.get("types", {}).items())
                    if meta else "something else")
            raise NsshellError(f"{plan['dir']} exists and holds {what}, not this set",
                               "`unpersist` it first, or pick another name") from None
        undo.append(lambda: os.rmdir(base, dir_fd=pfd))
        dfd = os.open(base, DIR_FLAGS, dir_fd=pfd)
        fds_to_close.append(dfd)
        for t, fd in plan["fds"].items():
            _bind(fd, dfd, t, t, f"{plan['dir']}/{t}")
            undo.append(lambda t=t: _unbind(dfd, t))
        netns = None
        if plan.get("netns"):
            nfd = ensure_netns_dir(fds_to_close)
            fds_to_close.append(nfd)
            name = plan["name"]
            st = _stat_ns(nfd, name)
            if st is not None and st.st_ino == plan["ids"]["net"][0]:
                netns = {"path": f"{NETNS_DIR}/{name}", "ours": False}
            else:
                try:
                    _bind(plan["fds"]["net"], nfd, name, "net", f"{NETNS_DIR}/{name}")
                except KernelError as e:
                    if e.errno == errno.EEXIST:
                        raise NsshellError(f"{NETNS_DIR}/{name} exists and is another network "
                                           "namespace", "pick another name, or remove it "
                                           f"(`ip netns del {name}`)") from None
                    raise
                undo.append(lambda: _unbind(nfd, name))
                netns = {"path": f"{NETNS_DIR}/{name}", "ours": True}
        holder = None
        if plan.get("lifeline") is not None:
            hpid, hstart = start_holder(plan["lifeline"], plan.get("init_pidfd"))
            holder = {"pid": hpid, "start": hstart}
            undo.append(lambda: kill_verified(hpid, hstart))
        meta = {"version": 1, "name": plan["name"], "uid": os.getuid(), "created": time.time(),
                "types": {t: {"ino": v[0], "dev": v[1]} for t, v in plan["ids"].items()},
                "netns": netns, "holder": holder, "init": plan.get("init")}
        _write_meta(dfd, meta)
        return {"same": False, "dir": plan["dir"], "netns": netns, "holder": holder}
    except BaseException:
        for step in reversed(undo):
            try:
                step()
            except Exception:
                pass
        raise
    finally:
        for fd in fds_to_close:
            os.close(fd)


def _unpersist_helper(path: str, name: str) -> dict:
    head, base = _split(path)
    pfd = walk(head)
    try:
        fcntl.flock(pfd, fcntl.LOCK_EX)
        try:
            dfd = os.open(base, DIR_FLAGS, dir_fd=pfd)
        except FileNotFoundError:
            raise NotFoundError(f"nothing is persisted at {path}") from None
        except OSError:
            raise symlink_error(path) from None
        try:
            meta = _read_meta(dfd) or {}
            types = [t for t in nstypes.NAMES if t in meta.get("types", {})]
            if not meta:  # a half-known entry: only the namespace files we recognise
                types = [t for t in nstypes.NAMES if _stat_ns(dfd, t) is not None]
                if not types:
                    raise NotFoundError(f"{path} holds no persisted set (no {META}, no "
                                        "namespace files)")
            removed = []
            for t in types:
                _unbind(dfd, t)
                removed.append(t)
            notes = []
            netns = meta.get("netns") or {}
            if netns.get("ours"):
                nname = netns["path"].rpartition("/")[2]
                try:
                    nfd = walk(NETNS_DIR)
                except NsshellError:
                    nfd = None
                if nfd is not None:
                    try:
                        st = _stat_ns(nfd, nname)
                        want = meta["types"].get("net", {}).get("ino")
                        if st is not None and st.st_ino == want:
                            _unbind(nfd, nname)
                            removed.append(netns["path"])
                        elif st is not None:
                            notes.append(f"{netns['path']} is now another namespace: left alone")
                    finally:
                        os.close(nfd)
            holder = meta.get("holder") or {}
            if holder and kill_verified(holder.get("pid"), holder.get("start")):
                removed.append(f"holder {holder['pid']}")
            try:
                os.unlink(META, dir_fd=dfd)
            except FileNotFoundError:
                pass
        finally:
            os.close(dfd)
        try:
            os.rmdir(base, dir_fd=pfd)
        except OSError as e:
            notes.append(f"{path} kept: {e.strerror} (it holds files nsshell did not make)")
        return {"removed": removed, "notes": notes}
    finally:
        os.close(pfd)


def _netns_del_helper(name: str) -> None:
    nfd = walk(NETNS_DIR)
    try:
        fcntl.flock(nfd, fcntl.LOCK_EX)
        _unbind(nfd, name)
    finally:
        os.close(nfd)


# --- the shell side -------------------------------------------------------------------------

@dataclass
class Persisted:
    name: str
    path: str
    types: list[str]
    netns: str | None = None
    holder: int | None = None
    same: bool = False
    keeper: bool = False
    notes: list[str] = field(default_factory=list)


def use_keeper() -> bool:
    """No bind mounts possible: not root, or root of a user namespace that does not own the
    shell's mount namespace (e.g. under `unshare -r`).  Then the per-user keeper holds sets."""
    if os.geteuid() != 0:
        return True
    try:
        fd = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
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


def _init_info(h: Handle) -> tuple[int | None, dict | None, int | None]:
    """(lifeline fd, {"pid", "start"} of the init, init pidfd) of a PID handle."""
    holder = h.holder
    if holder is None:
        return None, None, None
    if isinstance(holder, PersistedInit):
        return None, ({"pid": holder.init_pid, "start": holder.start}
                      if holder.init_pid else None), None
    pid = holder.pid
    info = {"pid": pid, "start": start_time(pid)} if pid else None
    lifeline = holder.lifeline if holder.lifeline is not None and holder.lifeline >= 0 else None
    return lifeline, info, holder.pidfd


def persist(session, nsset: NsSet, name: str, dirpath: str | None = None,
            root: str | None = None) -> Persisted:
    """Bind-mount every namespace of NSSET under ROOT/NAME (or DIRPATH); net also at
    /run/netns/NAME; a PID namespace gets a detached holder of its init."""
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
    host_mnt = session.host.handles.get("mnt") if session is not None else None
    mnt = nsset.handles.get("mnt")
    if mnt is not None and host_mnt is not None and mnt.nsid == host_mnt.nsid:
        raise NsshellError(f"{mnt.label} is the shell's own mount namespace: a mount namespace "
                           "cannot be bind-mounted inside itself, and the shell's is where "
                           "the bind mounts are made",
                           "persist a set without it (e.g. `open pid:N net+uts as x; persist x`)")
    root = normal(root or root_of(session))
    path = normal(dirpath) if dirpath else f"{root}/{name}"
    fds = {t: h.fd for t, h in nsset.handles.items()}
    ids = {t: [h.nsid.ino, h.nsid.dev] for t, h in nsset.handles.items()}
    plan = {"name": name, "dir": path, "root": None if dirpath else root, "fds": fds,
            "ids": ids, "netns": "net" in fds}
    notes = []
    if "pid" in nsset.handles:
        lifeline, info, pidfd = _init_info(nsset.handles["pid"])
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
    if nsset.name and session is not None and session.sets.get(nsset.name) is nsset:
        nsset.persisted = path
    if result.get("same"):
        notes.append("already persisted there (same namespaces)")
    return Persisted(name, path, list(fds), (result.get("netns") or {}).get("path"),
                     (result.get("holder") or {}).get("pid"), bool(result.get("same")),
                     notes=notes)


def unpersist(session, text: str, root: str | None = None) -> dict:
    """Remove what `persist` made for TEXT (a name or a directory): the bind mounts,
    the files, the /run/netns entry it made, the holder.  Nothing else."""
    root = normal(root or root_of(session))
    held = session.sets.get(text) if session is not None else None
    if "/" in text:
        path = normal(text)
    elif held is not None and held.persisted and not held.persisted.startswith("keeper:") \
            and not held.persisted.startswith(NETNS_DIR + "/"):
        path = held.persisted
    else:
        path = f"{root}/{text}"
    out = None
    if exists_dir(path):
        if use_keeper():
            raise NsshellError(f"{path} was persisted with bind mounts; removing them needs root")
        out, _ = spawn.call([], _unpersist_helper, path, text)
        out["path"] = path
    elif "/" not in text:
        from . import keeper
        if keeper.available():
            dropped = keeper.drop(text)
            if dropped is not None:
                out = {"removed": dropped, "notes": [], "path": f"keeper:{text}"}
        if out is None and _stat_netns(text) is not None:
            if use_keeper():
                raise NsshellError(f"{NETNS_DIR}/{text} is a bind mount on the host; removing "
                                   "it needs root")
            spawn.call([], _netns_del_helper, text)
            out = {"removed": [f"{NETNS_DIR}/{text}"], "notes": [], "path": f"{NETNS_DIR}/{text}"}
    if out is None:
        raise NotFoundError(f"nothing is persisted as {text!r}",
                            f"`handles` lists persisted sets (root: {root})")
    if session is not None:
        for s in session.sets.values():
            if s.persisted == out["path"] or (s.name == text and s.persisted):
                s.persisted = None
    return out


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
    return os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)


def open_dir(path: str) -> tuple[dict[str, Handle], dict]:
    """Handles on the namespaces persisted in PATH, and its meta data."""
    dfd = walk(path)
    handles: dict[str, Handle] = {}
    try:
        meta = _read_meta(dfd) or {}
        types = [t for t in nstypes.NAMES if t in meta.get("types", {})] or \
                [t for t in nstypes.NAMES if _stat_ns(dfd, t) is not None]
        for t in types:
            if _stat_ns(dfd, t) is None:
                raise NsshellError(f"{path}/{t} is not a mounted namespace file any more "
                                   "(half-removed?)", f"`unpersist {path}` cleans it up")
            fd = _open_in(dfd, t)
            holder = None
            if t == "pid" and meta.get("init"):
                holder = PersistedInit(meta["init"].get("pid"), meta["init"].get("start"))
            handles[t] = Handle(fd, nstypes.BY_NAME[t], origin=f"{path}/{t}", holder=holder)
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


def list_persisted(session=None, root: str | None = None) -> list[dict]:
    """Every persisted namespace this user can see: one dict per (name, type) with
    name, type, path, nsid (str, 'net:[4026...]'), inode, source ('nsshell', 'ip netns',
    'keeper') and, for a PID namespace with a known init, alive (bool).  Cheap: a
    directory listing and a stat per file (the `ls` and `handles` commands call it)."""
    root = normal(root or root_of(session))
    out: list[dict] = []
    store_net = set()
    for name in _store_names(root):
        path = f"{root}/{name}"
        try:
            dfd = walk(path)
        except NsshellError:
            continue
        try:
            meta = _read_meta(dfd) or {}
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
    from . import keeper
    if keeper.available():
        for row in keeper.listing():
            out.append(row)
    return out


def lookup(session, text: str) -> NsSet | None:
    """A persisted set called TEXT (or kept in directory TEXT), opened; None if there is none."""
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
        s = NsSet(None, handles, origin=normal(text))
        s.persisted = normal(text)
        return s
    root = root_of(session)
    path = f"{normal(root)}/{text}"
    if NAME_OK(text) and exists_dir(path):
        handles, _meta = open_dir(path)
        return _adopt(session, text, handles, path, "persisted")
    st = _stat_netns(text)
    if st is not None:
        fd = os.open(f"{NETNS_DIR}/{text}", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        h = Handle(fd, nstypes.NET, origin=f"{NETNS_DIR}/{text}")
        return _adopt(session, text, {"net": h}, f"{NETNS_DIR}/{text}", "ip netns")
    from . import keeper
    if keeper.available():
        got = keeper.get(text)
        if got is not None:
            handles = got
            return _adopt(session, text, handles, f"keeper:{text}", "keeper")
    return None


def _adopt(session, name: str, handles: dict[str, Handle], path: str, origin: str) -> NsSet:
    s = NsSet(name, handles, origin=origin)
    s.persisted = path
    if session is not None and name not in session.sets:
        try:
            session.check_new_name(name)
        except ValueError:
            return s  # an odd ip netns name: usable, but not held under it
        session.add_set(s)
    return s


# --- hooking into a session ------------------------------------------------------------------

def _resolver(session, text: str):
    return lookup(session, text)


def _candidates(session, prefix: str) -> list[tuple[str, str]]:
    seen: dict[str, list[str]] = {}
    try:
        rows = list_persisted(session)
    except Exception:
        return []
    for r in rows:
        if r["name"].startswith(prefix):
            seen.setdefault(r["name"], []).append(r["type"])
    return [(n, "persisted: " + " ".join(ts)) for n, ts in sorted(seen.items())]


def _rows(session) -> list[dict]:
    """Rows for `handles`: persisted sets this session does not hold yet."""
    out = []
    try:
        found = list_persisted(session)
    except Exception:
        return out
    for r in found:
        if r["name"] in session.sets:
            continue
        row = {"name": r["name"], "type": r["type"], "ns": r["nsid"], "inode": r["inode"],
               "owner": _owner_of(r["path"]) if r["source"] != "keeper" else r.get("owner"),
               "origin": r["source"], "persisted": r["path"], "current": False}
        if "alive" in r:
            row["alive"] = r["alive"]
        out.append(row)
    return out


def _owner_of(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        o = owner_nsid(fd)
        return str(o) if o else None
    except OSError:
        return None
    finally:
        os.close(fd)


_resolver.candidates = _candidates
_resolver.rows = _rows


def install(session) -> None:
    """Add the persisted-name resolver and the persist_root setting to SESSION (cheap:
    nothing is scanned until a name is looked up)."""
    if _resolver not in session.resolvers:
        session.resolvers.append(_resolver)
    if "persist_root" not in session.settings:
        session.add_setting("persist_root", default_root(), _parse_root,
                            f"where `persist` keeps namespaces (${ENV_ROOT}, default {DEFAULT_ROOT})")
