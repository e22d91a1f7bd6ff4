"""The house's layering, read from the source (issue #15).

Every module of nsshell/ and of the first-party plugins (plugins/*/PACKAGE/) is
parsed with ast, and every import is taken, those inside functions included (an
import in a function body runs later, but it ties the two modules all the same);
imports under `if TYPE_CHECKING:` are left out (they never run).  Then:

- every import of the house names a module that exists;
- no circle, neither among module-level imports nor counting function-level ones;
- nsshell/kernel imports nothing of nsshell outside kernel;
- nsshell/core imports no upper module (no session, screen, REPL, command, engine,
  registry, completion, CLI, Python API or plugin module);
- a plugin imports of nsshell only the plugin API, nsshell.plugin;
- no import runs from a lower floor to a higher one (FLOORS below);
- the REPL and the live view reach core only through the session.
"""

from __future__ import annotations

import ast
import functools
import os
import sys
from dataclasses import dataclass


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Floors, lowest first: a module may import its own floor and the ones below.  A name
# stands for that module and everything below it (nsshell.core: the whole wing).
FLOORS: list[tuple[str, tuple[str, ...]]] = [
    ("kernel", ("nsshell.kernel",)),
    # leaves everyone may use; `nsshell` itself loads the API by name on first use
    ("leaves", ("nsshell", "nsshell.errors", "nsshell.results", "nsshell.progress",
                "nsshell.names", "nsshell.hooks", "nsshell.version",
                "nsshell.command_index")),
    ("core", ("nsshell.core",)),
    # the session and what words become; drawing (render, and the `top` view it opens)
    ("model", ("nsshell.session", "nsshell.types", "nsshell.lexer", "nsshell.guard",
               "nsshell.render", "nsshell.tui")),
    ("registry", ("nsshell.registry",)),
    ("engine", ("nsshell.engine", "nsshell.complete", "nsshell.helptext")),
    ("plugin API", ("nsshell.plugin",)),
    ("commands", ("nsshell.commands", "nsshell.plugin_loader", "PLUGINS")),
    ("repl", ("nsshell.repl",)),
    ("entry", ("nsshell.api", "nsshell.cli")),
    ("tools", ("nsshell.docgen", "nsshell.__main__", "nsshell.pytest_plugin")),
]

CORE_MAY_NOT = ("nsshell.session", "nsshell.render", "nsshell.repl", "nsshell.tui",
                "nsshell.commands", "nsshell.engine", "nsshell.registry", "nsshell.complete",
                "nsshell.cli", "nsshell.api", "nsshell.plugin", "nsshell.plugin_loader",
                "nsshell.types", "nsshell.helptext", "nsshell.docgen", "nsshell.lexer",
                "nsshell.guard", "nsshell.pytest_plugin")



@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    path: str
    line: int
    in_function: bool

    def __str__(self) -> str:
        where = "in a function" if self.in_function else "at module level"
        return f"{self.src} -> {self.dst} ({os.path.relpath(self.path, ROOT)}:{self.line}, {where})"


@functools.cache
def modules() -> dict[str, tuple[str, bool]]:
    """Dotted name -> (path, is a package) for nsshell and each plugin package."""
    tops = [(os.path.join(ROOT, "nsshell"), "nsshell")]
    pdir = os.path.join(ROOT, "plugins")
    for dist in sorted(os.listdir(pdir)):
        for pkg in sorted(os.listdir(os.path.join(pdir, dist))):
            if os.path.isfile(os.path.join(pdir, dist, pkg, "__init__.py")):
                tops.append((os.path.join(pdir, dist, pkg), pkg))
    found: dict[str, tuple[str, bool]] = {}
    for base, top in tops:
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            rel = os.path.relpath(dirpath, base)
            parts = [top] + ([] if rel == "." else rel.split(os.sep))
            for f in sorted(filenames):
                if f.endswith(".py"):
                    name = ".".join(parts if f == "__init__.py" else parts + [f[:-3]])
                    found[name] = (os.path.join(dirpath, f), f == "__init__.py")
    return found


@functools.cache
def plugin_packages() -> frozenset[str]:
    return frozenset(m for m in modules() if "." not in m and m != "nsshell")


def _top(name: str) -> str:
    return name.split(".")[0]


def _is_house(name: str) -> bool:
    return _top(name) == "nsshell" or _top(name) in plugin_packages()


