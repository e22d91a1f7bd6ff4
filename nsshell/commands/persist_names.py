"""The session's persisted names: the persist_root setting and the one resolver of
persisted names (`join foo` finding a persisted foo, completing them, listing them for
`handles`), and the names `ls` prints.  Installed at start-up, so this module is
light: the store (core/store/persist.py, with its holder and file system code) is
imported when a name is first looked up, not to start.  persist.py has the commands."""

from __future__ import annotations

from ..core import store as _store
from ..core.look import NAME_SOURCES

TYPE_CHECKING = False   # (typing is not imported to start)
if TYPE_CHECKING:
    from ..core.ns.handle import NsSet

SETTING = "persist_root"


def _store_module():
    """core/store/persist.py, imported on first use."""
    from ..core.store import persist
    return persist


# --- the session's persisted names -------------------------------------------------------

def install(session, root: str) -> None:
    """Add the persist_root setting (ROOT: what the CLI decided) and the persisted-name
    resolver to SESSION.  Cheap: nothing is scanned until a name is looked up."""
    if SETTING not in session.settings:
        session.add_setting(SETTING, root, _parse_root,
                            "where `persist` keeps namespaces (nsshell --persist-root, "
                            f"${_store.ENV_ROOT}, default {_store.DEFAULT_ROOT})")
    if _resolver not in session.resolvers:
        session.resolvers.insert(0, _resolver)  # persisted names come right after the session's


def root_of(session) -> str:
    """SESSION's persist root: its setting (the default root in a session nothing installed)."""
    s = session.settings.get(SETTING) if session is not None else None
    return s.value if s is not None and s.value else _store.DEFAULT_ROOT


def _resolver(session, text: str) -> NsSet | None:
    """A persisted set called TEXT, held by SESSION under that name from now on (when the
    name is one a session may hold: an odd `ip netns` name is usable, but not held)."""
    store = _store_module()
    found = store.lookup(text, root_of(session))
    if found is not None and found.name and found.name not in session.sets:
        try:
            session.check_new_name(found.name)
        except ValueError:
            return found
        session.add_set(found)
    return found


def _candidates(session, prefix: str) -> list[tuple[str, str]]:
    store = _store_module()
    seen: dict[str, list[str]] = {}
    try:
        rows = store.list_persisted(root_of(session))
    except Exception:  # noqa: BLE001 - completion never fails
        return []
    for r in rows:
        if r["name"].startswith(prefix):
            seen.setdefault(r["name"], []).append(r["type"])
    return [(n, "persisted: " + " ".join(ts)) for n, ts in sorted(seen.items())]


def _rows(session) -> list[dict]:
    """Rows for `handles`: persisted sets this session does not hold yet."""
    store = _store_module()
    out = []
    try:
        found = store.list_persisted(root_of(session))
    except Exception:  # noqa: BLE001 - a listing of the store never breaks `handles`
        return out
    for r in found:
        if r["name"] in session.sets:
            continue
        row = {"name": r["name"], "type": r["type"], "ns": r["nsid"], "inode": r["inode"],
               "owner": store.owner_of(r["path"]) if r["source"] != "keeper" else r.get("owner"),
               "origin": r["source"], "persisted": r["path"], "current": False}
        if "alive" in r:
            row["alive"] = r["alive"]
        out.append(row)
    return out


_resolver.candidates = _candidates
_resolver.rows = _rows
_resolver.form = "NAME"     # its place in the REF order (session.REF_ORDER; the man page)
_resolver.what = (f"a persisted name: a set kept under the persist root (default "
                  f"{_store.DEFAULT_ROOT}/NAME/), or for net an `ip netns` name "
                  f"({_store.NETNS_DIR}/NAME)")


def _names_for_ls(session):
    """Persisted names for `ls`/`identify` (discover's hook): (type, inode, name).
    What an interrupted persist or unpersist left is finished or rolled back first, and
    said (one line each).  Without a session there is no persist root: no names."""
    if session is None:
        return
    root = root_of(session)
    engine = session.engine
    store = _store_module()
    for note in store.recover(root):
        if engine is not None:
            engine.renderer.warn(note)
    for r in store.list_persisted(root):
        if "holder" in r:  # the keeper's: /proc does not show its fds
            yield r["type"], r["inode"], r["name"], r["holder"]
        else:
            yield r["type"], r["inode"], r["name"]


if _names_for_ls not in NAME_SOURCES:   # (discover.NAME_SOURCES: the same list)
    NAME_SOURCES.append(_names_for_ls)




def _parse_root(text: str) -> str:
    return _store_module().parse_root(text)
