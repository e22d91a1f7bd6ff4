"""The plugin API: everything a plugin may use, and nothing else.

A plugin is a module (or package) found through the entry-point group
`nsshell.plugins` (the entry point's name is the plugin's name) or as a `*.py`
file or a package in the user plugin folder ($XDG_CONFIG_HOME/nsshell/plugins/,
default ~/.config/nsshell/plugins/; the file or folder name is the plugin's
name).  If it has a `register(api)` function, the loader calls it with a
`PluginAPI`; commands may also be declared at import time with the module-level
`command` decorator.  A plugin's commands are grouped under its name, so
help, completion, the man page and the completion scripts cover them with no
extra work.  A plugin that fails to import or register gives one warning line
and is listed by `plugins` with the reason; nothing it registered stays.

    from nsshell.plugin import Annotated, Message, Ref

    def register(api):
        @api.command("hello world")
        def hello(sh, ref: Annotated[object, Ref()]):
            '''Say hello to a namespace set.

            Arguments:
              ref: the set to greet
            '''
            return Message(f"hello {ref.label}")

What a plugin can do (see docs/plugins.md):
- commands: `api.command(NAME)` / `command(NAME)`, declared exactly as built-ins
  (typed parameters, `Annotated[..., TypeObj(), Kw("via")/Opt("-u")/Rest()]`,
  docstring sections Arguments/Options/Examples); a command that changes a
  namespace's state declares it, `api.command(NAME, changes="net")`, takes a
  `host: bool = False` flag, and then refuses the host's own namespace unless
  given --host (`changes_state`, one rule for every plugin);
- parameter types: subclass `ParamType` (parse + complete); `complete(prefix,
  session, ctx)` gets in ctx the words typed so far, by parameter name, to complete
  from the namespace named earlier on the line, and returns pairs or `Candidate`s;
- sessions: `api.on_session(fn)` runs fn(session) for every new session (add a
  setting with `session.add_setting`, a REF resolver to `session.resolvers`);
- namespace state for `show`/`diff`: `api.state_reader(TYPE, KEY)(fn)`;
- REF forms: `api.add_ref_scheme(SCHEME, resolve, complete)` makes `SCHEME:REST` a
  REF everywhere (resolve returns a process id or an NsSet; complete gives candidates);
- names: `api.add_name_source(fn)`: fn(session) yields (type, inode, name) for
  namespaces `ls`, `tree`, `show` and `identify` print with those names;
- resources bound to a namespace: `HandleCache` (closed with the handle), and
  `socket_in(handle, family, type)` for a socket created inside a network
  namespace; `call_in(entries, fn, ...)` runs fn in a helper inside namespaces;
- the kernel layer: `syscalls` (mount, umount2, pivot_root, ioctl_ns, statmount...),
  `nstypes`, `mountinfo` (the one parser of /proc/PID/mountinfo) and `procfs` (the
  one reader of /proc/PID/stat, status, fdinfo);
- rtnetlink: `rtnl` (nsshell/core/look/rtnl.py), pyroute2's messages over such a
  socket with a small, fast request loop; imported on first use (pyroute2).

Keep import time small: import heavy libraries inside command bodies.
"""

from __future__ import annotations


from .core.ns.handle import CLOSE_HOOKS as _CLOSE_HOOKS
from .core.ns.handle import Handle, NsSet
from .core.proc.spawn import Entry, Handoff, call as call_in
from .core.look.nsstate import Context as StateContext, register as _register_state, unregister as unregister_state
from . import guard as _guard
from .guard import refuse_host
from .core.look.nsstate import link_record
from .errors import KernelError, NotFoundError, NsshellError, UsageError, from_oserror
from .kernel import mountinfo, nstypes, procfs, syscalls  # syscalls: mount, umount2, ioctl_ns...
from .registry import REGISTRY as _REGISTRY
from .registry import Annotated, Kw, Opt, Rest
from .results import Diff, Message, Multi, Node, Record, Status, Table, Tree
from .types import (Candidate, Choice, Int, NsType, NsTypes, ParamType, Path, Pid, Ref, Seconds,
                    Word, complete_path)

TYPE_CHECKING = False   # typing is not imported to start (tests/test_imports.py)
if TYPE_CHECKING:
    from typing import Any, Callable

API_VERSION = 1


