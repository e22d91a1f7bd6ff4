"""The plugin loader: entry points of group `nsshell.plugins`, then the user plugin folder.

Start-up must stay fast, so entry points are found by reading the
`entry_points.txt` of the distributions on sys.path directly (importlib.metadata
costs ~30 ms to import); plugins import only what registering needs.

A plugin that fails to import or register gives ONE warning line on stderr and
is recorded with the reason; the shell starts anyway.  `plugins` lists both.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from .kernel.values import Value

from . import plugin as api_mod   # the API this loader hands out; it never imports the loader

GROUP = "nsshell.plugins"         # a public contract: plugins' pyproject.toml name it


class PluginInfo(Value):
    name: str
    source: str                 # 'entry point DIST (module)' or the file's path
    status: str = "loaded"      # 'loaded' or 'failed'
    reason: str = ""
    commands: list[str]
    module: object = None
    api: object = None

    _fields = ("name", "source", "status", "reason", "commands", "module", "api")

    def __init__(self, name, source, status="loaded", reason="", commands=None, module=None,
                 api=None) -> None:
        self.name = name
        self.source = source
        self.status = status
        self.reason = reason
        self.commands = [] if commands is None else commands
        self.module = module
        self.api = api


PLUGINS: dict[str, PluginInfo] = {}
FAILED: list[PluginInfo] = []
_STATE = {"loaded": False}


def warn(name: str, reason: str) -> None:
    """The one line a plugin's failure gives (at load, or later through its PluginAPI)."""
    sys.stderr.write(f"nsshell: plugin {name}: {reason}\n")
    sys.stderr.flush()


def loaded() -> bool:
    """Whether load_all ran in this process (False with --no-plugins)."""
    return _STATE["loaded"]


def user_dir() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "nsshell", "plugins")


# -- finding entry points cheaply -----------------------------------------------------------

def entry_points() -> list[tuple[str, str, str]]:
    """(name, 'module[:attr]', distribution) for group nsshell.plugins, first on sys.path wins."""
    found: list[tuple[str, str, str]] = []
    seen: set[str] = set()
    for d in sys.path:
        if not d or not os.path.isdir(d):
            continue
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for n in sorted(names):
            if not (n.endswith(".dist-info") or n.endswith(".egg-info")):
                continue
            path = os.path.join(d, n, "entry_points.txt")
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
            except OSError:
                continue
            if GROUP not in text:
                continue
            dist = n.rsplit(".", 1)[0].split("-")[0]
            for name, value in _parse_group(text):
                if name not in seen:
                    seen.add(name)
                    found.append((name, value, dist))
    return found


def _parse_group(text: str) -> list[tuple[str, str]]:
    out, inside = [], False
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            inside = line == f"[{GROUP}]"
            continue
        if inside and "=" in line:
            name, _, value = line.partition("=")
            value = value.split("[", 1)[0].strip()  # drop extras
            out.append((name.strip(), value))
    return out


# -- loading ---------------------------------------------------------------------------------

def _import(module: str):
    """importlib.import_module(MODULE), without importing importlib (start-up)."""
    __import__(module)
    return sys.modules[module]


def load_all(*, entry_points_too: bool = True, folder: str | None = None) -> dict[str, PluginInfo]:
    """Load every plugin once per process; returns the loaded ones by name."""
    if _STATE["loaded"]:
        return PLUGINS
    _STATE["loaded"] = True
    if entry_points_too:
        for name, value, dist in entry_points():
            module, _, attr = value.partition(":")
            load(name, f"entry point {dist} ({value})",
                 lambda module=module: _import(module), attr.strip())
    for name, path, why, opened in user_plugins(folder):
        if why:
            _fail(PluginInfo(name, path), why)
            continue
        info = load(name, path, lambda name=name, opened=opened: _import_opened(name, opened))
        if info.status != "loaded" and opened.dirfd is not None:
            if f"nsshell_userplugin_{name}" in _FINDER.dirs:
                _FINDER.forget(f"nsshell_userplugin_{name}")
            else:
                os.close(opened.dirfd)
    return PLUGINS


# -- the user folder, read only through checked fds ------------------------------------------
#
# Root may run with HOME or XDG_CONFIG_HOME pointing into another user's home (sudo -E,
# su without -).  So the folder is reached from / one component at a time with
# O_NOFOLLOW, each directory checked on the fd that was opened (owned by root, or by the
# caller when the caller is not root; not writable by group or others, except a sticky
# ancestor such as /tmp), and every file is read from the fd that was checked and
# executed from that text: nothing is looked up by path again, so nothing can be
# swapped in between the check and the import.  No symlink is followed anywhere.

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY


class Untrusted(Exception):
    """The reason a plugin folder or file is not loaded."""


def _owner_ok(uid: int) -> bool:
    me = os.geteuid()
    return uid == 0 or uid == me


