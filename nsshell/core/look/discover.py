"""Every namespace on the system, and what keeps each one alive.

One pass over /proc finds what lsns finds (the namespaces processes are in,
with the number of processes, the lowest pid, its user and command) and also
what lsns misses: namespaces kept only by an open fd of some process
(/proc/PID/fd/* that are nsfs files), by a thread whose namespaces differ
from its process's (/proc/PID/task/TID/ns), by a bind mount in any mount
namespace (nsfs entries of /proc/PID/mountinfo, one process per mount
namespace; a mount namespace no process is in is entered by a forked helper
that reads its own table there), by a socket created in another network
namespace (SIOCGSKNS on socket fds), and the session's own handles.

This is the hot path of `ls`: it uses os.listdir/os.stat/os.readlink on /proc
directly and imports nothing heavy.  Processes that exit during the scan and
files that cannot be read (rootless) are skipped, never an error.
"""

from __future__ import annotations

import errno
import os

from ...kernel import mountinfo, nsfs, nstypes, procfs, syscalls
from ...kernel.nstypes import NsType
from ...progress import NULL as NULL_PROGRESS
from ...progress import Progress, Task

TYPE_CHECKING = False   # typing is not imported to start (tests/test_imports.py)
if TYPE_CHECKING:
    from typing import Callable, Iterable

# How a namespace is held, in the order `ls` lists them.  "children": a process's
# pid_for_children or time_for_children (after unshare, before the fork); "owner" and
# "parent": nothing holds it but a namespace it owns (NS_GET_USERNS) or is the parent
# of (NS_GET_PARENT), which keeps it alive.
KINDS = ("process", "thread", "children", "fd", "mount", "socket", "session", "owner", "parent")
RELATION_KINDS = ("owner", "parent")

# Extension hook for persisted names (the persist module adds itself here):
# each callable gets the session (or None) and yields (type name, inode, name) or
# (type name, inode, name, holder): a holder (as in NsInfo.holders) adds the namespace
# when the scan of /proc did not find it.
from . import NAME_SOURCES  # noqa: E402 - (the list lives in the package: start-up)

_NETNS_ROOT = "/run/netns/"


class NsInfo:
    """One namespace found by a scan."""

    __slots__ = ("type", "ino", "dev", "nprocs", "pid", "uid", "pids", "kinds", "holders",
                 "names", "paths", "mounts", "keep", "owner", "parent", "owner_uid",
                 "owner_creator", "via")

    def __init__(self, type_: str, ino: int, dev: int = 0):
        self.type = type_
        self.ino = ino
        self.dev = dev
        self.nprocs = 0
        self.pid: int | None = None        # lowest pid of a process in it
        self.uid: int | None = None        # owner of /proc/PID (as lsns)
        self.pids: list[int] = []
        self.kinds: set[str] = set()
        self.holders: list[dict] = []      # fd, thread, mount, socket, session details
        self.names: list[str] = []
        self.paths: list[str] = []         # /proc links it can be opened from (fd, thread)
        self.mounts: list[tuple[int, int, str]] = []  # bind mounts: (pid, mount id, mount point)
        self.keep: list = []               # fds received from helpers (paths name them)
        self.owner: int | None = None      # inode of the user namespace owning it
        self.parent: int | None = None     # inode of its parent (user and pid)
        self.owner_uid: int | None = None  # a user namespace's creator (NS_GET_OWNER_UID)
        self.owner_creator: int | None = None  # the creator of the user namespace owning it
        # (type, inode, ioctl_ns call: syscalls.ns_get_userns/ns_get_parent) that reach it
        self.via: list[tuple[str, int, Callable[[int], int]]] = []

    @property
    def label(self) -> str:
        return f"{self.type}:[{self.ino}]"

    def held(self) -> list[str]:
        return [k for k in KINDS if k in self.kinds]

    def add_name(self, name: str) -> None:
        if name not in self.names:
            self.names.append(name)

    def __repr__(self) -> str:
        return f"<NsInfo {self.label} {','.join(self.held())} nprocs={self.nprocs}>"


class Scan:
    """The result of one pass: namespaces by (type, inode)."""

    def __init__(self) -> None:
        self.namespaces: dict[tuple[str, int], NsInfo] = {}
        self.others: dict[tuple[str, int], NsInfo] = {}   # types not asked for, seen on the way
        self.skipped: int = 0            # processes we could not read (rootless)

    def get(self, type_: str, ino: int) -> NsInfo | None:
        return self.namespaces.get((type_, ino))

    def _add(self, type_: str, ino: int, dev: int = 0) -> NsInfo:
        key = (type_, ino)
        info = self.namespaces.get(key)
        if info is None:
            info = self.namespaces[key] = NsInfo(type_, ino, dev)
        elif dev and not info.dev:
            info.dev = dev
        return info

    def sorted(self) -> list[NsInfo]:
        """lsns's order: by inode."""
        return sorted(self.namespaces.values(), key=lambda i: (i.ino, i.type))

    def user_of(self, info: NsInfo) -> int | None:
        """lsns's UID: of the lowest process in it, or, when no process is, of the creator
        of the user namespace that owns it (NS_GET_OWNER_UID of NS_GET_USERNS)."""
        return info.uid if info.uid is not None else info.owner_creator


# --- small readers -------------------------------------------------------------------

_users: dict[int, str] = {}


def user_name(uid: int | None) -> str | None:
    """The name of UID as lsns prints it (the number when there is no passwd entry)."""
    if uid is None:
        return None
    name = _users.get(uid)
    if name is None:
        try:
            import pwd
            name = pwd.getpwuid(uid).pw_name
        except (KeyError, ImportError):
            name = str(uid)
        _users[uid] = name
    return name