def socket_in(*args, **kwargs):
    """A socket created inside a network namespace (core/ns/nssocket.py: socket_in).
    Imported on first use: start-up does not pay for socket (bench/README.md)."""
    from .core.ns.nssocket import socket_in as _socket_in
    return _socket_in(*args, **kwargs)

__all__ = [
    "API_VERSION", "PluginAPI", "command", "HandleCache", "socket_in", "resolve_handle",
    "Annotated", "Kw", "Opt", "Rest", "Choice", "Int", "NsType", "NsTypes", "ParamType", "Candidate", "Path",
    "Pid", "Ref", "Seconds", "Word", "complete_path", "Message", "Record", "Table", "Tree", "Node",
    "Diff", "Status", "Multi", "NsshellError", "UsageError", "NotFoundError", "KernelError", "from_oserror",
    "Handle", "NsSet", "Entry", "Handoff", "call_in", "mountinfo", "nstypes", "syscalls",
    "register_state", "unregister_state", "StateContext", "link_record", "changes_state",
    "refuse_host", "is_host",
]


class PluginAPI:
    """What the loader hands to a plugin's register(api).  Everything it adds (commands,
    hooks, state readers, REF schemes, name sources, handle caches) is added through
    it and recorded, so a plugin that fails half way is removed whole (rollback)."""

    def __init__(self, name: str, warn: Callable[[str, str], None] | None = None) -> None:
        """WARN(plugin, reason) reports a failure that comes after loading (a session hook
        that raises): the loader passes its own, so the API never imports the loader.
        Without one (a PluginAPI made by hand), such a failure is raised."""
        self.name = name
        self._warn = warn
        self.commands: list[str] = []
        self._undo: list[Callable[[], None]] = []
        self._deferring = False   # True while commands_in's module declares its commands

    def _hook(self, hooks, fn: Callable) -> Callable:
        """Add FN to HOOKS (a nsshell.hooks.Hooks) until rollback."""
        hooks.add(fn)
        self._undo.append(lambda: hooks.remove(fn))
        return fn

    # -- commands ----------------------------------------------------------------------

    def command(self, name: str | None = None, *, aliases: tuple[str, ...] = (),
                hidden: bool = False, changes: str | None = None,
                data: bool | None = None) -> Callable:
        """Declare a command exactly as a built-in (@command); its group is the plugin.
        changes=TYPE: the command changes the state of a namespace of TYPE (see
        `changes_state`): it refuses the host's own unless given --host.  data=False:
        it never shows data, so it takes no --json (registry.Registry.command)."""
        def deco(func: Callable) -> Callable:
            target = changes_state(changes)(func) if changes else func
            # (read at once, so that a bad declaration fails the plugin's load, except
            # in a module commands_in loads on first use)
            _REGISTRY.command(name, group=self.name, aliases=aliases, hidden=hidden,
                              data=data, now=not self._deferring)(target)
            cname = target.command.name
            self._undo.append(lambda: _REGISTRY.remove(cname))
            if cname not in self.commands:   # (a deferred one was listed when deferred)
                self.commands.append(cname)
            return target
        return deco

    def commands_in(self, names, declare: Callable[["PluginAPI"], None]) -> None:
        """Declare the commands NAMES without declaring them yet: DECLARE(api) (a function
        of the plugin that imports its command module and declares them through this
        api, so that what it adds is this plugin's) runs on the first use of one of
        them, or when every command is wanted (help, completion, the man page).
        Start-up pays for neither the module nor its declarations.  NAMES must be every
        command DECLARE declares, in order (`plugins` lists them before it runs).

            def _net(api):
                from . import commands
                commands.register(api)

            def register(api):
                api.commands_in(("net veth", "net addr"), _net)
        """
        names = list(names)
        loaded = {"done": False}
        where = f"{getattr(declare, '__module__', '?')}.{getattr(declare, '__qualname__', '?')}"

        def load() -> None:
            global _CURRENT
            if loaded["done"]:
                return
            loaded["done"] = True
            previous, _CURRENT = _CURRENT, self
            self._deferring = True
            mark = len(self._undo)
            try:
                declare(self)
            except Exception as e:  # noqa: BLE001 - one line, as a plugin failing at start
                while len(self._undo) > mark:   # what it added before failing
                    try:
                        self._undo.pop()()
                    except (ValueError, KeyError):
                        pass
                for n in names:
                    _REGISTRY.remove(n)
                    if n in self.commands:
                        self.commands.remove(n)
                reason = f"{type(e).__name__}: {e}"
                if self._warn is None:
                    raise
                self._warn(self.name, f"commands of {where} not loaded: {reason}")
            finally:
                self._deferring = False
                _CURRENT = previous
        _REGISTRY.defer_loader(names, f"{self.name}: {where}", load, self.name)
        self.commands.extend(n for n in names if n not in self.commands)

    # -- sessions --------------------------------------------------------------------------

    def on_session(self, fn: Callable[[Any], None]) -> Callable[[Any], None]:
        """Run fn(session) for every new session (settings, resolvers); a failure is a
        warning, never a shell that does not start."""
        from . import session as _session
        plugin, warn = self.name, self._warn

        def hook(sess) -> None:
            try:
                fn(sess)
            except Exception as e:  # noqa: BLE001
                if warn is None:
                    raise
                warn(plugin, f"session set-up failed: {type(e).__name__}: {e}")
        self._hook(_session.INIT_HOOKS, hook)
        return fn

    def on_handle_close(self, fn: Callable[[Handle], None]) -> Callable[[Handle], None]:
        """Run fn(handle) just before any namespace handle closes."""
        return self._hook(_CLOSE_HOOKS, fn)

    # -- REF forms and names ------------------------------------------------------------

    def add_ref_scheme(self, scheme: str, resolve: Callable[[Any, str], Any],
                       complete: Callable[[Any, str], Any] | None = None, *,
                       what: str = "") -> None:
        """Make `SCHEME:REST` a REF in every session (before pid:N, paths and TYPE:[INODE]).

        resolve(session, REST) returns a process id (its namespaces are taken, as
        `pid:N`, labelled `SCHEME:REST`), an NsSet, or None (then: a clear not-found
        error).  complete(session, REST_PREFIX) yields (REST, description) for
        completion; it is called only once the word starts with `SCHEME:`.  WHAT
        describes the scheme (shown when completing `SCHEME:` itself)."""
        from .kernel import nstypes as _nstypes
        if not scheme.isidentifier() or scheme in ("pid", "host") or scheme in _nstypes.NAMES \
                or scheme in _nstypes.ALIASES:
            raise UsageError(f"{scheme!r} cannot be a REF scheme",
                             "a scheme is a word that is not pid, host or a namespace type")
        lead = scheme + ":"

        def resolver(session, text: str):
            if not text.startswith(lead):
                return None
            rest = text[len(lead):]
            found = resolve(session, rest)
            if found is None:
                raise NotFoundError(f"no {scheme} {rest!r} (none running by that name)",
                                    f"complete `{lead}` with Tab, or `ls` for the names in use")
            if isinstance(found, int):
                found = session.open_pid(f"pid:{found}")
                found.origin = text
                for h in found.handles.values():
                    h.origin = text
            return found

        def candidates(session, prefix: str):
            if prefix.startswith(lead):
                try:
                    return [(lead + r, d) for r, d in (complete(session, prefix[len(lead):])
                                                       if complete else ())]
                except Exception:  # noqa: BLE001 - completion never fails
                    return []
            if prefix and lead.startswith(prefix):
                return [(lead, what or f"a {scheme} name")]
            return []
        resolver.candidates = candidates
        resolver.form, resolver.what = f"{scheme}:NAME", what or f"a {scheme} name"

        # The sessions it went into, held weakly: refs of the built-in _weakref, not a
        # WeakSet (the weakref module is ~0.8 ms of every start-up, as every plugin's
        # resolver is installed at once)
        import _weakref
        installed: list = []

        def install(session) -> None:
            if resolver not in session.resolvers:
                session.resolvers.append(resolver)
                installed[:] = [r for r in installed if r() is not None]
                installed.append(_weakref.ref(session))

        def uninstall() -> None:   # from the sessions made while the plugin was loading
            for ref in installed:
                session = ref()
                if session is not None and resolver in session.resolvers:
                    session.resolvers.remove(resolver)
        self._undo.append(uninstall)
        self.on_session(install)

    def add_name_source(self, fn: Callable[[Any], Any], *,
                        with_scan: bool = False) -> Callable[[Any], Any]:
        """Name namespaces: fn(session) yields (type name, inode, name) for every namespace
        it names; `ls`, `tree`, `show`, `identify` print those names.  It runs on every
        scan, so it must be cheap when it has nothing to say (a failure is ignored).
        WITH_SCAN: fn(session, scan) gets what the scan found, to tell cheaply whether
        it has anything to say: scan.pids(TYPE) is {inode: [pid, ...]} of the processes
        in each namespace of TYPE (None when the scan did not look at that type).  Such
        a fn is called as soon as the processes are read and what it returns is iterated
        at the end of the scan, so slow work it starts runs meanwhile; if that iterable
        has close(), it is called when the scan ends without reading it."""
        from .core.look import NAME_SOURCES   # discover's (not discover: start-up)
        if with_scan:
            fn.with_scan = True
        if fn not in NAME_SOURCES:
            NAME_SOURCES.append(fn)
            self._undo.append(lambda: NAME_SOURCES.remove(fn))
        return fn

    # -- what show and diff report ----------------------------------------------------

    def state_reader(self, nstype: str, key: str | None = None, *, differ: Callable | None = None,
                     summary: Callable | None = None, inside: bool = True,
                     prepare: Callable | None = None) -> Callable:
        """Add a piece of state KEY (default: the function's name) to what `show` and
        `diff` report for namespaces of NSTYPE.

        The function gets a StateContext and runs in a helper INSIDE the namespace
        (inside=False: a helper that joins nothing); it returns JSON-able data.
        differ(a, b) and summary(value) are as in nsshell.core.look.nsstate.register.
        PREPARE() runs in the shell before the helper enters: it imports what the
        function needs, because inside nothing is imported (the namespace's files could
        be anyone's).
        """
        def deco(fn: Callable) -> Callable:
            k = key or fn.__name__
            self.register_state(nstype, k, fn, differ, summary=summary, inside=inside,
                                prepare=prepare)
            return fn
        return deco

    def register_state(self, nstype: str, key: str, reader: Callable, differ: Callable | None = None,
                       **kwargs) -> None:
        """nsshell.core.look.nsstate.register, undone by rollback (the module-level
        `register_state` calls this while a plugin loads)."""
        from .core.look import nsstate
        before = nsstate.spec(nstype, key)   # a replaced reader comes back on rollback
        _register_state(nstype, key, reader, differ, **kwargs)

        def undo() -> None:
            if before is None:
                unregister_state(nstype, key)
            else:
                _register_state(nstype, key, before.reader, before.differ,
                                summary=before.summary, inside=before.inside,
                                prepare=before.prepare)
        self._undo.append(undo)

    def rollback(self) -> None:
        """Remove everything this plugin added (last first)."""
        _REGISTRY.remove_group(self.name)
        for undo in reversed(self._undo):
            try:
                undo()
            except (ValueError, KeyError):
                pass
        self._undo.clear()
        self.commands.clear()


