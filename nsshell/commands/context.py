"""Creating, mapping, joining and leaving namespaces: new, map, setgroups, join, leave, ctx,
hostname."""

from __future__ import annotations

import os

from ..core.ns import create as create_ops
from ..core.ns import creator, mapping, uts
from ..core.look import nsstate
from ..core.proc import spawn
from ..core.ns.handle import NsSet
from ..errors import NsshellError, UsageError
from ..guard import refuse_host
from .. import names
from ..kernel import idmap, nsfs, nstypes
from ..registry import Annotated, Kw, Needs, Opt, command
from ..results import Message, Table
from ..types import Choice, Int, NewName, NsTypes, Ref, Seconds, Word

Types = Annotated[tuple, NsTypes()]
RefArg = Annotated[NsSet, Ref()]


@command("new", creator=True)
def new(sh, types: Types, name: Annotated[str, Kw("as"), NewName()] = None, *,
        no_join: bool = False,
        propagation: Annotated[str, Choice("private", "shared", "slave", "unchanged",
                                           metavar="MODE"), Needs("types", "mnt")] = "private",
        monotonic: Annotated[float, Seconds(), Needs("types", "time")] = None,
        boottime: Annotated[float, Seconds(), Needs("types", "time")] = None,
        mount_proc: Annotated[bool, Needs("types", "pid", "mnt")] = False,
        count: Annotated[int, Int("N", minimum=1)] = 1):
    """Create namespaces inside the current context, hold them, name the set, and join it.

    With user among the types, the new user namespace is created first and owns
    the others.  A new mount namespace is made recursively private before
    anything can be mounted in it, as unshare(1) does.  A new PID namespace gets
    an init process that reaps orphans and lives as long as the handle.

    Arguments:
      types: the namespace types, joined with '+' (user+mnt+net), or all
      name: a name for the new set (default ns1, ns2, ...)

    Options:
      no_join: hold the new set without making it current
      propagation: propagation of / in a new mount namespace: private (default), shared, slave, or unchanged
      monotonic: offset of CLOCK_MONOTONIC in a new time namespace, in seconds
      boottime: offset of CLOCK_BOOTTIME in a new time namespace, in seconds
      mount_proc: mount a proc of the new PID namespace on /proc (needs mnt too), as unshare --mount-proc
      count: create N sets at once, held and not joined, named NAME1..NAMEn (default ns1, ns2, ...); fast for thousands (not with user or pid)

    Examples:
      new user+mnt
      new user+net+uts as lab
      new net --no-join
      new user+pid+mnt --mount-proc
      new user+time --monotonic 86400
      new net --count 1000
    """
    for clock, value in (("monotonic", monotonic), ("boottime", boottime)):
        _check_offset(clock, value)
    opts = create_ops.CreateOptions(propagation, monotonic, boottime, mount_proc)
    if count > 1:
        return _new_many(sh, types, name, opts, count)
    if mount_proc and not (nstypes.PID in types and nstypes.MNT in types):
        raise UsageError("--mount-proc needs new pid and mnt namespaces", "e.g. `new user+pid+mnt --mount-proc`")
    entries = sh.entries()
    handles = create_ops.create(entries, types, opts, fork_after=sh.needs_fork_after(),
                                more_likely=no_join)
    nsset = sh.add_set(NsSet(name or sh.next_name(), handles, origin="new"))
    if not no_join:
        creator.drop()  # it sits in the context being left
        sh.join(nsset)
    return Message(f"{nsset.name}: " + " ".join(str(h.nsid) for h in handles.values()))


# The kernel's rule for a time namespace's offsets (kernel/time/namespace.c,
# proc_timens_set_offset): the host's clock plus the offset must stay within
# [0, KTIME_SEC_MAX / 2], KTIME_SEC_MAX = KTIME_MAX / NSEC_PER_SEC (ERANGE otherwise).
KTIME_SEC_MAX = (2 ** 63 - 1) // 10 ** 9


def _host_clock(clock: str) -> float:
    """CLOCK_MONOTONIC or CLOCK_BOOTTIME as the kernel reads it for that rule: the
    host's, without the offset of the time namespace the shell may be in."""
    import time
    now = time.clock_gettime(time.CLOCK_MONOTONIC if clock == "monotonic" else 7)
    try:
        with open("/proc/self/timens_offsets") as f:
            for line in f:
                name, secs, nsecs = line.split()
                if name == clock or name == {"monotonic": "1", "boottime": "7"}[clock]:
                    now -= int(secs) + int(nsecs) / 1e9
    except (OSError, ValueError):
        pass
    return now


def _check_offset(clock: str, value: float | None) -> None:
    if not value:
        return
    now = _host_clock(clock)
    low, high = -int(now) + 1, KTIME_SEC_MAX // 2 - int(now) - 1
    if not low <= value <= high:
        raise UsageError(f"--{clock} {value:g}: out of range: the clock must stay between 0 "
                         f"and {KTIME_SEC_MAX // 2} s, and it is {now:.0f} s now",
                         f"an offset from {low} to {high} seconds (the kernel's rule for "
                         "time namespaces)")


