"""Seeing namespaces: ls, tree, show, pids, identify, diff.

Thin: the scan is core/look/discover.py, state readers core/look/nsstate.py, the
comparison core/look/diff.py.  The JSON shapes are documented in docs/json.md.
This module is on the path of `nsshell --json -c ls`: it imports nothing heavy.
"""

from __future__ import annotations

import os

from ..core.look import discover
from ..core.ns.handle import NsSet
from ..errors import NotFoundError, UsageError
from ..kernel import nsfs, nstypes, procfs, syscalls
from ..registry import Annotated, command
from ..results import Diff, Multi, Node, Record, Table, Tree
from ..types import Choice, NsTypes, Pid, Ref
from .persist import root_of

Types = Annotated[tuple, NsTypes()]
RefArg = Annotated[NsSet, Ref()]




# --- ls ------------------------------------------------------------------------------

def ls_rows(sh, types=None) -> list[dict]:
    """The data behind `ls` (and its JSON): lsns's keys, then how each is held."""
    scan = discover.scan(types, session=sh, persist_root=root_of(sh))
    try:
        own_mnt = f"mnt:[{os.stat('/proc/self/ns/mnt').st_ino}]"
    except OSError:
        own_mnt = None
    rows = []
    for info in scan.sorted():
        uid = scan.user_of(info)
        rows.append({
            "ns": info.ino, "type": info.type, "nprocs": info.nprocs, "pid": info.pid,
            "user": discover.user_name(uid), "command": discover.command_of(info.pid),
            "uid": uid, "held": info.held(), "names": list(info.names),
            "holders": info.holders,
            "nsfs": nsfs_paths(info, own_mnt),
            "netnsid": _netnsid(scan, info) if info.type == "net" else None,
            "helper": discover.helper_of(info) if info.pids and not info.names else None,
        })
    return rows


def _netnsid(scan: discover.Scan, info: discover.NsInfo):
    try:
        fd = discover.open_found(scan, info)
    except OSError:
        return None
    try:
        return discover.netnsid(fd)
    finally:
        os.close(fd)


def nsfs_paths(info: discover.NsInfo, own_mnt: str | None) -> list[str]:
    """lsns's NSFS: where the namespace is bind-mounted in the shell's mount namespace."""
    return [h["path"] for h in info.holders if h["kind"] == "mount" and h.get("mnt") == own_mnt]


def _names_cell(r: dict) -> str | None:
    """NAMES: the names, or, for a namespace only an nsshell helper is in, whose it is."""
    if r["names"]:
        return ",".join(r["names"])
    return f"({r['helper']})" if r.get("helper") else None


@command("ls")
def ls(sh, types: Types = None):
    """Every namespace on the system, like lsns, plus those only an fd, a thread,
    a bind mount or a socket keeps alive, with session and persisted names.

    NS, TYPE, NPROCS, PID (the lowest), USER and COMMAND are lsns's; HELD says
    what keeps the namespace alive: process, thread, fd (an open fd of some
    process), mount (a bind mount in any mount namespace), socket (a socket
    created in it), session (this shell's handles).  Processes that exit during
    the scan and files that cannot be read are skipped.

    Arguments:
      types: only these types (user+net, all)

    Examples:
      ls
      ls net
      ls user+pid --json
    """
    data = ls_rows(sh, types)
    rows = [[r["ns"], r["type"], r["nprocs"], r["pid"], r["user"], ",".join(r["held"]),
             _names_cell(r), r["command"]] for r in data]
    table = Table(["ns", "type", "nprocs", "pid", "user", "held", "names", "command"], rows,
                  key="namespaces", data=data)
    return table


# --- tree ----------------------------------------------------------------------------

def _map_summary(lines: list[str]) -> str:
    from ..kernel.idmap import format_idmap
    return format_idmap(lines, limit=3)


def _read_map(pid: int | None, kind: str) -> list[str] | None:
    if pid is None:
        return None
    from ..kernel import idmap
    try:
        return [str(r) for r in idmap.read_map(pid, kind)]
    except (OSError, ValueError):
        return None