# -- declaring commands at import time -------------------------------------------------------

_CURRENT: PluginAPI | None = None   # the plugin being loaded (set by nsshell.plugin_loader)


def command(name: str | None = None, *, aliases: tuple[str, ...] = (), hidden: bool = False,
            group: str | None = None, changes: str | None = None,
            data: bool | None = None) -> Callable:
    """@command for plugin modules: the same registry as built-ins, grouped under the
    plugin being loaded (or GROUP); changes=TYPE and data as in PluginAPI.command.
    Declared while a plugin loads, it is that plugin's (removed if the load fails)."""
    if _CURRENT is not None and group in (None, _CURRENT.name):
        return _CURRENT.command(name, aliases=aliases, hidden=hidden, changes=changes, data=data)
    loading = _CURRENT
    reg = _REGISTRY.command(name, group=group or "plugin", aliases=aliases, hidden=hidden,
                            data=data, now=loading is None or not loading._deferring)

    def deco(func: Callable) -> Callable:
        target = reg(changes_state(changes)(func) if changes else func)
        if loading is not None:   # another group, but this plugin's all the same
            cname = target.command.name
            loading._undo.append(lambda: _REGISTRY.remove(cname))
        return target
    return deco


def register_state(nstype: str, key: str, reader: Callable, differ: Callable | None = None,
                   **kwargs) -> None:
    """Add a piece of namespace state for `show`/`diff` (nsshell.core.look.nsstate.register);
    called while a plugin loads, it is that plugin's (removed if the load fails)."""
    if _CURRENT is not None:
        _CURRENT.register_state(nstype, key, reader, differ, **kwargs)
    else:
        _register_state(nstype, key, reader, differ, **kwargs)