def _proc_text(pid: int, name: str) -> str | None:
    """lsns's proc_file_strdup: NULs become spaces, the last byte is dropped.  (NAME is
    cmdline or comm: the kernel fills a read as far as it can, so a short read is the
    end: no second read to see it.)"""
    try:
        fd = os.open(f"/proc/{pid}/{name}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        chunks, size = [], 0
        while size < 8192:
            b = os.read(fd, 8192 - size)
            if not b:
                break
            chunks.append(b)
            size += len(b)
            if size < 8192 and len(b) < 4096:
                break   # short of a page: the end (one page at least is filled if there)
    except OSError:
        return None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if not data:
        return None
    return data.replace(b"\0", b" ")[:-1].decode("utf-8", "replace")


# The names nsshell's own helpers give themselves (set_process_title).
HELPERS = ("nsshell-sockets", "nsshell-init", "nsshell-keeper", "nsshell-holder", "nsshell-standby")


def helper_of(info: NsInfo) -> str | None:
    """The nsshell helper that is the only kind of process in INFO (e.g. the socket opener
    of a rootless shell, in a network namespace of its own), so that listings can say
    whose it is; None when another process is in it, or none."""
    if len(info.pids) > 16:
        return None
    found = None
    for pid in info.pids:
        comm = _comm(pid)
        if comm not in HELPERS:
            return None
        found = comm
    return found


def _comm(pid: int) -> str | None:
    """The kernel's comm of PID exactly ("nsshell-init " is not ours): /proc/PID/comm is
    the comm and one newline, a cheaper read than the stat line that also holds it."""
    try:
        data = procfs.read(f"{pid}/comm")
    except OSError:
        return None
    return data[:-1].decode("utf-8", "replace") if data.endswith(b"\n") else None


def command_of(pid: int | None) -> str | None:
    """The command line of PID as lsns shows it (its comm when the cmdline is empty)."""
    if pid is None:
        return None
    return _proc_text(pid, "cmdline") or _proc_text(pid, "comm")


def _parse_ref(text: str) -> tuple[str, int] | None:
    """'net:[4026532]' -> ('net', 4026532)."""
    head, sep, tail = text.partition(":[")
    if not sep or not tail.endswith("]") or head not in nstypes.BY_NAME:
        return None
    try:
        return head, int(tail[:-1])
    except ValueError:
        return None


def socket_netns(pid: int, fd: int) -> int:
    """An fd on the network namespace a socket (fd FD of PID) was created in (a copy of
    the socket by pidfd_getfd, then SIOCGSKNS); OSError when not allowed."""
    pidfd = os.pidfd_open(pid)
    try:
        sfd = syscalls.pidfd_getfd(pidfd, fd)
    finally:
        os.close(pidfd)
    try:
        return syscalls.socket_netns(sfd)
    finally:
        os.close(sfd)


# --- the scan ------------------------------------------------------------------------

def scan(types: Iterable[NsType] | None = None, session=None, *, fds: bool = True,
         threads: bool = True, mounts: bool = True, sockets: bool = True,
         relations: bool = True, progress: Progress | None = None,
         persist_root: str | None = None, split: bool = True, children: bool = True) -> Scan:
    """Every namespace of TYPES (default all) on the system, with its holders.

    A bind mount at PERSIST_ROOT/NAME/TYPE (the caller's persist root; none by default)
    or /run/netns/NAME names its namespace NAME.

    With RELATIONS, the owner (NS_GET_USERNS) and parent (NS_GET_PARENT) of every
    namespace found are followed, and what they reach is included: user namespaces
    alive only as the owner of another namespace, or as the parent of another user
    namespace, and PID namespaces alive only as a parent (lxkns's hidden namespaces).
    Reports each process read to PROGRESS (default: the session's).  SPLIT: a forked
    reader may take half of /proc when a CPU is spare (faster, not cheaper: the live
    view, which pays CPU on every refresh, says False).  CHILDREN: read each process's
    pid_for_children and time_for_children links too (what unshare() made before a
    fork holds); the live view's light refreshes leave them to its full ones."""
    if progress is None:
        progress = session.progress if session is not None else NULL_PROGRESS
    wanted = tuple(types) if types is not None else nstypes.ALL
    if relations and nstypes.USER in wanted:
        types = nstypes.ALL   # a user namespace may be reached only as an owner
    with progress.task("scanning processes") as task:
        result = _scan(types, session, task, fds=fds, threads=threads, mounts=mounts,
                       sockets=sockets, relations=relations, persist_root=persist_root,
                       split=split, children=children)
    if len(wanted) != len(nstypes.ALL):
        names = {t.name for t in wanted}
        everything = result.namespaces
        result.namespaces = {k: v for k, v in everything.items() if k[0] in names}
        result.others = {k: v for k, v in everything.items() if k[0] not in names}
    return result


def _scan(types, session, task: Task, *, fds: bool, threads: bool, mounts: bool,
          sockets: bool, relations: bool, persist_root: str | None = None,
          split: bool = True, children: bool = True) -> Scan:
    types = tuple(types) if types is not None else nstypes.ALL
    # Mount namespaces are always looked at: bind mounts are found per mount namespace,
    # and one no process is in is entered through whatever holds it (an fd, a bind
    # mount, the session).  They are dropped at the end when not asked for.
    drop_mnt = mounts and nstypes.MNT not in types
    if drop_mnt:
        types += (nstypes.MNT,)
    wanted = tuple((t.name, f"/ns/{t.proc}") for t in types)
    names = {t.name for t in types}
    children_rel = tuple((t.name, f"/ns/{t.for_children}") for t in types
                         if t.for_children != t.proc) if children else ()
    result = Scan()
    nss = result.namespaces
    add = result._add
    me = os.getpid() if session is not None else -1
    stat = os.stat
    listdir = os.listdir
    mnt_pids: dict[int, list[int]] = {}
    need_mnt_stat = "mnt" not in names   # bind mounts are found per mount namespace
    sockets_seen: set[str] = set()
    want_net_sockets = sockets and "net" in names
    try:
        nsfs_dev = stat("/proc/self/ns/user").st_dev if fds else None
    except OSError:
        nsfs_dev = None

    # One pass over /proc (_read_procs: readlink of each ns link, plain paths, no
    # directory fds), split with a forked reader where it pays; then what was read is
    # sorted into namespaces here.  readlink (not stat) of ns/TYPE: the same permission
    # check as stat (where it is refused, lsns does not count the process, and nor do
    # we) without the kernel opening the namespace's nsfs file for each link.
    try:
        entries = listdir("/proc")
    except OSError:
        return result
    entries = [name for name in entries if name.isdigit()]
    task.total = len(entries)
    links = tuple(rel for _, rel in wanted) + tuple(rel for _, rel in children_rel)
    nwanted = len(wanted)
    dev = nsfs_dev or _nsfs_dev()
    wnames = tuple(tname for tname, _ in wanted)
    # A link's text ("net:[4026531833]") names one namespace: parsed once, then looked up.
    by_link: dict[str, tuple[NsInfo, int]] = {}
    for pid, targets, nthreads, fdlinks in _read_all(entries, links, threads, fds, me,
                                                     task.advance, split):
        own: dict[str, int] = {}
        if targets is not None:
            for tname, target in zip(wnames, targets):
                if target is None:
                    continue  # EACCES (not ours), or no such type
                hit = by_link.get(target)
                if hit is None:
                    ino = int(target[target.index("[") + 1:-1])
                    key = (tname, ino)
                    info = nss.get(key)
                    if info is None:
                        info = nss[key] = NsInfo(tname, ino, dev)
                    info.kinds.add("process")
                    hit = by_link[target] = (info, ino)
                info, own[tname] = hit
                info.pids.append(pid)
        if not own:
            result.skipped += 1
        for (tname, rel), target in zip(children_rel, targets[nwanted:] if targets else ()):
            # after unshare(CLONE_NEWPID/NEWTIME), before the fork: only this link holds it
            if target is None:
                continue
            ino = int(target[target.index("[") + 1:-1])
            if own.get(tname, ino) == ino:
                continue
            info = add(tname, ino, dev)
            info.kinds.add("children")
            info.holders.append({"kind": "children", "pid": pid, "link": rel[4:]})
            info.paths.append(f"/proc/{pid}{rel}")
        if mounts:
            mnt = own.get("mnt")
            if mnt is None and need_mnt_stat:
                try:
                    mnt = stat(f"/proc/{pid}/ns/mnt").st_ino
                except OSError:
                    mnt = None
            if mnt is not None:
                mnt_pids.setdefault(mnt, []).append(pid)
        if threads and own and nthreads > 1:
            _scan_threads(result, pid, wanted, own)
        if not fdlinks:
            continue
        fdbase = f"/proc/{pid}/fd/"
        for fdname, target in fdlinks:
            if target[:1] == "/":
                # A file, or a namespace opened through a bind mount of it (the link
                # reads as that path, or "/" once it is unmounted): nsfs decides.
                if nsfs_dev is not None:
                    _scan_path_fd(result, pid, fdbase + fdname, nsfs_dev, names)
                continue
            if target.startswith("socket:["):
                if want_net_sockets and target not in sockets_seen:
                    sockets_seen.add(target)
                    _scan_socket(result, pid, int(fdname), own.get("net"))
                continue
            ref = _parse_ref(target)
            if ref is None or ref[0] not in names:
                continue
            info = add(ref[0], ref[1])
            info.kinds.add("fd")
            info.holders.append({"kind": "fd", "pid": pid, "fd": int(fdname)})
            info.paths.append(fdbase + fdname)
    for info, _ in by_link.values():
        info.nprocs = len(info.pids)
        info.pid = min(info.pids)
    # Name sources declared with_scan are called now that the processes are read (one
    # may start slow work there, e.g. ask a container engine, while the rest of the scan
    # runs), and read at the end, with the others.
    view = ScanView(result, mnt_pids if mounts else None)
    early: dict = {}
    try:
        for source in NAME_SOURCES:
            if getattr(source, "with_scan", False):
                try:
                    early[source] = source(session, view)
                except Exception:  # noqa: BLE001 - a broken hook must not break ls
                    early[source] = ()
        _scan_rest(result, session, stat, mnt_pids, names, persist_root, mounts,
                   relations, drop_mnt)
        for source in NAME_SOURCES:
            found = early.pop(source) if source in early else None
            try:
                if found is None:
                    found = source(session)
                for tname, ino, nm, *holder in found:
                    info = result.get(tname, ino)
                    if info is None and holder and tname in names and \
                            not (drop_mnt and tname == "mnt"):
                        # held where /proc cannot show it (the rootless keeper is not
                        # dumpable: its own user cannot list its fds); the source says how
                        info = result._add(tname, ino)
                        info.kinds.add(holder[0]["kind"])
                        info.holders.append(holder[0])
                    if info is not None:
                        info.add_name(nm)
            except Exception:  # noqa: BLE001 - a broken hook must not break ls
                _close(found)
                continue
    finally:
        for found in early.values():   # not read (an error, Ctrl-C): end what they began
            _close(found)
    return result


def _close(found) -> None:
    close = getattr(found, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # noqa: BLE001
            pass


def _scan_rest(result: Scan, session, stat, mnt_pids: dict[int, list[int]], names: set[str],
               persist_root: str | None, mounts: bool, relations: bool,
               drop_mnt: bool) -> None:
    """The scan after the pass over /proc: lsns's users, bind mounts, the session's
    handles, mount namespaces no process is in, owners and parents."""
    nss = result.namespaces
    # lsns's UID: the owner of /proc/PID of the lowest process in the namespace (read
    # once per such process, not for every process)
    uids: dict[int, int | None] = {}
    for info in nss.values():
        if info.pid is not None and info.uid is None:
            if info.pid not in uids:
                try:
                    uids[info.pid] = stat(f"/proc/{info.pid}").st_uid
                except OSError:
                    uids[info.pid] = None   # exited since: the owner's creator stands in
            info.uid = uids[info.pid]

    if mounts:
        routes, seen = _scan_mounts(result, mnt_pids, names, persist_root)
    if session is not None:
        _session_holders(result, session, names)
    if mounts:
        _scan_unentered(result, mnt_pids, routes, names, seen)
    if relations:
        _follow_relations(result, names)
    if mounts and drop_mnt:
        for key in [k for k in nss if k[0] == "mnt"]:
            del nss[key]


class ScanView:
    """What a name source declared with_scan may read of the scan that calls it (plain
    values only): the processes found in each namespace of a type."""

    __slots__ = ("_result", "_mnt")

    def __init__(self, result: Scan, mnt_pids: dict[int, list[int]] | None):
        self._result = result
        self._mnt = mnt_pids

    def pids(self, tname: str) -> dict[int, list[int]] | None:
        """inode -> pids of the processes the scan found in each namespace of type TNAME
        (those it could read); None when the scan did not look at that type."""
        if tname == "mnt" and self._mnt is not None:
            # every process's, whatever types were asked for (a copy: the scan goes on
            # with its own)
            return {ino: list(pids) for ino, pids in self._mnt.items()}
        out = {ino: list(i.pids) for (t, ino), i in self._result.namespaces.items()
               if t == tname and i.pids}
        if out or any(t == tname for t, _ in self._result.namespaces):
            return out
        return None


def _nsfs_dev() -> int:
    try:
        return os.stat("/proc/self/ns/user").st_dev
    except OSError:
        return 0


def _read_procs(entries: list[str], links: tuple[str, ...], threads: bool, fds: bool,
                me: int, advance: Callable[[], None] | None = None) -> list[tuple]:
    """What the scan needs of each process in ENTRIES (pid directory names), read in the
    fewest system calls and nothing else: (pid, targets, nthreads, fdlinks) with targets
    the readlink of each of LINKS (None where refused or missing; targets None when
    none could be read), nthreads from the task directory's link count (only when
    asked, for a process whose links could be read), and fdlinks the (fd, link) pairs
    of its open files that may be namespaces (ns links, paths, sockets).  A process
    that has exited is left out."""
    readlink, listdir, stat = os.readlink, os.listdir, os.stat
    out = []
    for name in entries:
        if advance is not None:
            advance()
        base = "/proc/" + name
        targets: list[str | None] | None = []
        for rel in links:
            try:
                targets.append(readlink(base + rel))
            except OSError:
                targets.append(None)
        if not any(targets):
            try:
                stat(base)
            except OSError:
                continue   # exited
            targets = None  # not ours (rootless), or a zombie
        nthreads = 1
        if threads and targets is not None:
            try:
                nthreads = stat(base + "/task").st_nlink - 2
            except OSError:
                pass
        fdlinks = []
        if fds and int(name) != me:
            fdbase = base + "/fd/"
            try:
                fdnames = listdir(fdbase)
            except OSError:
                fdnames = ()
            for fdname in fdnames:
                try:
                    target = readlink(fdbase + fdname)
                except OSError:
                    continue
                c = target[:1]
                if c == "a" or (c == "p" and target.startswith("pipe:")):
                    continue   # pipe:[...], anon_inode:... (pid:[...] is a namespace)
                fdlinks.append((fdname, target))
        out.append((int(name), targets, nthreads, fdlinks))
    return out


# A forked reader takes half of /proc when there are at least this many processes and
# a CPU to spare: reading /proc is mostly the kernel's path walk, which two CPUs do at once.
SPLIT_AT = 400


def _read_all(entries: list[str], links: tuple[str, ...], threads: bool, fds: bool, me: int,
              advance: Callable[[], None], split: bool = True) -> list[tuple]:
    """_read_procs over ENTRIES, half of them in a forked reader when that pays: the
    reader only reads /proc (no namespace entered, every fd but its pipe closed) and
    sends its list back marshalled; whatever goes wrong with it, its half is read here."""
    if not split or len(entries) < SPLIT_AT or not _cpu_to_spare() or not _may_fork():
        return _read_procs(entries, links, threads, fds, me, advance)
    import marshal
    half, rest = entries[:len(entries) // 2], entries[len(entries) // 2:]
    r, w = os.pipe2(os.O_CLOEXEC)
    try:
        child = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        return _read_procs(entries, links, threads, fds, me, advance)
    if child == 0:   # the reader
        status = 1
        try:
            os.closerange(3, w)
            os.closerange(w + 1, 1 << 20)
            data = memoryview(marshal.dumps(_read_procs(half, links, threads, fds, me)))
            while data:
                data = data[os.write(w, data):]
            status = 0
        finally:
            os._exit(status)
    os.close(w)
    try:
        mine = _read_procs(rest, links, threads, fds, me, advance)
        chunks = []
        while True:
            b = os.read(r, 1 << 20)
            if not b:
                break
            chunks.append(b)
    finally:
        os.close(r)
        try:
            _, status = os.waitpid(child, 0)
        except ChildProcessError:   # reaped by someone else: trust the data if whole
            status = 0
    try:
        theirs = marshal.loads(b"".join(chunks)) if status == 0 else None
    except (EOFError, ValueError, TypeError):
        theirs = None
    if theirs is None:
        theirs = _read_procs(half, links, threads, fds, me)
    for _ in half:
        advance()
    return theirs + mine


# The CPU pressure (percent) under which a CPU is taken to be spare: measured with the
# discovery crowd, the split saved ~25% at 3-6% pressure and cost ~50% at 46%.
PRESSURE_MAX = 25.0


def _cpu_to_spare() -> bool:
    """A second CPU, and little waiting for CPUs lately: on a machine already busy the
    reader only adds the cost of a fork.  The kernel's CPU pressure over the last 10 s
    says so (/proc/pressure/cpu: the share of time some task waited for a CPU); without
    it, the load average over the last minute (at most one CPU's worth of work beside
    ours).  The load average alone kept the reader off on idle CPUs: it lags by a
    minute and counts tasks asleep in the kernel (I/O, namespaces being torn down)."""
    cpus = os.cpu_count() or 1
    if cpus < 2:
        return False
    pressure = _cpu_pressure()
    if pressure is not None:
        return pressure < PRESSURE_MAX
    try:
        load = os.getloadavg()[0]
    except OSError:
        return False
    return load <= cpus - 1


def _cpu_pressure(path: str = "/proc/pressure/cpu") -> float | None:
    """"some avg10" of the kernel's CPU pressure (percent); None without PSI."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        first = os.read(fd, 256).split(b"\n", 1)[0]
    except OSError:
        return None
    finally:
        os.close(fd)
    if not first.startswith(b"some "):
        return None
    for field in first.split()[1:]:
        key, _, value = field.partition(b"=")
        if key == b"avg10":
            try:
                return float(value)
            except ValueError:
                return None
    return None


def _may_fork() -> bool:
    """Only a process with one thread forks a Python reader (a lock another thread holds
    would stay held in the child)."""
    import sys
    threading = sys.modules.get("threading")
    return threading is None or threading.active_count() == 1


def _follow_relations(result: Scan, names: set[str]) -> None:
    """The owner and parent of every namespace found, and theirs in turn (each namespace
    is opened once); those no scan found otherwise are added, held as "owner"/"parent",
    with the way to reach them (open_found)."""
    want_user = "user" in names
    todo = [i for i in result.namespaces.values()
            if want_user or i.type == "pid" or i.uid is None]
    pending: dict[tuple[str, int], int] = {}   # fds on namespaces reached by an ioctl
    try:
        while todo:
            info = todo.pop()
            fd = pending.pop((info.type, info.ino), None)
            if fd is None:
                try:
                    fd = open_info(info)
                except OSError:
                    continue
            try:
                _relate(result, info, fd, want_user, todo, pending)
            finally:
                os.close(fd)
    finally:
        for fd in pending.values():
            os.close(fd)


def _relate(result: Scan, info: NsInfo, fd: int, want_user: bool, todo: list,
            pending: dict) -> None:
    if info.type == "user":
        try:
            info.owner_uid = syscalls.ns_get_owner_uid(fd)
        except OSError:
            pass
    asks = []
    if want_user or info.type == "user" or info.uid is None:   # uid: lsns's USER fallback
        asks.append(("owner", syscalls.ns_get_userns, "user"))
    if info.type == "pid":
        asks.append(("parent", syscalls.ns_get_parent, "pid"))
    for rel, request, rtype in asks:
        try:
            rfd = request(fd)
        except OSError:
            continue   # EPERM: above what we may see (the top)
        try:
            st = os.fstat(rfd)
            if rel == "owner":
                info.owner = st.st_ino
                try:
                    info.owner_creator = syscalls.ns_get_owner_uid(rfd)
                except OSError:
                    pass
                if not want_user:
                    continue
                if info.type == "user":
                    info.parent = st.st_ino      # a user namespace's owner is its parent
                    rel = "parent"
            else:
                info.parent = st.st_ino
            key = (rtype, st.st_ino)
            other = result.namespaces.get(key)
            if other is None:
                other = result._add(rtype, st.st_ino, st.st_dev)
                pending[key], rfd = rfd, -1
                todo.append(other)
            # a way in, even for one held otherwise: an fd or a process seen by the scan
            # may be gone by the time it is opened (open_found tries this next)
            other.via.append((info.type, info.ino, request))
            if other.kinds and not other.kinds <= set(RELATION_KINDS):
                continue   # held otherwise: not listed as held by this relation
            other.kinds.add(rel)
            other.holders.append({"kind": rel, "of": info.label})
        finally:
            if rfd >= 0:
                os.close(rfd)


def open_found(result: Scan, info: NsInfo, _seen: set | None = None) -> int:
    """An O_CLOEXEC fd on a namespace of RESULT however it was found: as open_info does,
    or, for one alive only as an owner or parent, through the ioctl on what it owns."""
    try:
        return open_info(info)
    except OSError as e:
        last = e
    seen = _seen if _seen is not None else set()
    seen.add((info.type, info.ino))
    for vtype, vino, request in info.via:
        other = result.get(vtype, vino) or result.others.get((vtype, vino))
        if other is None or (vtype, vino) in seen:
            continue
        try:
            ofd = open_found(result, other, seen)
        except OSError as e:
            last = e
            continue
        try:
            fd = request(ofd)
        except OSError as e:
            last = e
            continue
        finally:
            os.close(ofd)
        st = os.fstat(fd)
        if st.st_ino == info.ino:
            return fd
        os.close(fd)
    raise last


def _scan_threads(result: Scan, pid: int, wanted, own: dict[str, int]) -> None:
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    for tid in tids:
        if tid == str(pid):
            continue
        for tname, rel in wanted:
            try:
                st = os.stat(f"/proc/{pid}/task/{tid}{rel}")
            except OSError:
                continue
            if own.get(tname) == st.st_ino:
                continue
            info = result._add(tname, st.st_ino, st.st_dev)
            info.kinds.add("thread")
            info.holders.append({"kind": "thread", "pid": pid, "tid": int(tid)})
            info.paths.append(f"/proc/{pid}/task/{tid}{rel}")


def _scan_path_fd(result: Scan, pid: int, path: str, nsfs_dev: int, names: set[str]) -> None:
    """An fd whose link reads as a path: a namespace when its file is on nsfs."""
    try:
        st = os.stat(path)
    except OSError:
        return
    if st.st_dev != nsfs_dev:
        return
    t = _nstype_of(path, st)
    if t is None or t not in names:
        return
    fd = int(path.rsplit("/", 1)[1])
    info = result._add(t, st.st_ino, st.st_dev)
    info.kinds.add("fd")
    info.holders.append({"kind": "fd", "pid": pid, "fd": fd})
    info.paths.append(path)


def _nstype_of(path: str, st: os.stat_result) -> str | None:
    """The namespace type of the nsfs file at PATH (NS_GET_NSTYPE), still the file ST."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            return None
        t = nstypes.BY_FLAG.get(syscalls.ns_get_nstype(fd))
        return t.name if t else None
    except OSError:
        return None
    finally:
        os.close(fd)


def _scan_socket(result: Scan, pid: int, fd: int, own_net: int | None) -> None:
    try:
        nfd = socket_netns(pid, fd)
    except OSError:
        return  # not allowed (rootless), gone, or not a socket any more
    try:
        st = os.fstat(nfd)
    except OSError:
        return
    finally:
        os.close(nfd)
    if st.st_ino == own_net:
        info = result.get("net", st.st_ino)
        if info is not None and "process" in info.kinds:
            return
    info = result._add("net", st.st_ino, st.st_dev)
    info.kinds.add("socket")
    info.holders.append({"kind": "socket", "pid": pid, "fd": fd})


def _nsfs_mounts(mounts: list[mountinfo.Mount]) -> Iterable[tuple[int, str, int, int, str]]:
    """The namespace bind mounts among MOUNTS (nsfs ones): (mount id, type, inode, st_dev,
    mount point), in table order."""
    for m in mounts:
        ref = _parse_ref(m.root)
        if ref is None:
            continue
        try:
            dev = m.st_dev
        except ValueError:
            continue
        yield m.id, ref[0], ref[1], dev, m.target


def _scan_mounts(result: Scan, mnt_pids: dict[int, list[int]], names: set[str],
                 persist_root: str | None = None):
    """nsfs bind mounts in every mount namespace a process is in.  Returns the bind
    mounts of mount namespaces (inode -> (pid, mount id, mount point)) and the holders
    recorded, for _scan_unentered."""
    seen: set[tuple[int, str]] = set()
    # Mount namespaces bound somewhere, whatever types are asked for: the way into those
    # no process is in.  (mnt inode -> (pid, mount id, mount point))
    mnt_routes: dict[int, tuple[int, int, str]] = {}
    for mnt_ino, pids in mnt_pids.items():
        found = None
        for pid in pids[:4]:
            try:
                found = mountinfo.read(f"/proc/{pid}/mountinfo", fstype="nsfs")
                break
            except OSError:
                continue
        if not found:
            continue
        for mnt_id, tname, ino, dev, mp in _nsfs_mounts(found):
            if tname == "mnt" and ino not in mnt_routes:
                mnt_routes[ino] = (pid, mnt_id, mp)
            if tname not in names:
                continue
            info = result._add(tname, ino, dev)
            info.kinds.add("mount")
            if (ino, mp) not in seen:
                seen.add((ino, mp))
                info.holders.append({"kind": "mount", "path": mp, "mnt": f"mnt:[{mnt_ino}]",
                                     "pid": pid})
                _name_from_mount(info, mp, persist_root)
            # Opened later as that mount (by its id), never as whatever the path leads to.
            info.mounts.append((pid, mnt_id, mp))
    return mnt_routes, seen


# --- mount namespaces no process is in ---------------------------------------------------
#
# A mount namespace held only by a bind mount (`unshare --mount=FILE`, its process gone),
# an fd or a session handle has no /proc/PID/mountinfo: a forked helper enters it (the
# shell never calls setns), reads its own mountinfo through the shell's /proc, opens each
# nsfs bind mount there by its mount id (nsfs.open_bind_mount, as the shell does) and
# hands the fds back over SCM_RIGHTS.  Mount namespaces found that way are entered in
# turn (a visited set bounds the walk).  A normal host has none: no helper is forked.

_MAX_UNENTERED = 512        # mount namespaces entered by one scan, at most
_MAX_PARALLEL = 8           # helpers at work at once
_MAX_FDS = 250              # fds one helper hands back (SCM_RIGHTS takes 253)


class _KeptFd:
    """An fd a scan received from a helper, closed with the NsInfo that keeps it."""

    __slots__ = ("fd",)

    def __init__(self, fd: int):
        self.fd = fd

    def __del__(self):
        try:
            os.close(self.fd)
        except (OSError, TypeError, AttributeError):
            pass


def _nsfs_mounts_here(procfd: int, wanted: frozenset, skip: frozenset):
    """In a helper that entered a mount namespace: its nsfs bind mounts (WANTED types, and
    mnt always) as (type, inode, st_dev, mount id, mount point, index of the fd or None),
    with an fd on each namespace not in SKIP (one per namespace; mnt first)."""
    from ..proc import spawn
    mounts = mountinfo.read("self/mountinfo", dir_fd=procfd, fstype="nsfs")
    found = [m for m in _nsfs_mounts(mounts) if m[1] in wanted or m[1] == "mnt"]
    found.sort(key=lambda m: m[1] != "mnt")
    out, fds, opened = [], [], set()
    for mnt_id, tname, ino, dev, mp in found:
        index = None
        key = (tname, ino)
        if key not in skip and key not in opened and len(fds) < _MAX_FDS:
            try:
                fd = nsfs.open_bind_mount("self", mp, mnt_id, nstypes.get(tname),
                                          proc_fd=procfd)
            except OSError:
                fd = -1
            if fd >= 0:
                if os.fstat(fd).st_ino == ino:
                    index = len(fds)
                    fds.append(fd)
                    opened.add(key)
                else:
                    os.close(fd)
        out.append((tname, ino, dev, mnt_id, mp, index))
    return spawn.Handoff(out, fds)


def _mnt_entries(fd: int, label: str) -> list | None:
    """What a helper enters to read mount namespace FD: it, and (not root) the user
    namespace owning it, which gives the capability setns needs.  None when not root and
    that is the shell's own user namespace (setns would be refused: fork no helper)."""
    from ..proc import spawn
    entries = [spawn.Entry(nstypes.MNT, fd, label)]
    if os.geteuid() != 0:
        try:
            ufd = nsfs.owner_userns_fd(fd)
        except OSError:
            return None
        if os.fstat(ufd).st_ino == os.stat("/proc/self/ns/user").st_ino:
            os.close(ufd)
            return None
        entries.insert(0, spawn.Entry(nstypes.USER, ufd, "its owner user namespace"))
    return entries


def _scan_unentered(result: Scan, mnt_pids: dict[int, list[int]],
                    mnt_routes: dict[int, tuple[int, int, str]], names: set[str],
                    seen: set[tuple[int, str]]) -> None:
    """nsfs bind mounts inside the mount namespaces no process is in (see above)."""
    mnt = nstypes.MNT
    todo: dict[int, Callable[[], int]] = {}
    for ino, (pid, mnt_id, mp) in mnt_routes.items():
        if ino not in mnt_pids:
            todo[ino] = lambda pid=pid, mnt_id=mnt_id, mp=mp: nsfs.open_bind_mount(
                pid, mp, mnt_id, mnt)
    for (tname, ino), info in result.namespaces.items():   # held by an fd, a thread, us
        if tname == "mnt" and ino not in mnt_pids and ino not in todo:
            todo[ino] = lambda info=info: open_info(info)
    if not todo:
        return
    frontier: list[tuple[int, int, bool]] = []   # (mnt inode, fd, fd owned by a _KeptFd)
    for ino, opener in todo.items():
        try:
            fd = opener()
        except OSError:
            continue  # not ours to enter (rootless), or gone
        if os.fstat(fd).st_ino != ino:
            os.close(fd)
            continue
        frontier.append((ino, fd, False))
    if not frontier:
        return
    from ..proc import spawn
    from ...errors import NsshellError
    visited = set(mnt_pids) | {ino for ino, _, _ in frontier}
    wanted = frozenset(names)
    procfd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        entered = 0
        while frontier and entered < _MAX_UNENTERED:
            batch = frontier[:_MAX_PARALLEL]
            frontier = frontier[_MAX_PARALLEL:]
            entered += len(batch)
            # Already reachable from the shell: no fd needed (mount namespaces visited
            # are entered through the fd we have).
            skip = frozenset([k for k, i in result.namespaces.items()
                              if i.pids or i.paths or i.mounts]
                             + [("mnt", v) for v in visited])
            pending: list[tuple[int, object]] = []
            owned: list[int] = []
            try:
                for ino, fd, _kept in batch:
                    entries = _mnt_entries(fd, f"mnt:[{ino}]")
                    if entries is None:
                        continue
                    owned += [e.fd for e in entries if e.nstype is not mnt]
                    pending.append((ino, spawn.start(entries, _nsfs_mounts_here, procfd,
                                                     wanted, skip)))
                while pending:
                    ino, p = pending.pop(0)   # result() reaps it, or ends it on Ctrl-C
                    try:
                        value, fds = p.result()
                    except (NsshellError, OSError):
                        continue  # refused (rootless), or the namespace is gone
                    frontier += _take(result, ino, value, fds, names, seen, visited)
            except BaseException:
                for _, p in pending:    # the ones not waited for yet
                    p.cancel()
                raise
            finally:
                for x in owned:
                    os.close(x)
                for _, fd, kept in batch:
                    if not kept:
                        os.close(fd)
    finally:
        os.close(procfd)
        for _, fd, kept in frontier:
            if not kept:
                os.close(fd)


def _take(result: Scan, mnt_ino: int, value: list, fds: list[int], names: set[str],
          seen: set[tuple[int, str]], visited: set[int]) -> list[tuple[int, int, bool]]:
    """Add what a helper found in mount namespace MNT_INO to RESULT; keep its fds on the
    namespaces they reach; return the mount namespaces to enter next."""
    nxt: list[tuple[int, int, bool]] = []
    used: set[int] = set()
    try:
        for tname, ino, dev, _mnt_id, mp, index in value:
            fd = fds[index] if index is not None and index < len(fds) else -1
            if fd >= 0:
                try:   # what the helper says is checked here again
                    ok = (nsfs.check_ns_fd(fd, nstypes.get(tname)) is not None
                          and os.fstat(fd).st_ino == ino)
                except OSError:
                    ok = False
                if not ok:
                    fd = -1
            kept = False
            if tname in names:
                info = result._add(tname, ino, dev)
                info.kinds.add("mount")
                if (ino, mp) not in seen:
                    seen.add((ino, mp))
                    # No process sees this mount: `pid` is null.  No name is taken from
                    # it either (a name must be a reference the shell accepts).
                    info.holders.append({"kind": "mount", "path": mp,
                                         "mnt": f"mnt:[{mnt_ino}]", "pid": None})
                # Kept where no process is in it, even when another process's fd holds
                # it too: that fd may be closed before the namespace is opened.
                if fd >= 0 and not info.pids and not info.mounts and not info.keep:
                    info.keep.append(_KeptFd(fd))
                    info.paths.insert(0, f"/proc/self/fd/{fd}")
                    used.add(fd)
                    kept = True
            if tname == "mnt" and fd >= 0 and ino not in visited:
                visited.add(ino)
                nxt.append((ino, fd, kept))
                used.add(fd)
    finally:
        for fd in fds:
            if fd not in used:
                os.close(fd)
    return nxt


def _name_from_mount(info: NsInfo, mp: str, persist_root: str | None) -> None:
    """Persisted names: /run/netns/NAME (ip netns) and PERSIST_ROOT/NAME/TYPE."""
    store = persist_root.rstrip("/") + "/" if persist_root else None
    if mp.startswith(_NETNS_ROOT) and info.type == "net":
        rest = mp[len(_NETNS_ROOT):]
        if rest and "/" not in rest:
            info.add_name(rest)
    elif store is not None and mp.startswith(store):
        rest = mp[len(store):].split("/")
        if len(rest) == 2 and rest[0]:
            info.add_name(rest[0])


def _session_holders(result: Scan, session, names: set[str]) -> None:
    """The session's own handles, named sets and persisted names."""
    seen: set[tuple[str, int, str | None]] = set()
    held = list(session.held()) + [("host", h) for h in session.host.handles.values()]
    for setname, h in held:
        if h.closed or h.type.name not in names:
            continue
        key = (h.type.name, h.nsid.ino, setname)
        if key in seen:
            continue
        seen.add(key)
        info = result._add(h.type.name, h.nsid.ino, h.nsid.dev)
        info.kinds.add("session")
        info.holders.append({"kind": "session", "name": setname, "fd": h.fd})
        info.paths.append(f"/proc/self/fd/{h.fd}")
        if setname and (setname in session.sets or setname == "host"):
            info.add_name(setname)
    for setname, s in session.sets.items():
        persisted = s.persisted
        if persisted:
            for t, h in s.handles.items():
                info = result.get(t, h.nsid.ino)
                if info is not None:
                    info.add_name(setname)


# --- opening what a scan found -------------------------------------------------------

def open_info(info: NsInfo) -> int:
    """An O_CLOEXEC fd on a namespace a scan found; OSError if it is out of reach.

    Tried in turn: a process in it, an fd or thread holding it, a bind mount (opened as
    the very mount the scan found, by its id), a socket created in it.  Every fd comes
    from nsshell.kernel.nsfs's one opener (nsfs and the type checked before use; no
    FIFO blocks, no symlink is followed) and is checked to still be the same namespace
    (pids, fd numbers and paths can be reused)."""
    t = nstypes.get(info.type)
    openers = [lambda pid=pid: nsfs.open_proc_ns(pid, t) for pid in info.pids[:3]]
    openers += [lambda path=path: nsfs.open_ns(path, t) for path in info.paths]
    openers += [lambda m=m: nsfs.open_bind_mount(m[0], m[2], m[1], t) for m in info.mounts]
    openers += [lambda h=h: _checked(socket_netns(h["pid"], h["fd"]), t)
                for h in info.holders if h["kind"] == "socket"]
    last: OSError | None = None
    for opener in openers:
        try:
            fd = opener()
        except OSError as e:
            last = e
            continue
        if os.fstat(fd).st_ino == info.ino:
            return fd
        os.close(fd)
    raise last or OSError(errno.ENOENT, f"{info.label} is no longer reachable")


def _checked(fd: int, t: NsType) -> int:
    try:
        nsfs.check_ns_fd(fd, t)
        return fd
    except BaseException:
        os.close(fd)
        raise


_NETLINK: list = []
RTM_NEWNSID, RTM_GETNSID, NETNSA_NSID, NETNSA_FD = 88, 90, 1, 3


def netnsid(fd: int) -> int | str | None:
    """lsns's NETNSID of the network namespace open at FD: the id the shell's network
    namespace has given it (`ip netns set`), "unassigned", or None when it cannot be asked
    (RTM_GETNSID with NETNSA_FD, over one netlink socket)."""
    import socket
    import struct
    if not _NETLINK:
        try:
            nl = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                               socket.NETLINK_ROUTE)
            nl.bind((0, 0))
        except OSError:
            return None
        _NETLINK.append(nl)
    nl = _NETLINK[0]
    body = struct.pack("=B3x", socket.AF_UNSPEC) + struct.pack("=HHi", 8, NETNSA_FD, fd)
    try:
        nl.send(struct.pack("=IHHII", 16 + len(body), RTM_GETNSID, 1, 0, 0) + body)
        data = nl.recv(4096)
    except OSError:
        return None
    if len(data) < 20:
        return None
    length, kind = struct.unpack_from("=IH", data)
    if kind != RTM_NEWNSID:
        return None   # NLMSG_ERROR
    off = 20
    while off + 8 <= min(length, len(data)):
        alen, atype = struct.unpack_from("=HH", data, off)
        if atype == NETNSA_NSID:
            value = struct.unpack_from("=i", data, off + 4)[0]
            return value if value >= 0 else "unassigned"
        off += max((alen + 3) & ~3, 4)
    return None


def processes_in(t: NsType, ino: int) -> list[int]:
    """Pids of the processes in namespace TYPE:[INO] (a quick single-type pass)."""
    out = []
    rel = t.proc
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{name}/ns/{rel}").st_ino == ino:
                out.append(int(name))
        except OSError:
            continue
    return sorted(out)