def _describe(info: discover.NsInfo | None, label: str) -> tuple[str, dict]:
    if info is None:
        return f"{label} (no process, fd or mount in view)", {
            "ns": int(label.split("[")[1][:-1]), "type": label.split(":")[0], "nprocs": 0,
            "pid": None, "user": None, "command": None, "held": [], "names": []}
    cmd = discover.command_of(info.pid)
    data = {"ns": info.ino, "type": info.type, "nprocs": info.nprocs, "pid": info.pid,
            "user": discover.user_name(info.uid), "command": cmd, "held": info.held(),
            "names": list(info.names)}
    text = info.label
    if info.pid is not None:
        text += f" {info.nprocs} proc{'s' if info.nprocs != 1 else ''}, pid {info.pid} {cmd or ''}"
    others = [k for k in info.held() if k != "process"]
    if others:
        text += f" [held: {','.join(others)}]"
    if info.names:
        text += f" ({', '.join(info.names)})"
    elif info.pids:
        helper = discover.helper_of(info)
        if helper:
            text += f" (nsshell's {helper})"
            data["helper"] = helper
    return text, data


class _Hier:
    """Namespaces (of a scan) linked by NS_GET_PARENT, reaching ancestors no process is in.
    Keeps inodes, never fds: each walk holds two fds at most."""

    def __init__(self, scan: discover.Scan, t: nstypes.NsType):
        self.scan = scan
        self.t = t
        self.parent: dict[int, int | None] = {}
        self.extra: set[int] = set()      # ancestors found only through the ioctl
        self.uids: dict[int, int] = {}     # owner uids of those (user namespaces)

    def add(self, ino: int, fd: int) -> None:
        """Walk up from the namespace INO open at FD (left open) to a known one."""
        cur_ino, cur = ino, os.dup(fd)
        try:
            while cur_ino not in self.parent:
                try:
                    nxt = syscalls.ns_get_parent(cur)
                except OSError:
                    self.parent[cur_ino] = None
                    break
                nino = os.fstat(nxt).st_ino
                self.parent[cur_ino] = nino
                os.close(cur)
                cur, cur_ino = nxt, nino
                if self.scan.get(self.t.name, nino) is None:
                    self.extra.add(nino)
                    if self.t is nstypes.USER:
                        try:
                            self.uids[nino] = nsfs.owner_uid(nxt)
                        except OSError:
                            pass
        finally:
            os.close(cur)

    def children(self) -> dict[int | None, list[int]]:
        out: dict[int | None, list[int]] = {}
        for ino, par in self.parent.items():
            out.setdefault(par, []).append(ino)
        for v in out.values():
            v.sort()
        return out


def _each_open(scan: discover.Scan, type_name: str | None = None):
    """(key, fd) for each namespace of SCAN that can be opened, one at a time: each fd is
    closed before the next is opened, so `tree` needs a handful of fds however many
    namespaces the system has (issue 11.6: it used to hold one per namespace and failed
    past the soft fd limit).  What the tree needs is read from the fd and kept as inodes
    and uids."""
    import errno
    from ..errors import NsshellError
    for key, info in list(scan.namespaces.items()):
        if type_name and info.type != type_name:
            continue
        try:
            fd = discover.open_found(scan, info)
        except OSError as e:
            if e.errno in (errno.EMFILE, errno.ENFILE):
                raise NsshellError(f"out of file descriptors opening {info.label}",
                                   "close some handles, or raise the limit (ulimit -n)") from None
            continue
        try:
            yield key, fd
        finally:
            os.close(fd)


def _user_tree(sh, scan: discover.Scan | None = None) -> Tree:
    if scan is None:   # top passes its own
        scan = discover.scan(session=sh, persist_root=root_of(sh))
    hier = _Hier(scan, nstypes.USER)
    owned: dict[int | None, list[discover.NsInfo]] = {}
    uid_of: dict[int, int | None] = {}
    for (t, ino), fd in _each_open(scan):
        if t == "user":
            hier.add(ino, fd)
            try:
                uid_of[ino] = nsfs.owner_uid(fd)
            except OSError:
                uid_of[ino] = None
            continue
        try:
            o = nsfs.owner_nsid(fd)
        except OSError:
            o = None
        owned.setdefault(o.ino if o else None, []).append(scan.namespaces[(t, ino)])
    kids = hier.children()

    def node(ino: int) -> Node:
        info = scan.get("user", ino)
        text, data = _describe(info, f"user:[{ino}]")
        uid = uid_of.get(ino)
        pid = info.pid if info else None
        umap, gmap = _read_map(pid, "uid"), _read_map(pid, "gid")
        if uid is None:
            uid = hier.uids.get(ino)
        extra = f" owner uid {uid}" if uid is not None else ""
        if umap is not None:
            extra += f", uid {_map_summary(umap)}, gid {_map_summary(gmap or [])}"
        data.update({"owner_uid": uid, "uid_map": umap, "gid_map": gmap,
                     "parent": hier.parent.get(ino)})
        children = [_leaf(o) for o in sorted(owned.get(ino, []), key=lambda i: (
            nstypes.NAMES.index(i.type), i.ino))]
        children += [node(c) for c in kids.get(ino, [])]
        return Node(text + extra, children, data)

    roots = [node(ino) for ino in kids.get(None, [])]
    if owned.get(None):
        roots.append(Node("(owner not visible)", [_leaf(o) for o in owned[None]],
                          {"ns": None, "type": "user", "children": []}))
    return Tree(roots, key="tree")