# -- the host's own namespaces: nothing changes them without --host ----------------------------

def changes_state(nstype: str) -> Callable:
    """Mark a command as changing the state of a namespace of NSTYPE ('net', 'mnt', ...).

    The command must take a `host: bool` flag (keyword-only, so `--host`); before it
    runs, every namespace set among its arguments (directly, or inside a tuple or a
    list, e.g. `REF:IF` endpoints) -- or, when it has none, the current context --
    is checked, and the host's own namespace of NSTYPE is refused unless `--host` was
    given.  "The host's" is decided by namespace identity (nsshell/guard.py), so
    `pid:1`, `net:[INODE]`, /proc/1/ns/net or a set opened from a host process count
    the same as `host`.  This is the one place the rule is enforced for plugins."""
    import functools
    import inspect
    t = nstypes.get(nstype).name

    def deco(func: Callable) -> Callable:
        p = inspect.signature(func).parameters.get("host")
        if p is None or p.kind is not inspect.Parameter.KEYWORD_ONLY or p.default is not False:
            raise TypeError(f"{getattr(func, '__name__', func)} changes {t} namespaces: it must "
                            "take a keyword-only `host: bool = False` flag (--host)")

        @functools.wraps(func)
        def guarded(sh, *args, **kwargs):
            if not kwargs.get("host"):
                for handle, label in _targets(sh, t, list(args) + list(kwargs.values())):
                    refuse_host(sh, handle, False, label)
            return func(sh, *args, **kwargs)
        guarded.changes = t
        return guarded
    return deco


