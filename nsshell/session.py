"""Session state: the handles the shell holds, their names, the current context, settings.

References (COMMANDS.md) resolve in the order of REF_ORDER below (the man page
lists it from there): `Session.resolve` tries each step in turn.
"""

from __future__ import annotations

import operator
import os
import _signal
import sys

from . import names, progress
from .hooks import Hooks
from .core.proc import program, spawn
from .core.ns.handle import Handle, NsSet, open_process
from .errors import NotFoundError, UsageError
from .kernel import nstypes
from .kernel.nstypes import NsType

TYPE_CHECKING = False   # typing is not imported to start (tests/test_imports.py)
if TYPE_CHECKING:
    from typing import Callable, Iterable

    from .core.proc.runner import Runner
    from .engine import Engine

    Resolver = Callable[["Session", str], "NsSet | None"]

# Run with every new Session at the end of its __init__ (built-ins and plugins add
# settings and resolvers here; PluginAPI.on_session wraps a plugin's so that none
# raises); see nsshell/plugin.py.
INIT_HOOKS = Hooks("session init")

RESERVED = names.RESERVED     # the one name rule: nsshell/names.py
INODE_REF = r"([a-z]+):\[(\d+)\]"
_CREATOR = f"{__package__}.core.ns.creator"   # the `new` helper's module (drop_helpers)


class Setting:
    def __init__(self, name: str, default, parse: Callable[[str], object], help: str):
        self.name, self.value, self.parse, self.help = name, default, parse, help


def _bool(text: str) -> bool:
    t = text.lower()
    if t in ("on", "true", "yes", "1"):
        return True
    if t in ("off", "false", "no", "0"):
        return False
    raise ValueError("expected on or off")


