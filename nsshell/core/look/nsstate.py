"""The observable state of a namespace, read from inside it by a forked helper.

A small registry says, per namespace type, which pieces of state exist and
how to read them:

    from nsshell.plugin import register_state

    def read_qdiscs(ctx):                 # runs INSIDE the namespace, in a helper
        ...                               # return something JSON-able
    register_state("net", "qdiscs", read_qdiscs)

`show` reports every registered key of a namespace's type, and `diff`
compares them (with `differ(a, b)` when given, otherwise by the generic rule
in core/look/diff.py: dicts by key, lists as sets, scalars by value).

Readers run in a child of the shell that has setns()ed into the namespace
(and, when not root, into the user namespace that owns it, to have the
capabilities setns needs); the shell process itself never joins.  Reading
never changes the namespace: the one reader that mounts something (POSIX
message queues) does it in a private mount namespace it unshares for itself.
Readers marked `inside=False` need no joining (they look at /proc from the
outside, e.g. the processes of a PID namespace) and run in a helper too.
"""

from __future__ import annotations

import os
from ...kernel.values import Value

from ...kernel import idmap, mountinfo, nstypes, procfs, syscalls
from ...kernel.nstypes import NsType
from ..proc import spawn


class Context(Value):
    """What a reader gets: the namespace's type and inode, /proc of the shell (an open
    directory fd, valid whatever mount namespace the helper joined), a cache shared
    by the readers of one helper, and extra facts read by the shell beforehand."""
    type: str
    ino: int
    procfd: int
    extra: dict
    cache: dict

    _fields = ("type", "ino", "procfd", "extra", "cache")

    def __init__(self, type, ino, procfd, extra=None, cache=None) -> None:
        self.type = type
        self.ino = ino
        self.procfd = procfd
        self.extra = {} if extra is None else extra
        self.cache = {} if cache is None else cache

    def read(self, rel: str) -> str:
        """The text of /proc/REL (e.g. 'self/uid_map'), as the helper sees it now."""
        return procfs.read(rel, self.procfd).decode("utf-8", "replace")


TYPE_CHECKING = False   # typing is not imported to start (tests/test_imports.py)
if TYPE_CHECKING:
    from typing import Any, Callable

    Reader = Callable[[Context], Any]
    Differ = Callable[[Any, Any], list]
    Summary = Callable[[Any], "str | list[str]"]


class StateKey(Value):
    nstype: str
    key: str
    reader: Reader
    differ: Differ | None = None
    summary: Summary | None = None
    inside: bool = True
    prepare: Callable | None = None

    _fields = ("nstype", "key", "reader", "differ", "summary", "inside", "prepare")

    def __init__(self, nstype, key, reader, differ=None, summary=None, inside=True,
                 prepare=None) -> None:
        self.nstype = nstype
        self.key = key
        self.reader = reader
        self.differ = differ
        self.summary = summary
        self.inside = inside
        self.prepare = prepare


_REGISTRY: dict[str, dict[str, StateKey]] = {t: {} for t in nstypes.NAMES}


def register(nstype: str, key: str, reader: Reader, differ: Differ | None = None, *,
             summary: Summary | None = None, inside: bool = True,
             prepare: Callable[[], None] | None = None) -> None:
    """Add (or replace) piece of state KEY of namespaces of type NSTYPE.

    reader(ctx) runs inside the namespace and returns JSON-able data;
    differ(a, b) returns a list of changes (dicts with op '+', '-' or '~',
    key and text; see core/look/diff.py); summary(value) gives `show`'s text.
    PREPARE() runs in the shell before the helper enters: it imports what the reader
    needs, since inside nothing is imported (core/proc/spawn.py, _NoImportInside).
    """
    t = nstypes.get(nstype).name
    _REGISTRY[t][key] = StateKey(t, key, reader, differ, summary, inside, prepare)


def unregister(nstype: str, key: str) -> None:
    _REGISTRY[nstypes.get(nstype).name].pop(key, None)


def keys(nstype: str) -> list[str]:
    return list(_REGISTRY[nstypes.get(nstype).name])


def spec(nstype: str, key: str) -> StateKey | None:
    return _REGISTRY[nstypes.get(nstype).name].get(key)