def _targets(sh, t: str, values: list) -> list:
    found: list = []
    sets: list = []

    def walk(v) -> None:
        if isinstance(v, NsSet):
            sets.append(v)
            h = v.handles.get(t)
            if h is not None:
                found.append((h, v.label))
        elif isinstance(v, (tuple, list)):
            for x in v:
                walk(x)
    walk(values)
    if not sets:  # no set named: the command acts in the context
        found.append((sh.context[t], sh.context_names.get(t) or "host"))
    return found


def is_host(sh, handle: Handle) -> bool:
    """Whether HANDLE is one of the host's own namespaces (by identity)."""
    return _guard.is_host(sh, handle)


# -- resources bound to a namespace ---------------------------------------------------------

class HandleCache:
    """Objects tied to one namespace (e.g. a netlink socket opened inside it), made on
    first use by OPEN(handle) and closed by CLOSE(obj) when the last open handle it was
    got through closes (so the cache never keeps a namespace alive after `close`, and an
    older handle on the same namespace -- an unheld one, closed whenever the collector
    gets to it -- never closes the object a newer one is using)."""

    def __init__(self, open: Callable[[Handle], Any], close: Callable[[Any], None]):
        self._open = open
        self._close = close
        self._items: dict[Any, tuple] = {}   # nsid -> (obj, WeakSet of the handles it went to)
        if _CURRENT is not None:   # made while a plugin loads: gone with it if the load fails
            _CURRENT._hook(_CLOSE_HOOKS, self._handle_closing)
        else:
            _CLOSE_HOOKS.add(self._handle_closing)

    def get(self, handle: Handle) -> Any:
        handle.check_usable()
        item = self._items.get(handle.nsid)
        if item is None:
            import weakref
            item = self._items[handle.nsid] = (self._open(handle), weakref.WeakSet())
        item[1].add(handle)
        return item[0]

    def drop(self, handle: Handle) -> None:
        item = self._items.pop(handle.nsid, None)
        if item is not None:
            self._close(item[0])

    def _handle_closing(self, handle: Handle) -> None:
        item = self._items.get(handle.nsid)
        if item is None:
            return
        users = item[1]
        users.discard(handle)
        if all(h.closed for h in list(users)):
            self.drop(handle)

    def clear(self) -> None:
        for obj, _users in self._items.values():
            try:
                self._close(obj)
            except Exception:  # noqa: BLE001
                pass
        self._items.clear()


def resolve_handle(session, ref: NsSet, nstype: str) -> Handle:
    """REF's namespace of NSTYPE; a clear error when the set has none."""
    h = ref.handles.get(nstype)
    if h is None:
        have = " ".join(ref.handles) or "none"
        raise NotFoundError(f"{ref.label} has no {nstype} namespace (it has: {have})",
                            f"create one with `new {nstype}`")
    h.check_usable()
    return h


def __getattr__(name: str):
    # `from nsshell.plugin import rtnl` imports pyroute2's messages: only when asked.
    if name == "rtnl":
        from .core.look import rtnl
        return rtnl
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
