"""The store's two values from outside: the name rule and the persist root.

One name rule (nsshell/names.py) for the session and the store: the same bad name is
refused with the same line by `new ... as NAME`, `name REF NAME` and `persist REF as
NAME`, and by `persist REF` when REF's own name (an `ip netns` name) breaks it; nothing
is made.  One persist root, decided by the CLI (--persist-root, $NSSHELL_PERSIST_ROOT,
the default) or the `persist_root` setting, and handed to discovery: `ls` and `show`
name a set persisted under a non-default root, and a shell with another root does not.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from conftest import run_nsshell
from test_persist import files_under, last_json, nsfs_under
from test_store_faults import store  # noqa: F401 - the fixture

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="persisting on the host needs root")

# ("-x" is not here: as a bare word, `name` reads it as an option, before any name rule)
BAD = ["0abc", "9", ".x", "a:b", "a/b", "host", "net", "all", "a" * 65, "é", "a b"]


def _refusals(err: str) -> list[str]:
    """Each error line without its `nsshell: -c: COMMAND: ` head."""
    out = []
    for line in err.splitlines():
        assert line.startswith("nsshell: -c: "), err
        out.append(line.split(": ", 3)[3])
    return out


@pytest.mark.parametrize("bad", BAD)
def test_the_same_bad_name_is_refused_alike_by_new_name_and_persist(store, prefix, bad):
    from nsshell import names
    ok = f"{prefix}ok"
    q = "'" + bad + "'"
    done = run_nsshell("-k", "-c", "; ".join([
        f"new uts as {ok} --no-join", f"new uts as {q}", f"name {ok} {q}",
        f"persist {ok} as {q}", f"persist {ok} {store.path('x')} as {q}"]), env=store.env)
    assert done.rc == 2, done
    lines = _refusals(done.err)
    assert len(lines) == 4, done.err
    assert len(set(lines)) == 1, lines
    assert lines[0] == f"NAME {bad!r}: {names.problem(bad)}; hint: {names.RULE}", lines[0]
    assert files_under(store.root) == [] and nsfs_under(store.root) == []


@pytest.fixture
def digit_netns(prefix):
    """An `ip netns` entry whose name breaks nsshell's rule (it starts with a digit)."""
    name = f"9{prefix}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_a_ref_whose_own_name_breaks_the_rule_is_refused_alike(store, digit_netns):
    """`persist 9x` (an ip netns name): usable as a REF, refused as a persisted name by the
    same rule, with the same line as `new net as 9x`; nothing made."""
    before = os.stat(f"/run/netns/{digit_netns}").st_ino
    refused = store.run(f"persist {digit_netns}")
    same = store.run(f"new net as {digit_netns}")
    assert refused.rc == same.rc == 2, (refused, same)
    assert _refusals(refused.err) == _refusals(same.err), (refused.err, same.err)
    assert files_under(store.root) == [] and nsfs_under(store.root) == []
    assert os.stat(f"/run/netns/{digit_netns}").st_ino == before
    assert store.run(f"join net {digit_netns}", "run true").rc == 0  # still a usable REF


def _names(done, t: str, ino: int) -> list[str]:
    assert done.rc == 0, done
    for e in last_json(done.out)["namespaces"]:
        if e["type"] == t and e["ns"] == ino:
            return e["names"]
    raise AssertionError(f"{t}:[{ino}] not listed")


def test_discovery_names_sets_from_the_root_it_is_given(store, prefix):
    """A set persisted under a tmp root: `ls` and `show` in a later shell name it when that
    shell's root is the same (from $NSSHELL_PERSIST_ROOT, --persist-root or `set
    persist_root`), and not when its root is another one."""
    name = f"{prefix}r"
    assert store.run(f"new uts+ipc as {name} --no-join", f"persist {name}").rc == 0
    try:
        ino = os.stat(store.path(name, "uts")).st_ino
        other = {"NSSHELL_PERSIST_ROOT": store.path("elsewhere")}
        by_env = run_nsshell("--json", "-c", "ls uts", env=store.env)
        by_option = run_nsshell("--json", "--persist-root", store.root, "-c", "ls uts",
                                env=other)
        by_setting = run_nsshell("--json", "-c", f"set persist_root {store.root}; ls uts",
                                 env=other)
        for done in (by_env, by_option, by_setting):
            assert name in _names(done, "uts", ino), done
        assert name not in _names(run_nsshell("--json", "-c", "ls uts", env=other), "uts", ino)
        # `show`, by the name and by the label
        for ref in (name, f"uts:[{ino}]"):
            shown = run_nsshell("--json", "--persist-root", store.root, "-c", f"show {ref}",
                                env=other)
            assert shown.rc == 0, shown
            assert name in shown.out, shown.out
        assert run_nsshell("-c", f"show {name}", env=other).rc != 0  # no such name there
    finally:
        assert store.run(f"unpersist {name}").rc == 0


def test_the_scan_names_bind_mounts_under_the_root_it_is_given(store, prefix):
    """discover.scan(persist_root=ROOT): a bind mount ROOT/NAME/TYPE names its namespace
    (no session, so no other source of names); without the root it does not."""
    from nsshell.core.look import discover
    from nsshell.kernel import nstypes
    name = f"{prefix}m"
    assert store.run(f"new uts as {name} --no-join", f"persist {name}").rc == 0
    try:
        ino = os.stat(store.path(name, "uts")).st_ino
        given = discover.scan((nstypes.UTS,), relations=False, persist_root=store.root)
        assert name in given.get("uts", ino).names
        plain = discover.scan((nstypes.UTS,), relations=False)
        assert name not in plain.get("uts", ino).names
    finally:
        assert store.run(f"unpersist {name}").rc == 0


def _imports(path: str, package: str) -> set[str]:
    """Every nsshell module PATH imports (at any depth of the file, lazy ones too)."""
    import ast
    out = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = ".".join(parts[:len(parts) - node.level + 1]) if node.level else ""
            mod = ".".join(p for p in (base, node.module) if p)
            out |= {mod} | {f"{mod}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return {m for m in out if m.split(".")[0] == "nsshell"}


def test_the_store_takes_plain_values_and_imports_nothing_above_core():
    """core/store imports no session, command, render or REPL module (only core, kernel,
    errors and the name rule), and keeper and persist do not import each other's way back."""
    import glob
    import nsshell
    here = os.path.dirname(nsshell.__file__)
    allowed = ("nsshell.core.", "nsshell.kernel", "nsshell.errors", "nsshell.names")
    seen = {}
    for path in sorted(glob.glob(os.path.join(here, "core", "store", "*.py"))):
        mod = "nsshell.core.store." + os.path.basename(path)[:-3]
        seen[mod] = _imports(path, "nsshell.core.store")
        wrong = sorted(m for m in seen[mod] if not m.startswith(allowed) and m != "nsshell")
        assert wrong == [], (mod, wrong)
    assert not any(m.startswith("nsshell.core.store.persist")
                   for m in seen["nsshell.core.store.keeper"])