# --- running the readers -----------------------------------------------------------

def _run(typename: str, wanted: list[str], ino: int, procfd: int, extra: dict) -> dict:
    """In the helper: run the readers; one failing key does not spoil the others."""
    ctx = Context(typename, ino, procfd, extra)
    out: dict[str, Any] = {}
    for key in wanted:
        s = _REGISTRY[typename].get(key)
        if s is None:
            continue
        try:
            out[key] = {"value": s.reader(ctx)}
        except Exception as e:  # noqa: BLE001 - reported per key
            out[key] = {"error": _describe_error(e)}
    return out


def _describe_error(e: BaseException) -> str:
    if isinstance(e, OSError):
        what = f"{e.filename}: " if e.filename else ""
        return f"{what}{e.strerror or e}"
    return f"{type(e).__name__}: {e}"


def _own_ino(t: NsType) -> int:
    return os.stat(f"/proc/self/ns/{t.proc}").st_ino


CAP_SYS_ADMIN = 21


def privileged() -> bool:
    """Whether this process has CAP_SYS_ADMIN in its own user namespace (root), which
    lets it enter any namespace owned by that user namespace or below it."""
    try:
        return bool(int((procfs.status() or {})["CapEff"], 16) >> CAP_SYS_ADMIN & 1)
    except (KeyError, ValueError):
        return os.geteuid() == 0


def entry_refusal(fd: int, t: NsType, label: str | None = None) -> str | None:
    """Why this process cannot enter namespace FD whatever else it joins, or None.

    setns() needs CAP_SYS_ADMIN in the user namespace that owns the target (for a
    user namespace, in the target itself): without it here, only namespaces owned by
    a user namespace we created (and may enter first) are within reach."""
    if privileged():
        return None
    label = label or f"{t.name}:[{os.fstat(fd).st_ino}]"
    if os.fstat(fd).st_ino == _own_ino(t):
        return None          # the shell's own: nothing to enter
    if t is nstypes.USER:
        try:
            uid = syscalls.ns_get_owner_uid(fd)
        except OSError:
            return None
        if uid != os.geteuid():
            who = "root" if uid == 0 else f"uid {uid}"
            return f"{label} was made by {who}: only {who} or root can enter it"
        return None
    try:
        ufd = syscalls.ns_get_userns(fd)
    except PermissionError:
        return f"{label} is owned by a user namespace above ours: only its root can enter it"
    except OSError:
        return None
    try:
        if os.fstat(ufd).st_ino == _own_ino(nstypes.USER):
            return (f"{label} is owned by the host's user namespace: only root can enter it")
    finally:
        os.close(ufd)
    return None


def _entries(fd: int, t: NsType, label: str) -> tuple[list[spawn.Entry], list[int]]:
    """What a helper enters to read namespace FD: itself (unless it is the shell's own),
    and, when not root, the user namespace that owns it (unless it is the shell's)."""
    entries: list[spawn.Entry] = []
    owned: list[int] = []
    if os.fstat(fd).st_ino != _own_ino(t):
        entries.append(spawn.Entry(t, fd, label))
    if not privileged() and t is not nstypes.USER and entries:
        try:
            ufd = syscalls.ns_get_userns(fd)
        except OSError:
            ufd = -1
        if ufd >= 0:
            if os.fstat(ufd).st_ino == _own_ino(nstypes.USER):
                os.close(ufd)
            else:
                owned.append(ufd)
                entries.insert(0, spawn.Entry(nstypes.USER, ufd, "its owner user namespace"))
    return entries, owned


def _cgroup_text(pid: int | str) -> str | None:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return f.read()
    except OSError:
        return None


def _extra_for(t: NsType, ino: int) -> dict:
    """Facts the shell reads before the helper starts (its view from the outside)."""
    extra: dict = {}
    if t is nstypes.CGROUP:
        # The root of a cgroup namespace is derived from a process whose cgroup is under
        # it: its path seen from outside less its path seen from inside (per hierarchy:
        # the v2 one and each v1 controller's, which may differ on a hybrid host).
        texts = {"self": _cgroup_text("self")}
        from .discover import processes_in
        for pid in processes_in(t, ino)[:8]:
            texts[str(pid)] = _cgroup_text(pid)
        texts = {k: v for k, v in texts.items() if v is not None}
        extra["outside_views"] = {k: _cgroup_v2_path(v) for k, v in texts.items()}
        extra["outside_cgroups"] = texts
    return extra