def _new_many(sh, types, name, opts, count: int) -> Message:
    """`new TYPES --count N`: N sets from a few helpers (core/ns/create.py create_many)."""
    if name is not None:
        # NAME1..NAMEn, checked without making the n names (n may be anything typed)
        for n in (f"{name}1", f"{name}{count}"):
            try:
                names.check(n)
            except ValueError as e:
                raise UsageError(f"{n}: {e}", names.RULE) from None
        for n in sh.sets:
            suffix = n[len(name):]
            if n.startswith(name) and suffix.isdigit() and suffix[0] != "0" \
                    and int(suffix) <= count:
                raise UsageError(f"{n}: that name is taken", "`close` it or pick another NAME")
    sets = create_ops.create_many(sh.entries(), types, opts, count,
                                  fork_after=sh.needs_fork_after(), progress=sh.progress)
    made = [sh.add_set(NsSet(f"{name}{i + 1}" if name else sh.next_name(), handles,
                             origin="new"))
            for i, handles in enumerate(sets)]
    what = "+".join(t.name for t in types)
    return Message(f"{made[0].name}..{made[-1].name}: {count} new {what} sets (held, not joined)")


def _current_user(sh, ref: NsSet | None):
    if ref is not None:
        if "user" not in ref.handles:
            raise UsageError(f"{ref.label} has no user namespace")
        h = ref.handles["user"]
    else:
        h = sh.context["user"]
    if h.nsid == sh.host.handles["user"].nsid:
        raise NsshellError("the current user namespace is the one the shell started in; "
                           "its maps were written long ago",
                           "create a user namespace first (`new user+...`)")
    return h


def _parent_entry(sh, user_handle):
    """The parent of USER_HANDLE as an Entry to enter, or None when it is the shell's own."""
    fd = nsfs.parent_fd(user_handle.fd)
    if fd is None:
        raise NsshellError(f"cannot see the parent of {user_handle.label}")
    parent_id = nsfs.nsid_of_fd(fd, "user")
    if parent_id == sh.host.handles["user"].nsid:
        os.close(fd)
        return None, None
    return spawn.Entry(nstypes.USER, fd, str(parent_id)), fd


def _write_maps(sh, user_handle, req: mapping.MapRequest) -> dict:
    entry, fd = _parent_entry(sh, user_handle)
    try:
        privileged = entry is not None or os.geteuid() == 0
        if not privileged and req.gid is not None and req.setgroups is None and not req.use_helper:
            req.setgroups = "deny"  # the kernel's rule for unprivileged gid maps
        return mapping.write(entry, user_handle.entry(), req)
    finally:
        if fd is not None:
            os.close(fd)


def _summary(user_handle, done: dict) -> Message:
    parts = []
    for kind in ("uid", "gid"):
        if kind in done:
            parts.append(f"{kind} {idmap.format_idmap(done[kind])}")
    if "setgroups" in done:
        parts.append(f"setgroups {done['setgroups']}")
    return Message(f"{user_handle.label}: " + "; ".join(parts))


@command("map")
def map_(sh, ranges: Annotated[list, Word("IN OUT COUNT")], *,
         uid_only: Annotated[bool, Opt("-u")] = False,
         gid_only: Annotated[bool, Opt("-g")] = False,
         ns: Annotated[NsSet, Ref()] = None):
    """Write the uid and gid maps of the current user namespace.

    Each range is three numbers: the first id inside, the first id outside (in
    the parent namespace), and how many.  Both maps are written unless -u or
    -g; a map is written once.  Unprivileged, only your own id may be mapped, and
    setgroups is denied first, as the kernel requires.

    Arguments:
      ranges: IN OUT COUNT triples (at most 340)

    Options:
      uid_only: write only uid_map
      gid_only: write only gid_map
      ns: the user namespace to map (default: the current one)

    Examples:
      map 0 1000 1
      map 0 100000 65536
      map -u 0 1000 1 1 100000 65535
    """
    if uid_only and gid_only:
        raise UsageError("-u and -g exclude each other", "give neither to write both maps")
    try:
        parsed = idmap.parse_triples(ranges)
    except idmap.MapError as e:
        raise UsageError(str(e), "e.g. `map 0 1000 1`") from None
    user = _current_user(sh, ns)
    req = mapping.MapRequest(uid=None if gid_only else parsed, gid=None if uid_only else parsed)
    return _summary(user, _write_maps(sh, user, req))


@command("map root")
def map_root(sh, *, ns: Annotated[NsSet, Ref()] = None):
    """Map root (0) of the current user namespace to your own uid and gid, as unshare -r.

    Options:
      ns: the user namespace to map (default: the current one)

    Examples:
      new user+mnt; map root
    """
    user = _current_user(sh, ns)
    entry, fd = _parent_entry(sh, user)
    if fd is not None:
        os.close(fd)
    uid, gid = (os.geteuid(), os.getegid()) if entry is None else (0, 0)
    req = mapping.MapRequest(uid=[idmap.IdRange(0, uid, 1)], gid=[idmap.IdRange(0, gid, 1)])
    return _summary(user, _write_maps(sh, user, req))