def _check(fd: int, shown: str, *, ancestor: bool = False) -> os.stat_result:
    st = os.fstat(fd)
    if not _owner_ok(st.st_uid):
        who = "root" if os.geteuid() == 0 else "you (or root)"
        raise Untrusted(f"not loaded: {shown} belongs to uid {st.st_uid}, not to {who}")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not (ancestor and st.st_mode & stat.S_ISVTX):
        raise Untrusted(f"not loaded: {shown} is writable by others")
    return st


def _symlink_reason(shown: str) -> str:
    return (f"not loaded: {shown} is a symbolic link (plugins are never loaded through "
            "symlinks); hint: point XDG_CONFIG_HOME at the real folder")


def _open_at(dfd: int, name: str, shown: str, flags: int) -> int:
    """NAME in DFD with FLAGS (O_NOFOLLOW); Untrusted when it is a symlink."""
    try:
        return os.open(name, flags, dir_fd=dfd)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR, errno.EISDIR):
            try:
                if stat.S_ISLNK(os.stat(name, dir_fd=dfd, follow_symlinks=False).st_mode):
                    raise Untrusted(_symlink_reason(shown)) from None
            except OSError:
                pass
        raise


def _open_folder(path: str) -> int:
    """An fd on the plugin folder PATH, every component from / checked (Untrusted, or
    OSError when it is not there)."""
    path = os.path.abspath(path)
    fd = os.open("/", _DIR_FLAGS)
    try:
        _check(fd, "/", ancestor=True)
        parts = [p for p in path.split("/") if p]
        done = ""
        for i, comp in enumerate(parts):
            done += "/" + comp
            nxt = _open_at(fd, comp, done, _DIR_FLAGS)
            os.close(fd)
            fd = nxt
            _check(fd, done, ancestor=i < len(parts) - 1)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _read_file(dfd: int, name: str, shown: str) -> bytes:
    """The text of regular file NAME in the checked folder DFD, read from the checked fd."""
    fd = _open_at(dfd, name, shown, _FILE_FLAGS)
    try:
        st = _check(fd, shown)
        if not stat.S_ISREG(st.st_mode):
            raise Untrusted(f"not loaded: {shown} is not a regular file")
        chunks = []
        while True:
            b = os.read(fd, 1 << 16)
            if not b:
                return b"".join(chunks)
            chunks.append(b)
    finally:
        os.close(fd)


class _Opened(Value):
    """A user plugin as checked: its source, and for a package its folder's fd."""
    path: str
    source: bytes
    dirfd: int | None = None

    _fields = ("path", "source", "dirfd")

    def __init__(self, path, source, dirfd=None) -> None:
        self.path = path
        self.source = source
        self.dirfd = dirfd


def _open_package(dfd: int, name: str, shown: str) -> _Opened | None:
    """Package NAME (a folder with __init__.py) in DFD, checked; None if it is not one."""
    try:
        pfd = _open_at(dfd, name, shown, _DIR_FLAGS)
    except OSError:
        return None
    try:
        _check(pfd, shown)
        try:
            source = _read_file(pfd, "__init__.py", f"{shown}/__init__.py")
        except FileNotFoundError:
            os.close(pfd)
            return None
        return _Opened(shown, source, pfd)
    except BaseException:
        os.close(pfd)
        raise


def user_plugins(folder: str | None = None) -> list[tuple[str, str, str, _Opened | None]]:
    """(name, path, reason to refuse or '', what was read) for the *.py files and packages
    of the folder."""
    folder = folder or user_dir()
    try:
        dfd = _open_folder(folder)
    except Untrusted as e:
        return _refused(folder, str(e))
    except OSError:
        return []
    out = []
    try:
        names = sorted(os.listdir(dfd))
        for n in names:
            if n.startswith((".", "_")):
                continue
            path = os.path.join(folder, n)
            try:
                if n.endswith(".py"):
                    try:
                        st = os.stat(n, dir_fd=dfd, follow_symlinks=False)
                    except OSError:
                        continue
                    if stat.S_ISDIR(st.st_mode):
                        continue
                    name = n[:-3]
                    opened = _Opened(path, _read_file(dfd, n, path))
                else:
                    name = n
                    opened = _open_package(dfd, n, path)
                    if opened is None:
                        continue
            except Untrusted as e:
                out.append((n[:-3] if n.endswith(".py") else n, path, str(e), None))
                continue
            except OSError as e:
                out.append((n[:-3] if n.endswith(".py") else n, path,
                            f"cannot read {path}: {e.strerror}", None))
                continue
            out.append((name, path, "", opened))
    finally:
        os.close(dfd)
    return out


