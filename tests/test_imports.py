"""Start-up regression checks that hold on a noisy machine: which modules a batch imports.

No wall times here (bench/ measures those): a batch that draws no table on a
terminal, opens no netlink socket and reads no process table must not pay for
rich, prompt_toolkit, pyroute2 or psutil, and nothing may run a subprocess
(ctypes.util.find_library runs `ldconfig -p`) just to start.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

HEAVY = ("prompt_toolkit", "rich", "pyroute2", "psutil")

# (names the annotations of a command declared below are evaluated with, as a plugin's)
from nsshell.plugin import Annotated, Word  # noqa: E402


def imported(*args: str, env_extra: dict[str, str] | None = None) -> set[str]:
    """Every module the real CLI imports for ARGS (python -X importtime, stderr)."""
    env = dict(os.environ, NO_COLOR="1", **(env_extra or {}))
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "nsshell", *args],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    mods = set()
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+\d+ \|\s*(\S+)", line)
        if m:
            mods.add(m.group(1))
    assert "nsshell.cli" in mods, "importtime output not understood"
    return mods


def heavy(mods: set[str]) -> list[str]:
    return sorted(m for m in mods if m.split(".")[0] in HEAVY)


@pytest.mark.parametrize("args", [
    ("-c", "ctx"),
    ("--json", "-c", "ctx"),
    ("-c", "handles; help new"),
    ("-c", "new net; run true"),
    ("-c", "new user+mnt+uts; hostname box; run true"),
], ids=lambda a: " ".join(a))
def test_a_plain_batch_imports_no_heavy_library(args):
    mods = imported(*args)
    assert heavy(mods) == []


def test_the_interactive_parts_are_not_loaded_for_a_batch():
    mods = imported("-c", "ctx")
    assert not any(m.startswith("nsshell.repl") for m in mods)


def test_libc_is_found_without_a_subprocess():
    # ctypes.util.find_library("c") runs `ldconfig -p`: several ms of every start-up.
    mods = imported("-c", "ctx")
    assert "ctypes.util" not in mods
    assert "subprocess" not in mods


def test_a_batch_that_forks_no_helper_loads_no_pickle():
    # pickle is for talking to helpers: `ctx` and `handles` start none.
    assert {"pickle", "_pickle"} & imported("-c", "ctx; handles") == set()


def test_talking_to_helpers_loads_neither_the_pickle_nor_the_socket_module():
    # The helpers' channel pickles with the built-in _pickle and makes its socket pairs
    # with _socket: the pickle module pulls re (~3 ms), socket its enums and selectors
    # (~3 ms), on the path of every batch that creates, maps or runs (the shell and
    # every child of it, a standby and the run helper included).
    mods = imported("-c", "new user+mnt+pid+net+uts as imh --no-join; map root --ns imh; "
                    "join imh; run true; run true; new ipc; close imh")
    assert "_pickle" in mods, "no helper was talked to: the test does not test"
    assert {"pickle", "socket", "selectors", "re"} & mods == set()


def test_rich_is_loaded_only_to_draw_on_a_terminal():
    # The same command, drawing on a terminal, does use rich: the check above can fail.
    from conftest import run_on_a_terminal
    code = ("import sys; sys.argv=['nsshell','-c','ctx']; from nsshell.cli import main; "
            "main(); print('RICH' if 'rich' in sys.modules else 'PLAIN')")
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | {"TERM": "xterm"}
    _, out = run_on_a_terminal([sys.executable, "-c", code], env)
    assert "RICH" in out, out[-500:]


def test_a_net_batch_loads_pyroute2s_messages_not_the_whole_package():
    # pyroute2's package __init__ imports every family it has (~100 ms): the net
    # plugin loads only the rtnetlink message classes (nsshell/core/look/rtnl.py).
    mods = imported("-c", "new net; net up ns1 lo; net ls ns1")
    assert "pyroute2.netlink.rtnl.ifinfmsg" in mods
    whole = {"asyncio", "pyroute2.ndb.main", "pyroute2.ipdb", "pyroute2.iproute",
             "pyroute2.conntrack", "sqlite3"}
    assert whole & mods == set()


def test_pyroute2_stays_whole_for_other_code_after_the_lean_load():
    # A plugin of someone else's in the same process still gets the real package.
    code = ("from nsshell.core.look.rtnl import load_pyroute2; load_pyroute2()\n"
            "from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg\n"
            "import pyroute2\n"
            "assert 'pyroute2.ipdb' not in __import__('sys').modules\n"
            "from pyroute2 import IPRoute, IPRSocket\n"
            "from pyroute2 import config\n"
            "print(IPRoute.__name__, IPRSocket.__name__, pyroute2.__version__, config.__name__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[:2] == ["IPRoute", "IPRSocket"]
    assert out.stdout.split()[3] == "pyroute2.config"


def test_a_batch_imports_only_the_command_modules_it_uses():
    # The registry knows the built-ins from nsshell/command_index.py and imports a
    # command's module on its first use.  What a module adds to the session from the
    # start (run's settings, persisted names) is in a light module of its own (EAGER),
    # so no command module is imported for it.
    from nsshell import command_index
    mods = imported("-c", "ctx")
    builtin = set(command_index.COMMANDS.values())
    assert builtin & set(command_index.EAGER) == set()
    assert set(command_index.EAGER) <= mods
    assert builtin & mods == {"nsshell.commands.context"}
    mods = imported("-c", "ctx; handles; help new")
    assert builtin & mods == {"nsshell.commands.context", "nsshell.commands.handles",
                              "nsshell.commands.shell"}


def test_a_batch_does_not_build_the_stdlibs_enums_and_wrappers():
    # The signal module builds enums of every signal (enum, and with it functools and
    # collections: ~4 ms of every start-up; here runpy, for -m, loads those two anyway):
    # nsshell uses the built-in _signal, whose numbers and handlers are plain ints.
    # weakref: _weakref's refs are enough.
    mods = imported("-c", "ctx")
    assert {"signal", "enum", "weakref"} & mods == set()
    mods = imported("-c", "new user+pid+net as imq --no-join; map root --ns imq; join imq; "
                    "run true; close imq")
    assert {"signal", "enum", "weakref"} & mods == set()


def test_an_ordinary_command_line_is_read_without_argparse():
    # argparse's help formatter imports shutil (and with it bz2, lzma, fnmatch): ~5 ms.
    for args in (("-c", "ctx"), ("--json", "-k", "-c", "ctx")):
        mods = imported(*args)
        assert {"argparse", "shutil", "bz2", "lzma"} & mods == set(), args


def test_import_nsshell_is_cheap():
    # `import nsshell` (the version, the lazy API names) pulls in no typing, re or enum.
    code = "import sys, nsshell; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    assert {"typing", "re", "enum", "dataclasses", "argparse"} & set(out) == set()


# -- what the start of a batch builds: no dataclasses, no signatures, no typing -------------

def parent_modules(*args: str) -> set[str]:
    """The modules the shell process itself holds after running ARGS (its helpers'
    imports, which `-X importtime` mixes in, are not counted)."""
    code = ("import sys; sys.argv = ['nsshell', *sys.argv[1:]]\n"
            "from nsshell.cli import main\n"
            "rc = main()\n"
            "print('MODULES', ' '.join(sorted(sys.modules)))\n"
            "sys.exit(rc)\n")
    env = dict(os.environ, NO_COLOR="1")
    proc = subprocess.run([sys.executable, "-c", code, *args], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("MODULES "))
    return set(line.split()[1:])


# dataclasses (with inspect, ast, dis, tokenize), typing and argparse: each costs
# milliseconds of every start; nothing on a batch's path may bring them back.  (The
# batch `run` helper imports traceback, with tokenize, before it forks: runner.py.)
BUILDERS = {"dataclasses", "inspect", "typing", "ast", "dis", "argparse"}


@pytest.mark.parametrize("args", [
    ("-c", "ctx"),
    ("--json", "-c", "ctx"),
    ("-c", "new net as s_imp; run true; close s_imp"),
    ("-c", "new user+mnt+uts; hostname s-imp; run true"),
], ids=lambda a: " ".join(a))
def test_a_batch_builds_no_dataclass_and_reads_no_signature(args):
    assert parent_modules(*args) & BUILDERS == set()


def test_ctx_loads_no_plugin_command_module_and_no_re():
    mods = parent_modules("-c", "ctx")
    assert {"nsshell_net", "nsshell_mount", "nsshell_containers"} <= mods  # loaded, but:
    assert {"nsshell_net.commands", "nsshell_net.graph", "nsshell_mount.commands"} & mods == set()
    assert {"nsshell.commands.run", "nsshell.commands.persist", "nsshell.core.store.persist",
            "re", "tokenize", "importlib", "importlib.util"} & mods == set()


def test_a_plugin_command_module_is_imported_on_first_use():
    mods = parent_modules("-c", "mount ls --json")
    assert "nsshell_mount.commands" in mods
    assert {"nsshell_net.commands", "nsshell_net.graph"} & mods == set()


FIRST_PARTY = ("net", "mount", "containers")


def test_first_party_plugins_name_every_command_they_declare():
    # api.commands_in lists a module's commands before it is imported: the list must be
    # exactly what the module declares, in order (`plugins` shows it; lookups use it).
    code = ("import json\n"
            "from nsshell import plugin_loader as loader\n"
            "from nsshell.registry import REGISTRY\n"
            "loader.load_all()\n"
            f"names = {FIRST_PARTY!r}\n"
            "before = {n: list(loader.PLUGINS[n].commands) for n in names}\n"
            "deferred = sorted(REGISTRY.deferred())\n"
            "REGISTRY.load_all()\n"
            "after = {n: list(loader.PLUGINS[n].api.commands) for n in names}\n"
            "groups = {n: sorted(c.name for c in REGISTRY.commands.values() if c.group == n)"
            " for n in names}\n"
            "print(json.dumps([before, after, groups, deferred, REGISTRY.deferred()]))\n")
    import json
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    before, after, groups, deferred, left = json.loads(out)
    assert before == after
    assert {n: sorted(c) for n, c in before.items()} == groups
    assert set(deferred) == set(before["net"]) | set(before["mount"])
    assert left == []


def test_a_deferred_plugin_command_is_declared_on_first_use_and_its_params_then():
    from nsshell import plugin as api_mod
    from nsshell.plugin import Message
    from nsshell.registry import REGISTRY
    warnings = []
    api = api_mod.PluginAPI("s_imp", warn=lambda p, r: warnings.append((p, r)))
    calls = []

    def declare(a):
        calls.append(a)

        @a.command("s_imp hello")
        def hello(sh, who: Annotated[str, Word("WHO")] = "you", *,
                  loud: bool = False):
            """Say hello.

            Arguments:
              who: to whom
            """
            return Message(f"hello {who}")

    try:
        api.commands_in(("s_imp hello",), declare)
        assert calls == [] and "s_imp hello" not in REGISTRY.commands
        assert api.commands == ["s_imp hello"]
        cmd, n = REGISTRY.lookup(["s_imp", "hello", "x"])
        assert (cmd.name, n, calls) == ("s_imp hello", 2, [api]) and cmd.group == "s_imp"
        assert "params" not in vars(cmd)                   # not read at declaration
        assert [p.name for p in cmd.params] == ["who", "loud", "json"]
        assert cmd.params[0].metavar == "WHO" and cmd.params[0].help == "to whom"
        assert cmd.parse(["bob", "--loud"], None) == {"who": "bob", "loud": True}
        assert api.commands == ["s_imp hello"] and warnings == []
    finally:
        api.rollback()
    assert "s_imp hello" not in REGISTRY.commands and REGISTRY.deferred("s_imp") == []


def test_a_deferred_plugin_module_that_fails_is_one_warning_and_nothing_stays():
    from nsshell import plugin as api_mod
    from nsshell.registry import REGISTRY
    warnings = []
    api = api_mod.PluginAPI("s_imp2", warn=lambda p, r: warnings.append((p, r)))

    def declare(a):
        a.on_handle_close(lambda h: None)
        raise ImportError("no module named s_imp2_gone")

    try:
        api.commands_in(("s_imp2 x", "s_imp2 y"), declare)
        assert REGISTRY.lookup(["s_imp2", "x"]) is None
        assert REGISTRY.lookup(["s_imp2", "y"]) is None     # tried once, not again
        assert len(warnings) == 1 and "s_imp2_gone" in warnings[0][1], warnings
        assert api.commands == [] and api._undo == []       # noqa: SLF001
    finally:
        api.rollback()


def test_a_deferred_name_cannot_take_a_declared_one():
    from nsshell import commands  # noqa: F401 - the built-ins, known by name
    from nsshell import plugin as api_mod
    api = api_mod.PluginAPI("s_imp3")
    with pytest.raises(ValueError, match="already registered"):
        api.commands_in(("ctx",), lambda a: None)
    api.rollback()


def test_signatures_and_docstrings_are_read_as_inspect_reads_them():
    # The registry reads a command's parameters from its code object and cleans its
    # docstring itself (inspect costs milliseconds to import): the same answers, for
    # every command there is.
    import inspect

    from nsshell import commands, plugin_loader
    from nsshell.registry import _EMPTY, REGISTRY, _cleandoc, _signature
    commands.load_all()
    plugin_loader.load_all()
    REGISTRY.load_all()
    assert len(REGISTRY.commands) > 40
    for cmd in REGISTRY.commands.values():
        want = [(p.name, p.kind is p.KEYWORD_ONLY, _EMPTY if p.default is p.empty else p.default)
                for p in inspect.signature(cmd.func).parameters.values()]
        assert _signature(cmd.func) == want, cmd.name
        doc = cmd.func.__doc__ or ""
        assert _cleandoc(doc) == inspect.cleandoc(doc).splitlines(), cmd.name


def test_a_plugins_bad_declaration_still_fails_where_it_is_made():
    # Declared the old way (api.command in register), a declaration is read at once: an
    # annotation naming nothing fails the plugin's load and declares nothing, as before.
    from nsshell import plugin as api_mod
    from nsshell.registry import REGISTRY
    api = api_mod.PluginAPI("s_imp4")

    def bad(sh, x: "NoSuchType"):  # noqa: F821
        """Bad."""
    with pytest.raises(NameError):
        api.command("s_imp4 bad")(bad)
    assert "s_imp4 bad" not in REGISTRY.commands
    api.rollback()


def test_forked_helpers_import_nothing(tmp_path):
    """The shell's forked helpers (new, map, the run helper, a terminal-less `run` with
    --uid) open no Python module: what they need is imported by the shell before the
    fork, once.  A module imported in a child costs every fork again (pickle and
    traceback: ~10 ms per `new`), and after entering a container's pivoted root it
    would not be found at all."""
    import shutil
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    trace = tmp_path / "trace"
    script = ("new user+mnt+pid+net+uts+ipc as imp_h --no-join; map root --ns imp_h; "
              "join imp_h; run true; run --uid 0 true; new uts; close imp_h")
    p = subprocess.run([strace, "-f", "-qq", "-o", str(trace), "-e", "trace=openat,clone,clone3",
                        sys.executable, "-m", "nsshell", "-c", script],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = trace.read_text().splitlines()
    shell = lines[0].split()[0]
    forks, started = [], {}   # (parent, child) of every fork (posix_spawn's vfork aside)
    for ln in lines:
        pid = ln.split()[0]
        if ("clone(" in ln or "clone3(" in ln) and "<unfinished" in ln:
            started[pid] = ln   # strace -f splits a call another process interrupted
            continue
        if "clone resumed>" in ln or "clone3 resumed>" in ln:
            ln = started.pop(pid, "") + ln
        elif not ("clone(" in ln or "clone3(" in ln):
            continue
        if "CLONE_VM" not in ln:
            forks.append((pid, ln.rsplit("=", 1)[1].strip()))
    children, grew = set(), True
    while grew:   # the shell's forks, and theirs
        more = {child for parent, child in forks if parent == shell or parent in children}
        grew, children = more != children, more
    assert children, "no helper was forked: the test does not test"
    opened = [ln for ln in lines if ln.split()[0] in children and re.search(r'\.pyc?"', ln)]
    assert opened == [], "\n".join(opened[:20])


def test_a_helper_imports_nothing_once_inside(tmp_path, monkeypatch):
    """Inside a context a module would come from the context's files (its mount
    namespace, a pivoted root): a container's root could plant it, and the helper still
    holds the shell's privileges.  Every helper that enters refuses any import of a
    module that is not built into the interpreter; one imported before entering is used."""
    import os as _os
    from nsshell.core.proc import spawn
    from nsshell.kernel import nstypes

    def inside(name):
        __import__(name)
        return "imported"

    fd = _os.open("/proc/self/ns/uts", _os.O_RDONLY | _os.O_CLOEXEC)
    try:
        entries = [spawn.Entry(nstypes.UTS, fd, "the host's uts")]
        name = f"nsshell_planted_{_os.getpid()}"   # a module of this test's own
        (tmp_path / f"{name}.py").write_text("PLANTED = True\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        with pytest.raises(spawn.HelperCrash) as refused:
            spawn.call(entries, inside, name)
        assert name in str(refused.value) and "ImportError" in str(refused.value)
        assert spawn.call(entries, inside, "errno")[0] == "imported"   # built in
        assert spawn.call([], inside, name)[0] == "imported"   # entering nothing: its files
        __import__(name)   # imported by the shell before the fork: fine inside
        assert spawn.call(entries, inside, name)[0] == "imported"
        del sys.modules[name]
    finally:
        _os.close(fd)