def _leaf(info: discover.NsInfo) -> Node:
    text, data = _describe(info, info.label)
    return Node(text, [], data)


def _pid_tree(sh) -> Tree:
    scan = discover.scan((nstypes.PID,), session=sh, persist_root=root_of(sh))
    hier = _Hier(scan, nstypes.PID)
    owners = {}
    for (_t, ino), fd in _each_open(scan, "pid"):
        hier.add(ino, fd)
        try:
            o = nsfs.owner_nsid(fd)
        except OSError:
            o = None
        owners[ino] = str(o) if o else None
    kids = hier.children()

    def node(ino: int) -> Node:
        text, data = _describe(scan.get("pid", ino), f"pid:[{ino}]")
        if owners.get(ino):
            text += f" owner {owners[ino]}"
        data.update({"owner": owners.get(ino), "parent": hier.parent.get(ino)})
        return Node(text, [node(c) for c in kids.get(ino, [])], data)

    return Tree([node(ino) for ino in kids.get(None, [])], key="tree")


@command("tree")
def tree(sh, kind: Annotated[str, Choice("user", "pid", metavar="user|pid",
                                         help={"user": "user namespaces and what each owns",
                                               "pid": "PID namespaces"})] = "user"):
    """The user-namespace hierarchy with the namespaces each owns, or the PID-namespace
    hierarchy.

    Parents come from NS_GET_PARENT and owners from NS_GET_USERNS, so ancestors
    that no process is in are drawn too.  A user namespace shows its owner uid
    and a summary of its uid and gid maps (ids as the shell's user namespace
    sees them).

    Arguments:
      kind: user (default) or pid

    Examples:
      tree
      tree pid
      tree --json
    """
    result = _user_tree(sh) if kind == "user" else _pid_tree(sh)
    return result


# --- show ----------------------------------------------------------------------------

def _label_of(fd_maker) -> str | None:
    try:
        fd = fd_maker()
    except OSError:
        return None
    if fd is None:
        return None
    try:
        return str(nsfs.nsid_of_fd(fd, nsfs.type_of_fd(fd).name))
    finally:
        os.close(fd)


def describe_handle(h, info: discover.NsInfo | None, state: bool = True) -> dict:
    """Everything `show` says about one held namespace (the JSON of one entry)."""
    from ..core.look import nsstate
    t = h.type
    owner = None
    try:
        o = nsfs.owner_nsid(h.fd)
        owner = str(o) if o else None
    except OSError:
        pass
    parent = None
    if t.name in ("user", "pid"):
        parent = _label_of(lambda: nsfs.parent_fd(h.fd))
    owner_uid = None
    if t is nstypes.USER:
        try:
            owner_uid = nsfs.owner_uid(h.fd)
        except OSError:
            pass
    out = {"ns": h.nsid.ino, "type": t.name, "label": str(h.nsid), "dev": h.nsid.dev,
           "owner": owner, "parent": parent, "owner_uid": owner_uid,
           "held": info.held() if info else ["session"],
           "holders": info.holders if info else [],
           "names": list(info.names) if info else [],
           "nprocs": info.nprocs if info else 0,
           "pids": sorted(info.pids) if info else [],
           "state": {}, "errors": {}}
    if state:
        if h.holder is not None and not h.holder.alive():
            # a dead PID namespace: shown (and marked), not an error for the whole set
            out["state"]["init"] = "dead: it has exited, so the namespace can run no processes"
            return out
        h.check_usable()
        snap = nsstate.snapshot(h.fd, t, label=h.label)
        for key, v in snap.items():
            if "value" in v:
                out["state"][key] = v["value"]
            else:
                out["errors"][key] = v.get("error", "not read")
    return out


