"""The plugin loader: entry points of group `nsshell.plugins`, then the user plugin folder.

Start-up must stay fast, so entry points are found by reading the
`entry_points.txt` of the distributions on sys.path directly (importlib.metadata
costs ~30 ms to import); plugins import only what registering needs.

A plugin that fails to import or register gives ONE warning line on stderr and
is recorded with the reason; the shell starts anyway.  `plugins` lists both.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import stat
import sys
from dataclasses import dataclass, field

GROUP = "nsshell.plugins"


@dataclass
class PluginInfo:
    name: str
    source: str                 # 'entry point DIST (module)' or the file's path
    status: str = "loaded"      # 'loaded' or 'failed'
    reason: str = ""
    commands: list[str] = field(default_factory=list)
    module: object = None
    api: object = None


PLUGINS: dict[str, PluginInfo] = {}
FAILED: list[PluginInfo] = []
_STATE = {"loaded": False}


def warn(name: str, reason: str) -> None:
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

def load_all(*, entry_points_too: bool = True, folder: str | None = None) -> dict[str, PluginInfo]:
    """Load every plugin once per process; returns the loaded ones by name."""
    if _STATE["loaded"]:
        return PLUGINS
    _STATE["loaded"] = True
    if entry_points_too:
        for name, value, dist in entry_points():
            module, _, attr = value.partition(":")
            load(name, f"entry point {dist} ({value})",
                 lambda module=module: importlib.import_module(module), attr.strip())
    for name, path, why in user_plugins(folder):
        if why:
            _fail(PluginInfo(name, path), why)
            continue
        load(name, path, lambda name=name, path=path: _import_file(name, path))
    return PLUGINS


def user_plugins(folder: str | None = None) -> list[tuple[str, str, str]]:
    """(name, path, reason to refuse or '') for the *.py files and packages of the folder."""
    folder = folder or user_dir()
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    out = []
    for n in names:
        path = os.path.join(folder, n)
        if n.startswith((".", "_")):
            continue
        if n.endswith(".py") and os.path.isfile(path):
            name = n[:-3]
        elif os.path.isfile(os.path.join(path, "__init__.py")):
            name = n
        else:
            continue
        out.append((name, path, _unsafe(path, folder)))
    return out


def _unsafe(path: str, folder: str) -> str:
    """A reason not to run PATH: owned by someone else, or writable by others."""
    me = os.geteuid()
    for p in (folder, path):
        try:
            st = os.stat(p)
        except OSError as e:
            return f"cannot read {p}: {e.strerror}"
        if st.st_uid not in (me, 0):
            return f"not loaded: {p} belongs to uid {st.st_uid}, not to you"
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return f"not loaded: {p} is writable by others"
    return ""


def _import_file(name: str, path: str):
    modname = f"nsshell_userplugin_{name}"
    if os.path.isdir(path):
        spec = importlib.util.spec_from_file_location(
            modname, os.path.join(path, "__init__.py"), submodule_search_locations=[path])
    else:
        spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
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
    from . import plugin as api_mod
    info = PluginInfo(name, source)
    if name in PLUGINS:
        return _fail(info, f"a plugin named {name!r} is already loaded from {PLUGINS[name].source}")
    if not _valid_name(name):
        return _fail(info, "a plugin name is letters, digits, _ and - (starting with a letter)")
    api = api_mod.PluginAPI(name)
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
    _STATE["loaded"] = False
