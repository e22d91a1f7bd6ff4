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
    assert "pickle" not in imported("-c", "ctx; handles")


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