def _show_record(d: dict) -> Record:
    from ..core.look import nsstate
    fields: dict = {}
    fields["owner"] = d["owner"] or "-"
    if d["type"] == "user":
        fields["owner uid"] = d["owner_uid"]
    if d["type"] in ("user", "pid"):
        fields["parent"] = d["parent"] or "(none visible)"
    fields["held"] = ",".join(d["held"]) or "-"
    holders = [_holder_text(x) for x in d["holders"]]
    if holders:
        fields["holders"] = holders[:10] + ([f"... {len(holders) - 10} more"] if len(holders) > 10 else [])
    if d["names"]:
        fields["names"] = ", ".join(d["names"])
    pids = d["pids"]
    fields["pids"] = (f"{d['nprocs']}: " + " ".join(map(str, pids[:15])) +
                           (" ..." if len(pids) > 15 else "")) if pids else "0"
    for key, value in d["state"].items():
        text = nsstate.summarize(d["type"], key, value)
        if isinstance(text, list):
            if len(text) > 30:
                text = text[:30] + [f"... {len(text) - 30} more"]
            if not text:
                text = "-"
        fields[key.replace("_", " ")] = text
    errors = d["errors"]
    if len(errors) > 1 and not d["state"] and len(set(errors.values())) == 1:
        fields["state"] = f"(cannot read: {next(iter(errors.values()))})"   # one reason for all
    else:
        for key, err in errors.items():
            fields[key.replace("_", " ")] = f"(cannot read: {err})"
    return Record(fields, title=d["label"])


_HOLDER_TEXT = {   # how a holder of each kind reads (discover.NsInfo.holders)
    "fd": "fd {fd} of pid {pid}",
    "thread": "thread {tid} of pid {pid}",
    "mount": "mount {path} in {mnt}",
    "socket": "socket fd {fd} of pid {pid}",
    "owner": "owner of {of}",
    "parent": "parent of {of}",
}


def _holder_text(h: dict) -> str:
    k = h["kind"]
    if k == "session":
        return f"session {h['name'] or '(context)'}"
    if k == "children":
        return f"for the children of pid {h['pid']} (ns/{h.get('link', 'pid_for_children')})"
    try:
        return _HOLDER_TEXT[k].format(**h)
    except KeyError:
        return str(h)


def _picked(ref: NsSet, types) -> NsSet:
    """REF, or only TYPES of it; NotFoundError when that holds no namespace."""
    picked = ref.pick(types) if types else ref
    if not picked.handles:
        raise NotFoundError(f"{ref.label} holds no namespaces")
    return picked


@command("show")
def show(sh, ref: RefArg, types: Types = None):
    """One namespace or a set: ids, owner, parent, holders, processes, and its state.

    State is read from inside by a forked helper and never changed: net links,
    addresses and routes; uts host and domain name; user uid/gid maps and
    setgroups; mnt mount count and root; pid processes; ipc System V objects
    and POSIX message queues; cgroup root; time clock offsets.  Plugins add more
    (register_state in the plugin API).

    Arguments:
      types: only these types of the set

    Examples:
      show box
      show user box
      show net:[4026532179]
      show pid:1234 net+uts
      show box --json
    """
    picked = _picked(ref, types)
    scan = discover.scan([h.type for h in picked.handles.values()], session=sh,
                         persist_root=root_of(sh))
    entries = []
    for t in nstypes.ALL:
        h = picked.handles.get(t.name)
        if h is None:
            continue
        entries.append(describe_handle(h, scan.get(t.name, h.nsid.ino)))
    data = {"ref": ref.label, "namespaces": entries}
    return Multi([_show_record(d) for d in entries], data)


# --- pids, identify -----------------------------------------------------------------------

def pids_of(nsset: NsSet) -> list[dict]:
    """The processes in every namespace of NSSET."""
    want = [(t.proc, h.nsid.ino) for t in nstypes.ALL
            for h in [nsset.handles.get(t.name)] if h is not None]
    pid_ino = nsset.handles["pid"].nsid.ino if "pid" in nsset.handles else None
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if not all(os.stat(f"/proc/{name}/ns/{rel}").st_ino == ino for rel, ino in want):
                continue
            uid = os.stat(f"/proc/{name}").st_uid
        except OSError:
            continue
        pid = int(name)
        nspids = nspid_chain(pid)
        nspid = nspids[-1] if nspids and pid_ino is not None else None
        out.append({"pid": pid, "nspid": nspid, "nspids": nspids, "uid": uid,
                    "user": discover.user_name(uid), "command": discover.command_of(pid)})
    return sorted(out, key=lambda r: r["pid"])


def nspid_chain(pid: int) -> list[int] | None:
    """PID's id in every PID namespace from ours down to its own (NSpid of
    /proc/PID/status, as lxkns's pidtree shows them); None when it cannot be read."""
    return procfs.nspids(pid)