def _under(name: str, prefix: str) -> bool:
    if prefix == "PLUGINS":
        return _top(name) in plugin_packages()
    return name == prefix or name.startswith(prefix + ".")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _raw_imports(name: str) -> list[tuple[str, list[str], int, bool]]:
    """(base module, names taken from it or [] for `import X`, line, in a function)."""
    path, is_pkg = modules()[name]
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    package = name if is_pkg else name.rpartition(".")[0]
    out: list[tuple[str, list[str], int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for other in child.orelse:
                    visit(other, in_function)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    out.append((alias.name, [], child.lineno, in_function))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    parts = package.split(".")
                    parts = parts[:len(parts) - child.level + 1]
                    base = ".".join(parts + ([child.module] if child.module else []))
                else:
                    base = child.module or ""
                out.append((base, [a.name for a in child.names], child.lineno, in_function))
            visit(child, in_function or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))
    visit(tree, False)
    return out


@functools.cache
def edges() -> tuple[Edge, ...]:
    """Every import of a module of the house by a module of the house."""
    mods = modules()
    out = []
    for name, (path, _) in mods.items():
        for base, names, line, in_function in _raw_imports(name):
            if not _is_house(base):
                continue
            # `from P import m` imports the module P.m when there is one, else names of P
            targets = [f"{base}.{n}" if f"{base}.{n}" in mods else base for n in names] or [base]
            for t in dict.fromkeys(targets):
                if t != name:
                    out.append(Edge(name, t, path, line, in_function))
    return tuple(out)


def circles(*, function_level: bool) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {m: set() for m in modules()}
    for e in edges():
        if e.dst in graph and (function_level or not e.in_function):
            graph[e.src].add(e.dst)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(frozenset(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def _describe(comp: frozenset[str]) -> str:
    ties = [str(e) for e in edges() if e.src in comp and e.dst in comp]
    return " <-> ".join(sorted(comp)) + ":\n    " + "\n    ".join(ties)


def floor_of(name: str) -> int:
    best, where = -1, None
    for i, (_, prefixes) in enumerate(FLOORS):
        for p in prefixes:
            length = 10**6 if p == "PLUGINS" else len(p)
            hit = name == p if p == "nsshell" else _under(name, p)   # the package alone
            if hit and length > best:
                best, where = length, i
    assert where is not None, f"{name} is on no floor: add it to FLOORS in {__file__}"
    return where


# -- the checks ---------------------------------------------------------------------------------

def test_the_house_is_read():
    # the reader sees what it must: the wings, the plugins, and imports inside functions
    mods = modules()
    assert {"nsshell.kernel.syscalls", "nsshell.core.proc.spawn", "nsshell.plugin",
            "nsshell.plugin_loader", "nsshell_net.conn", "nsshell_mount.commands",
            "nsshell_containers"} <= set(mods)
    assert any(e.in_function for e in edges()) and any(not e.in_function for e in edges())
    assert any(e.src == "nsshell.plugin_loader" and e.dst == "nsshell.plugin"
               and not e.in_function for e in edges())
    assert any(e.src == "nsshell_mount" and e.dst == "nsshell_mount.commands"
               and e.in_function for e in edges())


def test_every_import_of_the_house_names_a_module_that_exists():
    mods = modules()
    missing = []
    for name in mods:
        for base, _names, line, _fn in _raw_imports(name):
            if _is_house(base) and base not in mods:
                missing.append(f"{name}:{line}: {base}")
    assert missing == [], "imports of modules that do not exist:\n" + "\n".join(missing)


def test_no_circle_among_module_level_imports():
    found = circles(function_level=False)
    assert found == [], "import circles:\n" + "\n".join(_describe(c) for c in found)


def test_no_circle_counting_imports_inside_functions():
    found = circles(function_level=True)
    assert found == [], "import circles:\n" + "\n".join(_describe(c) for c in found)


def test_kernel_imports_nothing_of_nsshell_outside_kernel():
    bad = [str(e) for e in edges()
           if _under(e.src, "nsshell.kernel") and not _under(e.dst, "nsshell.kernel")]
    assert bad == [], "\n".join(bad)


def test_core_imports_no_upper_module():
    bad = [str(e) for e in edges()
           if _under(e.src, "nsshell.core") and any(_under(e.dst, u) for u in CORE_MAY_NOT)]
    assert bad == [], "\n".join(bad)


def test_plugins_import_of_nsshell_only_the_plugin_api():
    bad = [str(e) for e in edges()
           if _top(e.src) in plugin_packages() and _top(e.dst) != _top(e.src)
           and e.dst != "nsshell.plugin"]
    assert bad == [], "\n".join(bad)


def test_the_plugin_api_does_not_import_its_loader():
    bad = [str(e) for e in edges() if e.src == "nsshell.plugin" and e.dst == "nsshell.plugin_loader"]
    assert bad == [], "\n".join(bad)


def test_every_module_is_on_a_floor():
    lost = []
    for name in modules():
        try:
            floor_of(name)
        except AssertionError:
            lost.append(name)
    assert lost == [], f"modules on no floor (add them to FLOORS in {__file__}): {lost}"


def test_no_import_runs_from_a_lower_floor_to_a_higher_one():
    bad = [f"{e} (floor {FLOORS[floor_of(e.src)][0]} -> {FLOORS[floor_of(e.dst)][0]})"
           for e in edges() if floor_of(e.dst) > floor_of(e.src)]
    assert bad == [], "\n".join(bad)


def test_repl_and_tui_reach_core_only_through_the_session():
    bad = [str(e) for e in edges()
           if (_under(e.src, "nsshell.repl") or _under(e.src, "nsshell.tui"))
           and _under(e.dst, "nsshell.core")]
    assert bad == [], "\n".join(bad)


# -- the reader itself, on a small house made for it ----------------------------------------------

def test_the_reader_finds_a_circle_through_a_function_level_import(tmp_path, monkeypatch):
    pkg = tmp_path / "nsshell"
    (pkg / "kernel").mkdir(parents=True)
    (tmp_path / "plugins").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "kernel" / "__init__.py").write_text("")
    (pkg / "kernel" / "a.py").write_text("from . import b\n")
    (pkg / "kernel" / "b.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ..session import S\n"
        "def f():\n    from .a import x\n")
    (pkg / "session.py").write_text("from .kernel import a\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", str(tmp_path))
    for f in (modules, plugin_packages, edges):
        f.cache_clear()
    try:
        assert circles(function_level=False) == []
        assert circles(function_level=True) == [frozenset({"nsshell.kernel.a", "nsshell.kernel.b"})]
        # TYPE_CHECKING imports never run: kernel -> session is not seen
        assert not any(e.dst == "nsshell.session" for e in edges())
        assert floor_of("nsshell.session") > floor_of("nsshell.kernel.a")
    finally:
        for f in (modules, plugin_packages, edges):
            f.cache_clear()
