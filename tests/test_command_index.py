"""The registry's lazy index (nsshell/command_index.py) and the command line's quick reading.

A batch imports only the modules of the commands it uses: the registry knows
every built-in by name from a generated index.  These tests fail when the index
is stale (it is regenerated in memory and compared), and check that lazy
loading changes nothing a person sees: lookups, aliases, sub-commands, help,
clashes with plugins, settings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT, run_nsshell
from nsshell import cli
from nsshell.registry import Command, Registry

INDEX = os.path.join(ROOT, "nsshell", "command_index.py")


def _fresh(code: str) -> str:
    """CODE run in a fresh interpreter (imports and registrations of its own); its stdout."""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout


def test_the_committed_index_is_what_the_declarations_give():
    """Fails when a built-in command was added, renamed or moved without
    `python -m nsshell.docgen` (which writes the index with the man page)."""
    text = _fresh("import sys; from nsshell import commands; commands.load_all(); "
                  "sys.stdout.write(commands.render_index())")
    with open(INDEX) as f:
        assert f.read() == text, "stale: run `.venv/bin/python -m nsshell.docgen` and commit it"


def test_the_comparison_notices_a_command_the_index_lacks():
    # The check above can fail: one more declared built-in changes the text.
    from nsshell import commands
    from nsshell.commands import render_index
    reg = Registry()
    commands.load_all()
    from nsshell.registry import REGISTRY
    for c in REGISTRY.commands.values():
        if c.func.__module__.startswith("nsshell.commands."):
            reg.add(c)
    assert render_index(reg) == open(INDEX).read()

    def extra(sh):
        """An extra command."""
    extra.__module__ = "nsshell.commands.extra"
    reg.add(Command("zz extra", extra, [], "", "", []))
    assert render_index(reg) != open(INDEX).read()


def test_every_indexed_command_is_found_where_the_index_says():
    out = _fresh(
        "from nsshell import command_index as ix, commands\n"
        "from nsshell.registry import REGISTRY\n"
        "for name, module in ix.COMMANDS.items():\n"
        "    cmd, used = REGISTRY.lookup(name.split())\n"
        "    assert cmd.name == name and used == len(name.split()), name\n"
        "    assert cmd.func.__module__ == module, (name, module)\n"
        "for alias, name in ix.ALIASES.items():\n"
        "    assert REGISTRY.lookup(alias.split())[0].name == name, alias\n"
        "print(len(ix.COMMANDS))\n")
    assert int(out) >= 30


def test_a_lookup_imports_only_the_module_of_its_command():
    out = _fresh(
        "import sys\n"
        "from nsshell import command_index as ix, commands\n"
        "from nsshell.registry import REGISTRY\n"
        "before = {m for m in set(ix.COMMANDS.values()) if m in sys.modules}\n"
        "REGISTRY.lookup(['ctx'])\n"
        "after = {m for m in set(ix.COMMANDS.values()) if m in sys.modules}\n"
        "import json; print(json.dumps([sorted(after - before), sorted(before)]))\n")
    loaded, before = json.loads(out)
    assert loaded == ["nsshell.commands.context"]
    assert "nsshell.commands.context" not in before


def test_sub_commands_and_help_see_every_command():
    # `map` has sub-commands (`map root`, `map auto`); `help` lists every built-in.
    out = _fresh(
        "from nsshell import commands\n"
        "from nsshell.registry import REGISTRY\n"
        "print('|'.join(c.name for c in REGISTRY.subcommands('map')))\n"
        "print('|'.join(c.name for c in REGISTRY.visible()))\n")
    subs, visible = (line.split("|") for line in out.splitlines())
    from nsshell import command_index as ix
    assert subs == sorted(n for n in ix.COMMANDS if n.startswith("map ")) and subs
    assert set(visible) <= set(ix.COMMANDS) and len(visible) >= len(ix.COMMANDS) - 5


def test_help_lists_commands_of_modules_not_loaded_before():
    d = run_nsshell("-c", "help")
    assert d.rc == 0, d
    for name in ("ls", "persist", "top", "handles", "ctx", "run"):
        assert f"\n  {name} " in "\n" + d.out or f" {name} " in d.out, (name, d.out[:400])


def test_a_plugin_cannot_take_the_name_of_a_built_in_not_loaded_yet():
    reg = Registry()
    reg.defer({"ctx": "nsshell.commands.context"}, {})

    def ctx(sh):
        """Mine."""
    ctx.__module__ = "someones_plugin"
    with pytest.raises(ValueError, match="already registered"):
        reg.command("ctx")(ctx)


def test_settings_of_a_lazily_loaded_module_exist_from_the_start():
    # run.py adds `run_*` settings when imported (EAGER in the index): `set` knows them
    # before any `run`.
    d = run_nsshell("-c", "set run_uid 0; set")
    assert d.rc == 0, d
    assert "run_uid" in d.out


def test_a_module_imported_late_adds_to_no_extension_point():
    # What a built-in module adds when imported (settings, names for `ls`, state readers,
    # close hooks) must be there from the start: such a module is EAGER.  Each other
    # module, imported late, changes none of them.
    out = _fresh(
        "import json\n"
        "from nsshell import command_index as ix, commands\n"
        "def sizes():\n"
        "    return {k: len(v) for k, v in commands.extension_points().items()}\n"
        "changed = {}\n"
        "for module in sorted(set(ix.COMMANDS.values()) - set(ix.EAGER)):\n"
        "    before = sizes()\n"
        "    __import__(module)\n"
        "    if sizes() != before:\n"
        "        changed[module] = [k for k in before if sizes()[k] != before[k]]\n"
        "print(json.dumps(changed))\n")
    assert json.loads(out) == {}


def test_persisted_names_are_in_ls_without_a_persist_command_first():
    # commands/persist_names.py (persist's light half) adds the persisted names to `ls`
    # when imported (EAGER); the persist commands themselves are not imported to start.
    out = _fresh("import json\n"
                 "from nsshell import commands\n"
                 "from nsshell.core.look import discover\n"
                 "print(json.dumps([f.__module__ for f in discover.NAME_SOURCES]))\n")
    assert "nsshell.commands.persist_names" in json.loads(out)


# -- the command line without argparse -------------------------------------------------------

ARGVS = [
    [], ["-c", "ctx"], ["--json", "-c", "ls"], ["-k", "-c", "x"], ["--keep-going", "-c", ""],
    ["--debug", "--no-plugins", "-c", "ctx; ls"], ["script.nss"], ["script.nss", "a", "b"],
    ["script.nss", "--json", "-c", "x"], ["-c", "ctx", "file", "x"], ["--complete", "new n"],
    ["-c", "a", "-c", "b"], ["--json", "--json", "f"], ["f", "--", "-x"],
    ["--persist-root", "/tmp/r", "-c", "ls"],
    # these go to argparse (None from the quick reading): the same answer either way
    ["f", "a", "--", "b", "--"],
    ["-cctx"], ["--js", "-c", "ctx"], ["-c", "-1"], ["--", "f"], ["-kc", "ctx"],
    ["--complete=x"], ["-c=ctx"],
]


@pytest.mark.parametrize("argv", ARGVS, ids=lambda a: " ".join(a) or "(none)")
def test_the_quick_reading_agrees_with_the_parser(argv):
    full = vars(cli.build_parser().parse_args(argv))
    quick = cli.parse_simple(argv)
    if quick is not None:
        assert vars(quick) == full
    assert vars(cli.parse_args(argv)) == full


def test_the_quick_reading_knows_every_option_of_the_parser():
    """An option added to build_parser and not to parse_simple's tables is caught here."""
    parser = cli.build_parser()
    dests = {a.dest for a in parser._actions if a.dest not in ("help", "version")}
    assert dests == set(vars(cli.Options())), dests ^ set(vars(cli.Options()))
    for a in parser._actions:
        for flag in a.option_strings:
            if a.dest in ("help", "version"):
                continue
            assert flag in cli._FLAGS or flag in cli._VALUED, flag


@pytest.mark.parametrize("argv", [["-c"], ["--bogus"], ["-c", "-x"], ["--complete"]])
def test_bad_command_lines_still_get_the_parsers_one_line(argv):
    d = run_nsshell(*argv)
    assert d.rc == 2, d
    assert d.err.startswith("nsshell: ") and "hint: nsshell --help" in d.err, d
    assert "Traceback" not in d.err