def snapshot(fd: int, t: NsType, wanted: list[str] | None = None,
             label: str | None = None) -> dict[str, dict]:
    """{key: {"value": ...} or {"error": text}} for the namespace open at FD."""
    label = label or f"{t.name}:[{os.fstat(fd).st_ino}]"
    specs = [s for k, s in _REGISTRY[t.name].items() if wanted is None or k in wanted]
    ino = os.fstat(fd).st_ino
    extra = _extra_for(t, ino)
    out: dict[str, dict] = {}
    procfd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        inside = [s.key for s in specs if s.inside]
        outside = [s.key for s in specs if not s.inside]
        refused = entry_refusal(fd, t, label) if inside else None
        if refused:
            out.update({k: {"error": f"cannot enter: {refused}"} for k in inside})
        elif inside:
            for s in specs:   # what the readers need, before the helper enters
                if s.prepare is not None and s.key in inside:
                    s.prepare()
            entries, owned = _entries(fd, t, label)
            try:
                value, fds = spawn.call(entries, _run, t.name, inside, ino, procfd, extra)
                for x in fds:
                    os.close(x)
                out.update(value)
            finally:
                for x in owned:
                    os.close(x)
        if outside:
            value, fds = spawn.call([], _run, t.name, outside, ino, procfd, extra)
            for x in fds:
                os.close(x)
            out.update(value)
    finally:
        os.close(procfd)
    return {k: out[k] for k in [s.key for s in specs] if k in out}


def summarize(t: str, key: str, value: Any) -> str | list[str]:
    s = spec(t, key)
    if s is not None and s.summary is not None:
        return s.summary(value)
    return default_summary(value)


def default_summary(value: Any) -> str | list[str]:
    if isinstance(value, dict):
        return [f"{k}: {_fields(v)}" if v is not None else str(k) for k, v in value.items()] or "-"
    if isinstance(value, list):
        return [str(v) for v in value] or "-"
    return "-" if value is None or value == "" else str(value)


def _fields(v: Any) -> str:
    if isinstance(v, dict):
        return " ".join(f"{k}={'-' if x is None else x}" for k, x in v.items())
    return str(v)


# --- the built-in readers -------------------------------------------------------------

# net ---------------------------------------------------------------------------------

_IFF_UP = 1


def _rtnl(ctx: Context):
    conn = ctx.cache.get("rtnl")
    if conn is None:
        from . import rtnl  # pyroute2's messages: imported in the helper only
        conn = ctx.cache["rtnl"] = rtnl.open_here()
    return conn


def _dump(ctx: Context, what: str) -> list:
    if what not in ctx.cache:
        from . import rtnl
        conn = _rtnl(ctx)
        if what == "links":
            got = conn.dump(rtnl.ifinfmsg(), rtnl.RTM_GETLINK)
        elif what == "addresses":
            got = conn.dump(rtnl.ifaddrmsg(), rtnl.RTM_GETADDR)
        else:  # routes: an AF_UNSPEC dump gives only IPv4's (Linux 6.x); ask each family
            import socket
            got = []
            for family in (socket.AF_INET, socket.AF_INET6):
                query = rtnl.rtmsg()
                query["family"] = family
                got += conn.dump(query, rtnl.RTM_GETROUTE)
        ctx.cache[what] = got
    return ctx.cache[what]


def _links_raw(ctx: Context) -> list:
    return _dump(ctx, "links")


def _ifnames(ctx: Context) -> dict[int, str]:
    return {m["index"]: m.get_attr("IFLA_IFNAME") for m in _links_raw(ctx)}


_IFF_LOWER_UP = 0x10000
# What `show` keeps of a link (keyed by name); `net ls` lists whole records.
SHOW_LINK_FIELDS = ("kind", "state", "up", "lower_up", "mtu", "mac", "master")


