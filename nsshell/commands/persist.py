"""Keeping namespaces beyond the shell: persist, unpersist, and persisted names.

The store (core/store/persist.py) takes plain values: a root, names, handles.  This is
where a session meets it, in one place: `install(session, root)` (the CLI calls it with
the root it decided: --persist-root, $NSSHELL_PERSIST_ROOT or /run/nsshell) adds the
`persist_root` setting and the one resolver of persisted names (`join foo` finding a
persisted foo), which also completes them and lists them for `handles`."""

from __future__ import annotations

from .. import names
from ..core.store import persist as store
from ..core.ns.handle import NsSet
from ..errors import UsageError
from ..registry import Annotated, Kw, command
from ..results import Message
from ..types import ParamType, Path, Ref

from .persist_names import SETTING, _candidates, install, root_of  # noqa: F401 - (install: callers)

RefArg = Annotated[NsSet, Ref()]


class PersistedName(ParamType):
    """A persisted name (or the directory of a persisted set)."""
    metavar = "REF"

    def complete(self, prefix, session, ctx=None):
        if prefix.startswith("/"):
            from ..types import complete_path
            return complete_path(prefix, dirs_only=True)
        return _candidates(session, prefix)

    def hint(self, session):
        return "`handles` lists persisted sets"


class RootDir(ParamType):
    metavar = "DIR"

    def parse(self, text, session):
        return store.parse_root(text)

    def complete(self, prefix, session, ctx=None):
        from ..types import complete_path
        return complete_path(prefix, dirs_only=True)


class PersistName(ParamType):
    """A name to persist under: the one name rule (not the session's: it may be taken)."""
    metavar = "NAME"

    def parse(self, text, session):
        return names.check(text)

    def hint(self, session):
        return names.RULE


@command("persist")
def persist(sh, ref: RefArg, dir: Annotated[str, Path("DIR", dirs_only=True)] = None,
            name: Annotated[str, Kw("as"), PersistName()] = None, *,
            root: Annotated[str, RootDir()] = None):
    """Bind-mount a set's namespaces so they outlive the shell, and can be used by name later.

    Each namespace is bound at ROOT/NAME/TYPE (ROOT: --root, the persist_root
    setting, nsshell --persist-root, $NSSHELL_PERSIST_ROOT, or /run/nsshell, which
    is made a private mount of itself first); a net namespace also at /run/netns/NAME, so
    `ip netns exec NAME` works.  A PID namespace keeps its init alive through a
    detached holder process until `unpersist` (and while a session that joined
    it still uses it).  The shell's own mount namespace cannot be bound inside
    itself.  Without root, the per-user keeper process holds the namespaces
    instead (no bind mounts; not visible to ip netns); for that user a name means
    their own kept set first, before root's entry of the same name in
    /run/nsshell or /run/netns (reachable by its path).

    The entry is made as a transaction: its intent is recorded first and
    committed last, so a persist killed part way is rolled back by the next
    persist, unpersist or ls, which say so.  See docs/persistence.md.

    Arguments:
      ref: the set to keep: a name, pid:N, a path, TYPE:[INODE]
      dir: keep the files in this directory instead of ROOT/NAME (created; its parent must exist)
      name: the persisted name (default: the set's name)

    Options:
      root: the persist root for this command

    Examples:
      persist box
      persist pid:1234 as web
      persist lab /srv/ns/lab
    """
    if ref is sh.host and "mnt" in ref.handles:
        raise UsageError("the host set includes the shell's own mount namespace, which cannot "
                         "be bound inside itself",
                         "hold the other types under a name first (`open pid:1 net+uts as h`)")
    pname = name or ref.name
    if not pname:
        raise UsageError(f"{ref.label} has no name to persist it under", "add `as NAME`")
    if dir is not None and not dir.startswith("/"):
        import os
        dir = os.path.abspath(dir)
    done = store.persist(ref, pname, root=root or root_of(sh), dirpath=dir,
                         host_mnt=sh.host.handles.get("mnt"))  # the name: checked there
    if ref.name and sh.sets.get(ref.name) is ref:
        ref.persisted = done.path
    if done.keeper:
        parts = [f"{done.name}: {' '.join(done.types)} kept at {done.path} by the keeper"
                 + (f" (pid {done.holder})" if done.holder else "")]
    else:
        parts = [f"{done.name}: {' '.join(done.types)} kept at {done.path}"]
    if done.netns:
        parts.append(f"net also at {done.netns}")
    if done.holder and not done.keeper:
        parts.append(f"init held by pid {done.holder}")
    text = "; ".join(parts)
    if done.notes:
        text += " (" + "; ".join(done.notes) + ")"
    return Message(text)


@command("unpersist")
def unpersist(sh, ref: Annotated[str, PersistedName()], *,
              root: Annotated[str, RootDir()] = None, force: bool = False):
    """Remove what persist made: the bind mounts, their files, the /run/netns entry it made,
    the PID init's holder (or release them from the keeper).  Nothing else: an `ip netns`
    entry nsshell did not make is refused (`ip netns del NAME` removes it).

    The session keeps any handles it holds on the set.  A persisted PID namespace
    lives on while a session uses it: a session that joins or opens it takes a
    lifeline of its own to its init, so unpersist ends only the holder's, and the
    namespace goes when the last such session lets go.  If processes run in it
    that no session keeps alive (e.g. started by nsenter), unpersist refuses and
    names them; --force ends the namespace anyway, and the kernel kills them.

    Only entries root (or you) own are trusted, and only a holder that is
    provably nsshell's (its name, start time, and the lifeline of the namespace's
    init it holds) is ever signalled.  What an interrupted persist or unpersist
    left is finished or rolled back first (so do persist and ls), and said.

    Arguments:
      ref: a persisted name, or the directory given to persist

    Options:
      root: the persist root to look in
      force: unpersist even if processes run in its PID namespace (they are killed)

    Examples:
      unpersist box
      unpersist /srv/ns/lab
      unpersist --force box
    """
    held = sh.sets.get(ref)
    out = store.unpersist(ref, root=root or root_of(sh), force=force,
                          held=held.persisted if held is not None else None)
    for s in sh.sets.values():  # the session's records of what is gone
        if s.persisted == out["path"] or (s.name == ref and s.persisted):
            s.persisted = None
    text = f"unpersisted {ref}: removed " + (", ".join(out["removed"]) or "nothing")
    if out.get("notes"):
        text += " (" + "; ".join(out["notes"]) + ")"
    return Message(text)