class Session:
    def __init__(self, *, interactive: bool = False) -> None:
        self.sets: dict[str, NsSet] = {}
        self.host = NsSet("host", open_process("self", origin="host"), origin="host")
        self.context: dict[str, Handle] = dict(self.host.handles)
        self.context_names: dict[str, str] = {t: "host" for t in self.context}
        self.resolvers: list[Resolver] = []
        self.jobs: list[program.Job] = []
        self.last_status = 0
        self.terminal = program.Terminal()
        # progress of long operations: `with session.progress.task(what, total) as t: t.advance()`
        # (nothing is drawn unless the front end puts a terminal reporter here)
        self.progress = progress.NULL
        self._counter = 0
        self.settings: dict[str, Setting] = {}
        # the engine that runs this session's commands (Engine.__init__ calls attach)
        self.engine: Engine | None = None
        # the batch `run` helper (core/proc/runner.py): made by the commands declared
        # runner=True, ended by drop_helpers (the engine calls it before any other command
        # and when a batch ends)
        self.runner: Runner | None = None
        # entries() of the whole context: (its handles, their entries, the handles entered)
        self._entries: tuple | None = None
        self.add_setting("errexit", not interactive, _bool,
                         "stop a batch at the first failing command")
        self.add_setting("root", True, _bool,
                         "become root (if mapped) when entering a user namespace, as nsenter does")
        INIT_HOOKS.run(self)

    def attach(self, engine: "Engine") -> None:
        """ENGINE runs this session's commands from now on."""
        self.engine = engine

    def run_in_helper(self, argv: list[str], env: dict[str, str], cwd: str | None,
                      root: bool, setup, then: list[str] | None = None
                      ) -> tuple[int, "program.Job | None"]:
        """Run ARGV in the context through the batch `run` helper (core/proc/runner.py),
        kept for the next `run` in the same context.  THEN: the program of the `run`
        that comes next (same environment, directory, set-up), which the helper starts
        as soon as this one ends when errexit lets it."""
        from .core.proc import runner
        follow = None if then is None else runner.FollowUp(then, bool(self.get("errexit")))
        self.runner, status, job = runner.run(self.runner, self.entries(), argv, env, cwd,
                                              root, self.terminal.exit_after, setup, follow)
        return status, job

    def keep_standby(self, ready: bool = True) -> None:
        """The REPL, once a prompt is drawn (READY): the next `run`'s process gets ready
        while the line is typed (core/proc/standby.py); when it ends (not READY): gone."""
        if not ready:
            self.terminal.close()
            return
        from .core.proc import standby
        standby.keep_ready(self.terminal)

    def drop_helpers(self, *, keep_runner: bool = False, keep_creator: bool = False,
                     everything: bool = False) -> None:
        """End the long-lived helpers that sit in the context: the batch `run` helper (a
        stopped program it started keeps it, unless EVERYTHING: then those go too) and
        the `new` helper, but those KEEP_* names."""
        if not keep_runner and (self.runner is not None or (everything and self.jobs)):
            from .core.proc import runner
            current, self.runner = self.runner, None
            runner.close(current)
            if everything:
                runner.close_jobs(self.jobs)
        if not keep_creator:
            # not imported yet: no `new` helper can be running (and none is imported for it)
            creator = sys.modules.get(_CREATOR)
            if creator is not None and creator.running():
                creator.drop()

    # -- settings ---------------------------------------------------------------

    def add_setting(self, name: str, default, parse, help: str) -> None:
        self.settings[name] = Setting(name, default, parse, help)

    def get(self, name: str):
        return self.settings[name].value

    # -- names --------------------------------------------------------------------

    def check_new_name(self, name: str) -> str:
        names.check(name)
        if name in self.sets:
            raise ValueError("that name is taken (`close` it or pick another)")
        return name

    def next_name(self) -> str:
        while True:
            self._counter += 1
            name = f"ns{self._counter}"
            if name not in self.sets:
                return name

    def add_set(self, nsset: NsSet) -> NsSet:
        assert nsset.name and nsset.name not in self.sets
        self.sets[nsset.name] = nsset
        for h in nsset.handles.values():
            h.refs += 1
        return nsset

    def rename(self, old: str, new: str) -> None:
        nsset = self.sets.pop(old)
        nsset.name = new
        self.sets[new] = nsset
        for t, n in self.context_names.items():
            if n == old:
                self.context_names[t] = new

    def drop_set(self, name: str, types: Iterable[str] | None = None) -> list[Handle]:
        """Forget set NAME (only its TYPES, when given: the set goes when none is left);
        close the handles nothing else holds; return those closed."""
        nsset = self.sets[name]
        dropped = {t: h for t, h in nsset.handles.items() if types is None or t in types}
        for t in dropped:
            del nsset.handles[t]
        if not nsset.handles:
            del self.sets[name]
        closed = []
        for t, h in dropped.items():
            h.refs -= 1
            if self.context.get(t) is h and self.context_names.get(t) == name:
                self._set_context(t, self.host.handles[t], "host")
            if h.refs <= 0:
                h.close()
                closed.append(h)
        return closed

    # -- the context ----------------------------------------------------------------

    def _set_context(self, t: str, handle: Handle, name: str) -> None:
        old = self.context.get(t)
        handle.refs += 1
        self.context[t] = handle
        self.context_names[t] = name
        if old is not None:
            old.refs -= 1
            if old.refs <= 0 and old not in self.host.handles.values():
                old.close()

    def join(self, nsset: NsSet, types: Iterable[NsType] | None = None) -> list[str]:
        picked = nsset.pick(types) if types else nsset
        for t, h in picked.handles.items():
            h.check_usable()
        name = nsset.name if nsset.name else nsset.label
        for t, h in picked.handles.items():
            self._set_context(t, h, name)
        return list(picked.handles)

    def leave(self, types: Iterable[NsType] | None = None) -> list[str]:
        names = [t.name for t in types] if types else list(self.context)
        for t in names:
            self._set_context(t, self.host.handles[t], "host")
        return names

    def is_host(self, t: str) -> bool:
        h = self.context.get(t)
        if h is None:
            return True
        host = self.host.handles[t]
        return h is host or h.nsid == host.nsid

    def entries(self, types: Iterable[str] | None = None) -> list[spawn.Entry]:
        """What a helper must setns() into to be in the context (only what differs from
        the shell's own namespaces; joining one's own user namespace is EINVAL).

        The whole context's entries are kept for the next call while the context holds
        the very same handles (compared by identity, and held here, so that no other
        handle can take the place of one); each is checked usable on every call."""
        context, host = self.context, self.host.handles
        if types is None:
            handles = tuple(context.values())
            cached = self._entries
            if cached is not None and len(cached[0]) == len(handles) \
                    and all(map(operator.is_, cached[0], handles)):
                for h in cached[2]:
                    h.check_usable()
                return list(cached[1])
        used = []
        out = []
        for t in (types if types is not None else context):
            h = context.get(t)
            if h is not None and h is not host[t] and h.nsid != host[t].nsid:
                out.append(h.entry())
                used.append(h)
        if types is None:
            self._entries = (handles, tuple(out), tuple(used))
        return out

    def uid_map(self) -> list:
        """The uid map of the context's user namespace, as idmap.format_idmap takes it ([]
        when unmapped), read by a helper inside it; the shell's own read directly."""
        from .kernel import idmap
        if self.is_host("user"):
            return idmap.read_map("self", "uid")
        from .core.ns import mapping
        return mapping.read_maps_in_child(self.context["user"].fd)["uid_map"]

    def needs_fork_after(self, types: Iterable[str] | None = None) -> bool:
        wanted = set(types) if types is not None else set(self.context)
        return any(t in wanted and not self.is_host(t) for t in ("pid", "time"))

    def context_label(self) -> str:
        """Short text for the prompt: 'host', 'box', or 'box:net,uts'."""
        by_name: dict[str, list[str]] = {}
        for t in nstypes.NAMES:
            if t in self.context and not self.is_host(t):
                by_name.setdefault(self.context_names.get(t, "?"), []).append(t)
        if not by_name:
            return "host"
        parts = []
        for name, types in by_name.items():
            parts.append(name if len(by_name) == 1 and len(types) >= 1 and
                         all(x in types for x in self._set_types(name)) else
                         f"{name}:{','.join(types)}")
        return " ".join(parts)

    def _set_types(self, name: str) -> list[str]:
        s = self.sets.get(name)
        return list(s.handles) if s else []

    # -- resolving references ----------------------------------------------------------

    def resolve(self, text: str) -> NsSet:
        for step in REF_ORDER:
            found = step.resolve(self, text)
            if found is not None:
                return found
        raise NotFoundError(f"no namespace set named {text!r}",
                            self._names_hint())

    def ref_forms(self) -> list[tuple[str, str]]:
        """(form, one-line description) of every REF form, in the order `resolve` tries
        them, the forms extensions add (persisted names, plugins' schemes) in their place."""
        out = []
        for step in REF_ORDER:
            if step.resolve is RefStep.EXTENSIONS:
                out += [(r.form, r.what) for r in self.resolvers if getattr(r, "form", None)]
            else:
                out.append((step.form, step.what))
        return out

    def _by_name(self, text: str) -> NsSet | None:
        return self.sets.get(text)

    def _by_extension(self, text: str) -> NsSet | None:
        for resolver in self.resolvers:
            found = resolver(self, text)
            if found is not None:
                return found
        return None

    def _by_inode(self, text: str) -> NsSet | None:
        if ":" not in text:
            return None   # (re is imported only for a word that may be one: start-up)
        import re
        m = re.fullmatch(INODE_REF, text)
        if m:
            return self.find_inode(m.group(1), int(m.group(2)))
        if re.fullmatch(r"\w+:\[.*\]?", text):
            raise UsageError(f"{text!r} is not a TYPE:[INODE] reference",
                             "the inode is a number, as lsns and /proc/PID/ns show it: "
                             "net:[4026531840]")
        return None

    def _by_pid(self, text: str) -> NsSet | None:
        return self.open_pid(text) if text.startswith("pid:") or text.isdigit() else None

    def _by_host(self, text: str) -> NsSet | None:
        return self.host if text == "host" else None

    def _by_path(self, text: str) -> NsSet | None:
        return self.open_path(text) if "/" in text else None

    def _names_hint(self) -> str:
        names = sorted(self.sets)
        if names:
            shown = ", ".join(names[:8]) + (" ..." if len(names) > 8 else "")
            return f"known names: {shown}; or use pid:N, host, a path or TYPE:[INODE]"
        return "this session holds no named namespaces yet; create one with `new TYPES`"

    def open_pid(self, text: str) -> NsSet:
        raw = text[4:] if text.startswith("pid:") else text
        if not raw.isdigit() or int(raw) <= 0:
            raise UsageError(f"{text!r} is not a process id",
                             "pid:N takes a process id greater than 0 (pid:1234)")
        pid = int(raw)
        if not os.path.isdir(f"/proc/{pid}"):
            raise NotFoundError(f"no process {pid}", "`ps` or `ls` shows processes")
        try:
            handles = open_process(pid)
        except PermissionError:
            raise NotFoundError(f"cannot open the namespaces of process {pid}: permission denied",
                                "a process's namespaces may be opened by its owner or root "
                                "(ptrace access mode)") from None
        except FileNotFoundError:
            raise NotFoundError(f"process {pid} exited") from None
        return NsSet(None, handles, origin=f"pid:{pid}")

    def open_path(self, path: str, nstype: NsType | None = None) -> NsSet:
        """The namespace file PATH, opened the one safe way (nsfs.open_ns)."""
        from .kernel.nsfs import NotNamespaceError, WrongTypeError
        try:
            h = Handle.open(path, nstype, origin=path)
        except WrongTypeError as e:
            raise UsageError(f"{path} is {e.what}, not a {e.wanted} namespace") from None
        except NotNamespaceError as e:
            raise UsageError(f"{path} is not a namespace file (it is {e.what})",
                             "use /proc/PID/ns/TYPE or a bind mount of one") from None
        except FileNotFoundError:
            raise NotFoundError(f"no file {path}") from None
        except PermissionError:
            raise NotFoundError(f"cannot open {path}: permission denied") from None
        except OSError as e:
            raise NotFoundError(f"cannot open {path}: {e.strerror}") from None
        return NsSet(None, {h.type.name: h}, origin=path)

    def held(self) -> Iterable[tuple[str | None, Handle]]:
        """Every (set name, handle) the session holds, the context's included."""
        for name, s in self.sets.items():
            for h in s.handles.values():
                yield name, h
        for t, h in self.context.items():
            yield self.context_names.get(t), h

    def find_inode(self, typename: str, ino: int) -> NsSet:
        try:
            t = nstypes.get(typename)
        except KeyError:
            raise UsageError(f"unknown namespace type {typename!r}",
                             f"valid: {' '.join(nstypes.NAMES)}") from None
        for _, h in self.held():
            if h.type is t and h.nsid.ino == ino:
                return NsSet(None, {t.name: h}, origin=str(h.nsid))
        from .core.look import discover
        scan = discover.scan((t,))
        found = scan.get(t.name, ino)
        if found is None:
            raise NotFoundError(f"no {t.name} namespace with inode {ino} is reachable",
                                "`ls` lists the namespaces that are")
        try:  # through a process, thread, fd, bind mount, socket, or as the owner or
            fd = discover.open_found(scan, found)  # parent of one of those
        except OSError as e:
            where = f"{e.filename}: " if e.filename else ""
            raise NotFoundError(f"{t.name}:[{ino}] is held ({', '.join(found.held())}) but "
                                f"cannot be opened: {where}{e.strerror}",
                                "`ls` shows how it is held; a bind mount with another mount "
                                "over it cannot be reached by its path") from None
        h = Handle(fd, t, origin=f"{t.name}:[{ino}]")
        return NsSet(None, {t.name: h}, origin=str(h.nsid))

    def ref_candidates(self, prefix: str) -> list[tuple[str, str]]:
        out = [(n, " ".join(s.handles)) for n, s in sorted(self.sets.items()) if n.startswith(prefix)]
        if "host".startswith(prefix):
            out.append(("host", "the shell's own namespaces"))
        for r in self.resolvers:
            names = getattr(r, "candidates", None)
            if names:
                out.extend(c for c in names(self, prefix) if c[0] not in dict(out))
        return out

    def name_of(self, handle: Handle) -> str | None:
        for name, s in self.sets.items():
            if s.handles.get(handle.type.name) is handle:
                return name
        return None

    def close_all(self) -> None:
        self.drop_helpers(everything=True)  # the `run` helper and the programs it holds
        for job in self.jobs:  # stopped programs: hang up and continue them, as bash does
            for sig in (_signal.SIGHUP, _signal.SIGCONT):
                try:
                    os.killpg(job.pid, sig)
                except OSError:
                    pass
            job.forget()
        self.jobs.clear()
        self.terminal.close()   # the standby, and relays still ending
        for name in list(self.sets):
            self.drop_set(name)
        self.leave()
        for h in self.host.handles.values():
            h.close()