@command("pids")
def pids(sh, ref: RefArg, types: Types = None):
    """The processes in a namespace (in every namespace of a set).

    NSPID is the process's id inside the set's PID namespace; NSPIDS its id in
    every PID namespace from the shell's down to its own (NSpid in /proc/PID/status).

    Arguments:
      types: only these types of the set

    Examples:
      pids box
      pids net box
      pids net:[4026532179]
    """
    picked = _picked(ref, types)
    data = pids_of(picked)
    rows = [[r["pid"], r["nspid"], "/".join(map(str, r["nspids"] or [])) or None, r["user"],
             r["command"]] for r in data]
    return Table(["pid", "nspid", "nspids", "user", "command"], rows, key="processes", data=data)


@command("identify")
def identify(sh, pid: Annotated[int, Pid()]):
    """Which known namespaces a process is in: session names, persisted names, host.

    Arguments:
      pid: a process id (or pid:N)

    Examples:
      identify 1234
      identify pid:1234 --json
    """
    inos = {}
    for t in nstypes.ALL:
        try:
            inos[t.name] = os.stat(f"/proc/{pid}/ns/{t.proc}").st_ino
        except FileNotFoundError:
            if not os.path.isdir(f"/proc/{pid}"):
                raise NotFoundError(f"process {pid} exited") from None
        except PermissionError:
            raise NotFoundError(f"cannot see the namespaces of process {pid}: permission denied",
                                "a process's namespaces are visible to its owner and root") from None
    scan = discover.scan([nstypes.get(t) for t in inos], session=sh, fds=False, threads=False,
                         sockets=False, relations=False, persist_root=root_of(sh))
    data = []
    for t, ino in inos.items():
        info = scan.get(t, ino)
        names = [n for n in (info.names if info else []) if n != "host"]
        host = sh.host.handles.get(t) is not None and sh.host.handles[t].nsid.ino == ino
        data.append({"type": t, "ns": ino, "label": f"{t}:[{ino}]", "names": names,
                     "host": host})
    rows = [[d["type"], d["label"], ",".join(d["names"]) or None, "yes" if d["host"] else "no"]
            for d in data]
    table = Table(["type", "ns", "names", "host"], rows, key="namespaces",
                  data=data)
    return Multi([table], {"pid": pid, "namespaces": data})


# --- diff ----------------------------------------------------------------------------

@command("diff")
def diff(sh, a: RefArg, b: RefArg, types: Types = None):
    """What differs between two namespaces of each type.

    For each type both sides have (or TYPES): network links (state, mtu,
    address, kind), addresses and routes; mounts keyed by mount point (added,
    removed, changed options or propagation); host and domain names; uid/gid
    maps and setgroups; processes; System V IPC objects and POSIX message
    queues; cgroup root; clock offsets.  '-' is only in the first, '+' only in
    the second, '~' changed.  Equal namespaces say so.

    Arguments:
      a: the first REF (TYPE REF: those types of it)
      b: the second REF (TYPE REF: those types of it)
      types: only these types

    Examples:
      diff box host
      diff box host net+uts
      diff net box net pid:1234
      diff pid:1234 pid:5678 mnt --json
    """
    from ..core.look import diff as diffcore
    if types:
        for side in (a, b):
            missing = [t.name for t in types if t.name not in side.handles]
            if missing:
                raise NotFoundError(f"{side.label} has no {'+'.join(missing)} namespace",
                                    f"it has: {' '.join(side.handles) or 'none'}")
    results = diffcore.diff_sets(a, b, types)
    if not results:
        raise UsageError(f"{a.label} and {b.label} have no namespace type in common")
    sections = []
    for r in results:
        t = r["type"]
        if r["same_namespace"]:
            sections.append((t, [(" ", f"same namespace {r['a']}")]))
            continue
        if r["equal"]:
            sections.append((t, [(" ", f"equal ({r['a']} and {r['b']})")]))
            continue
        for key, changes in r["changes"].items():
            sections.append((f"{t} {key.replace('_', ' ')}",
                             [(c["op"], c["text"]) for c in changes]))
        for key, err in r["errors"].items():
            sections.append((f"{t} {key.replace('_', ' ')}", [(" ", f"cannot compare: {err}")]))
    data = {"a": a.label, "b": b.label, "equal": all(r["equal"] for r in results),
            "types": results}
    return Diff(sections, title=f"diff {a.label} {b.label}", data=data)
