"""The handles the session holds: handles, name, close, open."""

from __future__ import annotations

from ..core.ns.handle import NsSet
from ..errors import NotFoundError, NsshellError, UsageError
from ..kernel import nsfs, nstypes
from ..registry import Annotated, Kw, command
from ..results import Message, Table
from ..types import NewName, NsTypes, Ref

RefArg = Annotated[NsSet, Ref()]


def _owner(handle) -> str | None:
    try:
        owner = nsfs.owner_nsid(handle.fd)
    except OSError:
        return None
    return str(owner) if owner else None


def handle_rows(sh, everything: bool = False) -> list[dict]:
    """One row per held handle: the data behind `handles` (and its JSON); with
    EVERYTHING, also the persisted sets not opened yet (`handles --all`)."""
    rows = []
    for name, s in sh.sets.items():
        for t in nstypes.NAMES:
            h = s.handles.get(t)
            if h is None:
                continue
            row = {"name": name, "type": t, "ns": str(h.nsid), "inode": h.nsid.ino,
                   "owner": _owner(h), "origin": h.origin, "persisted": s.persisted,
                   "current": sh.context.get(t) is h}
            if h.holder is not None:
                row["init_pid"] = h.holder.pid
                row["alive"] = h.holder.alive()
            rows.append(row)
    if everything:
        for r in sh.resolvers:  # persisted sets the session has not opened yet
            more = getattr(r, "rows", None)
            if more:
                rows.extend(more(sh))
    return rows


@command("handles")
def handles(sh, *, all_: bool = False):
    """List the namespaces this session holds: name, type, id, owner, origin, persisted path.

    A `*` marks those in the current context; a PID namespace whose init has
    died is marked dead.  Persisted sets (nsshell's, `ip netns` names, the
    keeper's) are held once used by name; `ls` lists them all, with their names.

    Options:
      all: also the persisted sets this session has not opened yet

    Examples:
      handles
      handles --all
      handles --json
    """
    data = handle_rows(sh, all_)
    rows = []
    for r in data:
        state = "*" if r["current"] else ""
        if r.get("alive") is False:
            state += "dead"
        rows.append([r["name"], r["type"], r["ns"], r["owner"], r["origin"], r["persisted"], state])
    return Table(["name", "type", "ns", "owner", "origin", "persisted", "cur"], rows,
                 key="handles", data=data)


@command("name")
def name(sh, ref: RefArg, newname: Annotated[str, NewName()]):
    """Give a set (or one handle) a name: rename a held set, or hold pid:N, a path or
    TYPE:[INODE] under NEWNAME.

    Arguments:
      ref: what to name (TYPE REF: only those types of it)
      newname: the new name

    Examples:
      name ns1 box
      name net box boxnet
      name pid:1234 web
    """
    if ref.name and ref.name in sh.sets and sh.sets[ref.name] is ref:
        old = ref.name
        sh.rename(old, newname)
        return Message(f"{old} is now {newname}")
    sh.add_set(NsSet(newname, ref.handles, origin=ref.origin))
    return Message(f"{newname}: " + " ".join(str(h.nsid) for h in ref.handles.values()))


@command("close")
def close(sh, ref: RefArg):
    """Drop the session's handles of a set; a namespace nothing else holds then ends.

    Types of the context that were in the set return to the host's.  Closing a
    PID namespace ends its init and every process in it.

    Arguments:
      ref: a name held by this session (TYPE REF: only those types of it)

    Examples:
      close box
      close net box
    """
    whole = getattr(ref, "whole", ref)     # `close net box`: only box's net handle
    if whole is sh.host:
        raise UsageError("the host's namespaces cannot be closed")
    if not whole.name or sh.sets.get(whole.name) is not whole:
        raise NotFoundError(f"{ref.label} is not a set this session holds",
                            "`handles` lists them")
    types = list(ref.handles) if whole is not ref else None
    # The handles dropped, taken before drop_set: it empties the set's own dict (REF is
    # that set for `close box`) and returns only the handles it closed.  Those still
    # open are held elsewhere in the session (another name, the context).
    dropped = list(ref.handles.values())
    sh.drop_set(whole.name, types)
    still = sum(1 for h in dropped if not h.closed)
    note = f" ({still} still held elsewhere in the session)" if still else ""
    what = f"{'+'.join(types)} of {whole.name}" if types and whole.name in sh.sets else whole.name
    return Message(f"closed {what}{note}")


@command("open")
def open_(sh, source: RefArg, types: Annotated[tuple, NsTypes()] = None,
          name: Annotated[str, Kw("as"), NewName()] = None):
    """Take handles from a namespace file or a process, and hold them as a named set.

    Arguments:
      source: PATH (a bind-mounted namespace file, /proc/PID/ns/TYPE) or pid:N
      types: only these types (default: all the source has)
      name: a name for the set (default ns1, ns2, ...)

    Examples:
      open pid:1234 as web
      open pid:1234 net+uts
      open /run/netns/blue as blue
    """
    picked = source.pick(types) if types else source
    if not picked.handles:
        raise NsshellError(f"{source.label} gave no namespaces")
    nsset = sh.add_set(NsSet(name or sh.next_name(), picked.handles, origin=source.origin))
    return Message(f"{nsset.name}: " + " ".join(str(h.nsid) for h in nsset.handles.values()))