def _refused(folder: str, reason: str) -> list[tuple[str, str, str, None]]:
    """The plugins an untrusted FOLDER holds, each refused with REASON (listed only to say
    so: nothing in it is read)."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    out = []
    for n in names:
        if n.startswith((".", "_")):
            continue
        path = os.path.join(folder, n)
        if n.endswith(".py"):
            out.append((n[:-3], path, reason, None))
        elif os.path.isdir(path):
            out.append((n, path, reason, None))
    return out


class _Loader:
    """Runs source that was read from a checked fd (never read again from its path)."""

    def __init__(self, source: bytes, filename: str):
        self.source, self.filename = source, filename

    def create_module(self, spec):
        return None

    def exec_module(self, module) -> None:
        exec(compile(self.source, self.filename, "exec", dont_inherit=True), module.__dict__)


class _PackageFinder:
    """Finds the submodules of user plugin packages in their checked folders (by fd)."""

    def __init__(self) -> None:
        self.dirs: dict[str, tuple[int, str]] = {}

    def forget(self, modname: str | None = None) -> None:
        """Close the folder fds of package MODNAME and its sub-packages (all when None)."""
        for name in list(self.dirs):
            if modname is None or name == modname or name.startswith(modname + "."):
                os.close(self.dirs.pop(name)[0])

    def find_spec(self, fullname: str, path=None, target=None):
        parent, _, leaf = fullname.rpartition(".")
        where = self.dirs.get(parent)
        if where is None:
            return None
        dfd, dpath = where
        shown = f"{dpath}/{leaf}"
        try:
            try:
                return _spec(fullname, _Opened(shown + ".py", _read_file(dfd, leaf + ".py",
                                                                         shown + ".py")))
            except FileNotFoundError:
                pass
            opened = _open_package(dfd, leaf, shown)
        except Untrusted as e:
            raise ImportError(str(e), name=fullname) from None
        except OSError:
            return None
        return None if opened is None else _spec(fullname, opened)


_FINDER = _PackageFinder()


def _spec(modname: str, opened: _Opened):
    from importlib.machinery import ModuleSpec
    package = opened.dirfd is not None
    origin = f"{opened.path}/__init__.py" if package else opened.path
    spec = ModuleSpec(modname, _Loader(opened.source, origin), origin=origin, is_package=package)
    spec.has_location = True
    if package:
        if _FINDER not in sys.meta_path:
            sys.meta_path.insert(0, _FINDER)
        _FINDER.dirs[modname] = (opened.dirfd, opened.path)
    return spec


def _import_opened(name: str, opened: _Opened):
    import importlib.util   # (only for a user plugin: start-up does not pay for it)
    modname = f"nsshell_userplugin_{name}"
    spec = _spec(modname, opened)
    module = importlib.util.module_from_spec(spec)
    sys.modules[modname] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(modname, None)
        raise
    return module


def load(name: str, source: str, importer, attr: str = "") -> PluginInfo:
    """Import and register one plugin; on any failure undo what it added and warn once."""
    info = PluginInfo(name, source)
    if name in PLUGINS:
        return _fail(info, f"a plugin named {name!r} is already loaded from {PLUGINS[name].source}")
    if not _valid_name(name):
        return _fail(info, "a plugin name is letters, digits, _ and - (starting with a letter)")
    api = api_mod.PluginAPI(name, warn=warn)
    previous = api_mod._CURRENT
    api_mod._CURRENT = api
    try:
        module = importer()
        target = module
        for part in filter(None, attr.split(".")):
            target = getattr(target, part)
        register = target if callable(target) and attr else getattr(target, "register", None)
        if register is not None:
            register(api)
        if not api.commands and register is None:
            raise ImportError("it has no register(api) function and declares no commands")
    except BaseException as e:  # noqa: BLE001 - SystemExit from a plugin must not end the shell
        api.rollback()
        if isinstance(e, KeyboardInterrupt):
            raise
        return _fail(info, _reason(e))
    finally:
        api_mod._CURRENT = previous
    info.commands = list(api.commands)
    info.module, info.api = module, api
    PLUGINS[name] = info
    return info


def _valid_name(name: str) -> bool:
    return bool(name) and name[0].isalpha() and all(c.isalnum() or c in "_-" for c in name)


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    where = ""
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None and not isinstance(e, (ImportError, ValueError)):
        where = f" ({os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno})"
    return f"{type(e).__name__}: {text}{where}" if text else f"{type(e).__name__}{where}"


def _fail(info: PluginInfo, reason: str) -> PluginInfo:
    info.status, info.reason = "failed", reason
    FAILED.append(info)
    warn(info.name, f"not loaded: {reason}" if not reason.startswith("not loaded") else reason)
    return info


def reset() -> None:
    """Unload every plugin (tests)."""
    for info in PLUGINS.values():
        info.api.rollback()
    PLUGINS.clear()
    FAILED.clear()
    _FINDER.forget()
    _STATE["loaded"] = False