def link_record(m) -> dict:
    """One link of an RTM_NEWLINK message, named as the kernel and iproute2 name things:
    the one link object of `show` (per name, SHOW_LINK_FIELDS) and `net ls` (a list).
    state is the kernel's operstate as `ip link` prints it (lo: UNKNOWN); up is the admin
    flag (IFF_UP), lower_up the carrier; kind the rtnetlink kind (null for lo, as `ip -d
    link`); mac the link-layer address (lo's too); master and peer are ifindexes."""
    flags = m["flags"]
    info = m.get_attr("IFLA_LINKINFO")
    state = m.get_attr("IFLA_OPERSTATE")
    return {
        "index": m["index"],
        "name": m.get_attr("IFLA_IFNAME"),
        "kind": info.get_attr("IFLA_INFO_KIND") if info else None,
        "state": state.upper() if isinstance(state, str) else state,
        "up": bool(flags & _IFF_UP),
        "lower_up": bool(flags & _IFF_LOWER_UP),
        "mtu": m.get_attr("IFLA_MTU"),
        "mac": m.get_attr("IFLA_ADDRESS"),
        "master": m.get_attr("IFLA_MASTER"),
        "peer": m.get_attr("IFLA_LINK"),
        "peer_netnsid": m.get_attr("IFLA_LINK_NETNSID"),
    }


def read_links(ctx: Context) -> dict:
    records = [link_record(m) for m in sorted(_links_raw(ctx), key=lambda m: m["index"])]
    names = {r["index"]: r["name"] for r in records}
    out = {}
    for r in records:
        r["master"] = names.get(r["master"]) if r["master"] else None
        out[r["name"]] = {k: r[k] for k in SHOW_LINK_FIELDS}
    return out


def link_text(name: str, v: dict) -> str:
    """One link in a line, as `show` prints it: name, operstate, mtu, mac, kind."""
    return (f"{name} {v['state']}{'' if v['up'] else ' (admin down)'} mtu {v['mtu']} "
            f"{v['mac'] or '-'}{' ' + v['kind'] if v['kind'] else ''}"
            f"{' master ' + v['master'] if v.get('master') else ''}")


def _links_summary(value: dict) -> list[str]:
    return [link_text(name, v) for name, v in value.items()] or "-"


def read_addresses(ctx: Context) -> list[str]:
    names = _ifnames(ctx)
    out = []
    for a in _dump(ctx, "addresses"):
        addr = a.get_attr("IFA_ADDRESS") or a.get_attr("IFA_LOCAL")
        out.append(f"{names.get(a['index'], a['index'])} {addr}/{a['prefixlen']}")
    return sorted(out)


_RT_TABLES = {253: "default", 254: "main", 255: "local"}


def read_routes(ctx: Context) -> list[str]:
    names = _ifnames(ctx)
    out = []
    for r in _dump(ctx, "routes"):
        table = r.get_attr("RTA_TABLE") or r["table"]
        if table == 255:
            continue  # the local table: the kernel's routes for the addresses themselves
        dst = r.get_attr("RTA_DST")
        words = [f"{dst}/{r['dst_len']}" if dst else "default"]
        if r["type"] not in (1,):
            words[0] = {2: "local", 3: "broadcast", 5: "multicast", 6: "blackhole",
                        7: "unreachable", 8: "prohibit"}.get(r["type"], f"type{r['type']}") + " " + words[0]
        gw = r.get_attr("RTA_GATEWAY")
        if gw:
            words.append(f"via {gw}")
        oif = r.get_attr("RTA_OIF")
        if oif:
            words.append(f"dev {names.get(oif, oif)}")
        if table != 254:
            words.append(f"table {_RT_TABLES.get(table, table)}")
        out.append(" ".join(words))
    return sorted(out)


def _net_prepare() -> None:
    import socket  # noqa: F401
    from . import rtnl
    rtnl.preload()


register("net", "links", read_links, summary=_links_summary, prepare=_net_prepare)
register("net", "addresses", read_addresses, prepare=_net_prepare)
register("net", "routes", read_routes, prepare=_net_prepare)


# uts ---------------------------------------------------------------------------------

def read_hostname(ctx: Context) -> str:
    return os.uname().nodename


def read_domainname(ctx: Context) -> str:
    return ctx.read("sys/kernel/domainname").strip()


