"""Keeping namespaces beyond the shell: persist, unpersist."""

from __future__ import annotations

from ..core.look import discover
from ..core.store import persist as store
from ..core.ns.handle import NsSet
from ..errors import UsageError
from ..registry import Annotated, Kw, command
from ..results import Message
from ..types import ParamType, Path, Ref, Word

RefArg = Annotated[NsSet, Ref()]


def _names_for_ls(session):
    """Persisted names for `ls`/`identify` (discover's hook): (type, inode, name).
    What an interrupted persist or unpersist left is finished or rolled back first, and
    said (one line each)."""
    engine = session.engine
    for note in store.recover(session):
        if engine is not None:
            engine.renderer.warn(note)
    for r in store.list_persisted(session):
        if "holder" in r:  # the keeper's: /proc does not show its fds
            yield r["type"], r["inode"], r["name"], r["holder"]
        else:
            yield r["type"], r["inode"], r["name"]


if _names_for_ls not in discover.NAME_SOURCES:
    discover.NAME_SOURCES.append(_names_for_ls)


class PersistedName(ParamType):
    """A persisted name (or the directory of a persisted set)."""
    metavar = "REF"

    def complete(self, prefix, session):
        if prefix.startswith("/"):
            from ..types import complete_path
            return complete_path(prefix, dirs_only=True)
        return store._candidates(session, prefix)

    def hint(self, session):
        return "`handles` lists persisted sets"


class RootDir(ParamType):
    metavar = "DIR"

    def parse(self, text, session):
        return store._parse_root(text)

    def complete(self, prefix, session):
        from ..types import complete_path
        return complete_path(prefix, dirs_only=True)


@command("persist")
def persist(sh, ref: RefArg, dir: Annotated[str, Path("DIR", dirs_only=True)] = None,
            name: Annotated[str, Kw("as"), Word("NAME")] = None, *,
            root: Annotated[str, RootDir()] = None):
    """Bind-mount a set's namespaces so they outlive the shell, and can be used by name later.

    Each namespace is bound at ROOT/NAME/TYPE (ROOT: --root, the persist_root
    setting, $NSSHELL_PERSIST_ROOT, or /run/nsshell, which is made a private
    mount of itself first); a net namespace also at /run/netns/NAME, so
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
    if not store.NAME_OK(pname):
        raise UsageError(f"{pname!r} cannot be a persisted name",
                         "a letter or _ then letters, digits, _ . - (64 at most)")
    if dir is not None and not dir.startswith("/"):
        import os
        dir = os.path.abspath(dir)
    done = store.persist(sh, ref, pname, dir, root)
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
    out = store.unpersist(sh, ref, root, force)
    text = f"unpersisted {ref}: removed " + (", ".join(out["removed"]) or "nothing")
    if out.get("notes"):
        text += " (" + "; ".join(out["notes"]) + ")"
    return Message(text)