class RefStep:
    """One way a REF resolves: FORM as the man page shows it, WHAT in one line, and the
    Session method that returns the set or None (not this form)."""
    EXTENSIONS = Session._by_extension   # the step of session.resolvers (persisted names, ...)

    def __init__(self, form: str, what: str, resolve: Callable[[Session, str], NsSet | None]):
        self.form, self.what, self.resolve = form, what, resolve


# The order in which a REF is resolved (`Session.resolve`; `help`, the man page and
# COMMANDS.md list it from here).  TYPE:[INODE] comes before pid:N: `pid:[4026531836]`
# is a label, not a process id.
REF_ORDER: list[RefStep] = [
    RefStep("NAME", "a session name: a named set holding one handle per type", Session._by_name),
    RefStep("persisted NAME, SCHEME:NAME", "the forms extensions add (the store's persisted "
            "names, plugins' schemes), in the order they were added", Session._by_extension),
    RefStep("TYPE:[INODE]", "a namespace as listings show it (net:[4026532179]); every label "
            "nsshell prints is accepted back", Session._by_inode),
    RefStep("pid:N", "the namespaces of process N (a bare number too)", Session._by_pid),
    RefStep("host", "the namespaces the shell started in", Session._by_host),
    RefStep("PATH", "a namespace file: a bind mount of one, or /proc/PID/ns/TYPE", Session._by_path),
]