register("uts", "hostname", read_hostname)
register("uts", "domainname", read_domainname)


# user --------------------------------------------------------------------------------

def _read_map(ctx: Context, kind: str) -> list[str]:
    return [str(r) for r in idmap.read_map("self", kind, proc_fd=ctx.procfd)]


def read_uid_map(ctx: Context) -> list[str]:
    return _read_map(ctx, "uid")


def read_gid_map(ctx: Context) -> list[str]:
    return _read_map(ctx, "gid")


def read_setgroups(ctx: Context) -> str:
    return idmap.read_setgroups("self", proc_fd=ctx.procfd)


def _map_summary(value: list[str]) -> str | list[str]:
    return idmap.format_idmap(value) if value else "(not written)"


register("user", "uid_map", read_uid_map, summary=_map_summary)
register("user", "gid_map", read_gid_map, summary=_map_summary)
register("user", "setgroups", read_setgroups)


# mnt ---------------------------------------------------------------------------------

def _mountinfo(ctx: Context) -> list[mountinfo.Mount]:
    if "mountinfo" not in ctx.cache:
        ctx.cache["mountinfo"] = mountinfo.read("self/mountinfo", dir_fd=ctx.procfd)
    return ctx.cache["mountinfo"]


def read_mounts(ctx: Context) -> dict:
    """Mounts keyed by mount point (the topmost of a stack wins)."""
    out = {}
    for m in _mountinfo(ctx):
        out[m.target] = {"source": m.source, "fstype": m.fstype, "root": m.root,
                         "options": m.options, "super": m.super_options,
                         "propagation": m.propagation}
    return out


def read_root(ctx: Context) -> str:
    m = mountinfo.mount_at(_mountinfo(ctx), "/")
    if m is None:
        return "-"
    fsroot = "" if m.root == "/" else f"[{m.root}]"
    return f"{m.source}{fsroot} ({m.fstype}, {m.propagation})"


register("mnt", "root", read_root)
register("mnt", "mounts", read_mounts, summary=lambda v: f"{len(v)} mount points")


# pid ---------------------------------------------------------------------------------

def read_processes(ctx: Context) -> dict:
    """{pid inside the namespace: command} of the processes in it (from the outside)."""
    out = {}
    rel = "ns/pid"
    for name in os.listdir(ctx.procfd):
        if not name.isdigit():
            continue
        try:
            if os.stat(f"{name}/{rel}", dir_fd=ctx.procfd).st_ino != ctx.ino:
                continue
        except OSError:
            continue
        status = procfs.status(name, ctx.procfd)
        if status is None:
            continue
        nspids = procfs.ints(status.get("NSpid"))
        out[str(nspids[-1]) if nspids else name] = status.get("Name", "?")
    return dict(sorted(out.items(), key=lambda kv: int(kv[0])))


def _proc_summary(value: dict) -> list[str]:
    lines = [f"{p} {c}" for p, c in value.items()]
    return lines or "(none)"


register("pid", "processes", read_processes, summary=_proc_summary, inside=False)


# ipc ---------------------------------------------------------------------------------

def read_sysv(ctx: Context) -> dict:
    """System V objects: 'shm 0x0000abcd' (or 'shm id N' for IPC_PRIVATE) -> details."""
    out = {}
    cols = {"shm": ("perms", "size", "nattch"), "msg": ("perms", "cbytes", "qnum"),
            "sem": ("perms", "nsems")}
    for kind, wanted in cols.items():
        try:
            text = ctx.read(f"sysvipc/{kind}")
        except FileNotFoundError:
            continue
        lines = text.splitlines()
        if not lines:
            continue
        head = lines[0].split()
        for line in lines[1:]:
            vals = dict(zip(head, line.split()))
            if not vals:
                continue
            key = int(vals["key"])
            ident = vals.get("shmid") or vals.get("msqid") or vals.get("semid")
            name = f"{kind} 0x{key & 0xFFFFFFFF:08x}" if key else f"{kind} id {ident}"
            out[name] = {c: (int(vals[c]) if c != "perms" else vals[c]) for c in wanted
                         if c in vals}
    return dict(sorted(out.items()))