@command("map auto")
def map_auto(sh, *, ns: Annotated[NsSet, Ref()] = None):
    """Map root to your own ids and 1.. to your subordinate ranges (/etc/subuid, /etc/subgid).

    Unprivileged, this goes through the setuid helpers newuidmap and newgidmap
    (Debian package uidmap), as rootless podman does.

    Options:
      ns: the user namespace to map (default: the current one)

    Examples:
      new user+mnt; map auto
    """
    import pwd
    user = _current_user(sh, ns)
    uid, gid = os.geteuid(), os.getegid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    maps = {}
    for kind, own in (("uid", uid), ("gid", gid)):
        sub = idmap.subordinate_ranges(kind, name, uid)
        if not sub:
            raise NsshellError(f"{name} has no subordinate {kind}s in /etc/sub{kind}",
                               f"add a line like '{name}:100000:65536' (usermod --add-sub{kind}s)")
        start, count = sub[0]
        maps[kind] = [idmap.IdRange(0, own, 1), idmap.IdRange(1, start, count)]
    helper = uid != 0
    if helper and not (idmap.helper_for("uid") and idmap.helper_for("gid")):
        raise NsshellError("newuidmap/newgidmap are not installed",
                           "install the uidmap package (apt-get install uidmap)")
    req = mapping.MapRequest(uid=maps["uid"], gid=maps["gid"], use_helper=helper)
    return _summary(user, _write_maps(sh, user, req))


@command("setgroups")
def setgroups(sh, value: Annotated[str, Choice("allow", "deny")], *,
              ns: Annotated[NsSet, Ref()] = None):
    """Write allow or deny to /proc/PID/setgroups of the current user namespace.

    It must be written before gid_map; deny is required before an unprivileged
    gid_map, and is inherited by child namespaces.

    Arguments:
      value: allow or deny

    Options:
      ns: the user namespace (default: the current one)

    Examples:
      new user; setgroups deny; map -g 0 1000 1
    """
    user = _current_user(sh, ns)
    req = mapping.MapRequest(uid=None, gid=None, setgroups=value)
    return _summary(user, _write_maps(sh, user, req))


@command("join")
def join(sh, types: Types = None, ref: RefArg = ...):
    """Make REF's namespaces (or only TYPES of them) current.

    Arguments:
      types: only these types of REF (`TYPE REF`, as wherever a REF is taken)
      ref: a name, pid:N, host, a path, or TYPE:[INODE]

    Examples:
      join box
      join net box
      join pid:1234
      join net /run/netns/blue
    """
    picked = ref.pick(types) if types else ref
    for t, h in picked.handles.items():
        if h.closed or h.nsid == sh.host.handles[t].nsid:
            continue
        refused = nsstate.entry_refusal(h.fd, h.type, h.label)
        if refused:
            raise NsshellError(refused, "`show` reads what it can of it without entering")
    joined = sh.join(ref, types)
    return Message(f"joined {ref.label}: {' '.join(joined)}")


@command("leave")
def leave(sh, types: Types = None):
    """Return TYPES (default all) of the context to the shell's own namespaces.

    Arguments:
      types: which types to leave

    Examples:
      leave
      leave net
    """
    left = sh.leave(types)
    return Message(f"back on host: {' '.join(left)}")


@command("ctx")
def ctx(sh):
    """Show the current context: the namespace of each type that commands act in.

    Examples:
      ctx
      ctx --json
    """
    rows = []
    for t in nstypes.NAMES:
        h = sh.context.get(t)
        if h is None:
            continue
        rows.append([t, sh.context_names.get(t, "host") if not sh.is_host(t) else "host",
                     str(h.nsid), h.nsid.ino])
    return Table(["type", "name", "ns", "inode"], rows, key="context",
                 data=[{"type": r[0], "name": r[1], "ns": r[2], "inode": r[3]} for r in rows])


@command("hostname")
def hostname(sh, name: Annotated[str, Word("NAME")] = None, *, host: bool = False):
    """Show or set the host name of the current UTS namespace.

    Arguments:
      name: the new host name (64 bytes at most)

    Options:
      host: allow renaming the host itself (its own UTS namespace; by default refused)

    Examples:
      hostname
      hostname box
    """
    if name is None:
        if sh.is_host("uts"):
            import socket  # here: start-up does not pay for it (bench/README.md)
            return Message(socket.gethostname())
        h = sh.context["uts"]
        # read as `show` reads it: entering, when not root, the user namespace that owns it
        got = nsstate.snapshot(h.fd, nstypes.UTS, ["hostname"], label=h.label)["hostname"]
        if "value" not in got:
            raise NsshellError(f"cannot read the host name of {h.label}: {got.get('error')}")
        return Message(got["value"])
    if len(name.encode()) > 64:
        raise UsageError("a host name is 64 bytes at most")
    refuse_host(sh, sh.context["uts"], host, sh.context_names.get("uts"))
    uts.set_hostname(sh.entries(["user", "uts"]), name)
    return None