def read_mqueues(ctx: Context) -> dict:
    """POSIX message queues: an mqueue fs of this IPC namespace, mounted in a private
    mount namespace this helper unshares for itself (the host's mounts are untouched)."""
    try:
        syscalls.unshare(nstypes.CLONE_NEWNS)
    except PermissionError:
        raise PermissionError(1, "listing POSIX queues mounts an mqueue fs in a private mount "
                                 "namespace, which needs CAP_SYS_ADMIN in the user namespace "
                                 "owning this IPC namespace") from None
    syscalls.mount(None, "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
    where = next(d for d in ("/dev/mqueue", "/tmp", "/mnt", "/") if os.path.isdir(d))
    syscalls.mount("mqueue", where, "mqueue", syscalls.MS_NOSUID | syscalls.MS_NODEV |
                   syscalls.MS_NOEXEC)
    out = {}
    for name in sorted(os.listdir(where)):
        info = {}
        try:
            with open(os.path.join(where, name)) as f:
                for part in f.read().split():
                    k, _, v = part.partition(":")
                    if k == "QSIZE":
                        info["qsize"] = int(v)
        except OSError:
            pass
        out["/" + name] = info
    return out


register("ipc", "sysv", read_sysv)
register("ipc", "mqueues", read_mqueues)


# cgroup ------------------------------------------------------------------------------

def _cgroup_v2_path(text: str) -> str:
    lines = [l for l in text.splitlines() if l.strip()]
    for line in lines:
        if line.startswith("0::"):
            return line[3:]
    return lines[0].split(":", 2)[2] if lines else "/"


def read_cgroup_root(ctx: Context) -> str:
    """The namespace's root cgroup in the shell's view ('?' when no process we can see
    is under it): for a process under the root, its path from outside less its path
    from inside (where the helper stands now)."""
    for who, outside in ctx.extra.get("outside_views", {}).items():
        try:
            inside = _cgroup_v2_path(ctx.read(f"{who}/cgroup"))
        except OSError:
            continue
        root = _root_from(outside, inside)
        if root is not None:
            return root
    return "?"


def _cgroup_paths(text: str) -> dict[str, str]:
    """/proc/PID/cgroup as {hierarchy: path}: `cgroup2` for the v2 line (0::PATH), the
    controller list (`memory`, `cpu,cpuacct`, `name=systemd`) for each v1 line."""
    out = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        out["cgroup2" if hid == "0" and not controllers else controllers] = path
    return out


def _root_from(outside: str, inside: str) -> str | None:
    """The namespace's root, from a cgroup's path from outside and from inside it; None
    when the cgroup is not under the root (its inside path climbs with '..')."""
    if inside == "/":
        return outside
    tail = inside.rstrip("/")
    if ".." in tail.split("/") or not outside.endswith(tail):
        return None
    return outside[: len(outside) - len(tail)] or "/"


def read_cgroup_roots(ctx: Context) -> dict:
    """The namespace's root in every hierarchy, in the shell's view: {hierarchy: path}
    ('?' where no visible process is under it), the v2 one (`cgroup2`) first, then each
    v1 controller's: on a hybrid host they differ independently."""
    found: dict[str, str] = {}
    order: list[str] = []
    for who, text in ctx.extra.get("outside_cgroups", {}).items():
        outside = _cgroup_paths(text)
        order += [k for k in outside if k not in order]
        try:
            inside = _cgroup_paths(ctx.read(f"{who}/cgroup"))
        except OSError:
            continue
        for key, path in outside.items():
            if key not in found and key in inside:
                root = _root_from(path, inside[key])
                if root is not None:
                    found[key] = root
    order.sort(key=lambda k: (k != "cgroup2", k))
    return {k: found.get(k, "?") for k in order}


register("cgroup", "root", read_cgroup_root)
register("cgroup", "roots", read_cgroup_roots)


# time --------------------------------------------------------------------------------

def read_offsets(ctx: Context) -> dict:
    out = {}
    for line in ctx.read("self/timens_offsets").splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue
        secs, nsecs = int(parts[1]), int(parts[2])
        out[parts[0]] = f"{secs}" if nsecs == 0 else f"{secs}.{nsecs:09d}".rstrip("0")
    return out


register("time", "offsets", read_offsets)
