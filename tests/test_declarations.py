"""What a command declares, the engine applies without naming any command: the generic
--json of every data command, the batch `run` helper kept only for the commands that
declare runner=True; and the hooks a plugin adds, all removed when its load fails."""

from __future__ import annotations

import json
import os
import sys
import textwrap

import pytest

from conftest import Shell, run_nsshell

# One invocation per built-in command that shows data, in an order where each works
# (a fresh in-process shell, root).  `{pid}` is this test's process, `{root}` a store
# root under tmp_path.  A built-in data command missing here fails
# test_every_builtin_data_command_is_covered: add it with an invocation.
DATA_LINES = [
    ("new", "new user+uts+net+mnt+ipc as c1a --no-join --json"),
    ("new", "new user as c1b --no-join --json"),
    ("setgroups", "setgroups deny --ns c1b --json"),
    ("map", "map 0 100000 1 --ns c1b --json"),
    ("map root", "map root --ns c1a --json"),
    ("open", "open c1a uts as c1c --json"),
    ("name", "name c1c c1d --json"),
    ("join", "join c1a --json"),
    ("hostname", "hostname --json"),
    ("ctx", "ctx --json"),
    ("handles", "handles --json"),
    ("leave", "leave --json"),
    ("ls", "ls uts --json"),
    ("tree", "tree --json"),
    ("show", "show c1a uts --json"),
    ("pids", "pids host uts --json"),
    ("identify", "identify {pid} --json"),
    ("diff", "diff c1a host uts --json"),
    ("persist", "persist c1a --root {root} --json"),
    ("unpersist", "unpersist c1a --root {root} --json"),
    ("close", "close c1d --json"),
    ("plugins", "plugins --json"),
    ("set", "set --json"),
    ("help", "help ls --json"),
    ("top", "top --once --json"),
]
# Data commands that cannot run on any test machine, and why.
NOT_RUN = {"map auto": "needs subordinate ids of the caller in /etc/subuid"}


def _registry_in_a_fresh_process() -> list[dict]:
    """Every command (built-ins and the installed plugins') as a fresh nsshell sees it."""
    code = ("import json, nsshell.commands; from nsshell.plugin_loader import load_all; load_all(); "
            "from nsshell.registry import REGISTRY; REGISTRY.load_all(); "
            "print(json.dumps([{'name': c.name, 'group': c.group, 'data': c.data, "
            "'runner': c.runner, 'usage': c.usage(), "
            "'rest': c.rest_param() is not None} for c in REGISTRY.commands.values()]))")
    import subprocess
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ, XDG_CONFIG_HOME="/nonexistent"))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_every_builtin_data_command_is_covered():
    cmds = _registry_in_a_fresh_process()
    data = {c["name"] for c in cmds if c["group"] == "core" and c["data"]}
    assert data == {n for n, _ in DATA_LINES} | set(NOT_RUN)


def test_the_json_flag_is_where_data_is_and_nowhere_else():
    for c in _registry_in_a_fresh_process():
        # one rule for built-ins and plugins alike: usage (help, man page) shows it
        assert ("[--json]" in c["usage"]) == c["data"], c
        if c["rest"]:
            assert not c["data"], c   # a Rest parameter takes every word, --json too
    by = {c["name"]: c for c in _registry_in_a_fresh_process()}
    assert by["mount ls"]["data"] and by["net ls"]["data"]
    for name in ("true", "false", "exit", "fg", "sh", "run", "echo", "source"):
        assert not by[name]["data"], name


def test_every_builtin_data_command_gives_one_json_document(tmp_path):
    root = tmp_path / "store"
    root.mkdir()
    sh = Shell()
    try:
        for name, line in DATA_LINES:
            done = sh(line.format(pid=os.getpid(), root=root))
            assert done.rc == 0 and done.err == "", (line, done)
            lines = done.out.splitlines()
            # JSON Lines: in a pipe (here a StringIO) one compact document per command
            assert len(lines) == 1, (line, done.out)
            doc = json.loads(lines[0])
            assert isinstance(doc, dict) and doc, (line, doc)
    finally:
        sh(f"leave; unpersist c1a --root {root}")
        sh.close()


def test_json_is_for_that_one_command_and_anywhere_among_its_words(shell):
    done = shell("ls --json uts; ctx")
    assert done.rc == 0, done
    first, *rest = done.out.splitlines()
    assert all(r["type"] == "uts" for r in json.loads(first)["namespaces"])
    assert rest and not any(r.startswith("{") for r in rest), rest   # ctx: plain


@pytest.mark.parametrize("line", ["true --json", "fg --json", "exit --json"])
def test_a_command_without_data_refuses_json(shell, line):
    done = shell(line)
    assert done.rc == 2 and done.out == "", done
    assert done.err.count("\n") == 1 and "unknown option --json" in done.err, done.err


def test_a_rest_parameter_takes_json_untouched(tmp_path):
    script = tmp_path / "s.nss"
    script.write_text("echo $1 $2\n")
    d = run_nsshell("-c", f"run echo --json; run sh -c 'echo \"$1\"' x --json; echo --json; "
                          f"source {script} a --json")
    assert d.rc == 0, d
    assert d.out.splitlines() == ["--json", "--json", "--json", "a --json"], d


def test_a_command_may_not_declare_its_own_json():
    from nsshell.registry import Registry
    reg = Registry()

    def mine(sh, *, json_: bool = False):
        """Mine."""
    with pytest.raises(ValueError, match="own --json"):
        reg.command("mine")(mine)
    assert "mine" not in reg.commands


# -- the batch `run` helper: kept only for the commands that declare runner=True -------------

def test_only_declared_commands_see_the_run_helper():
    from nsshell import commands  # noqa: F401
    from nsshell.engine import Engine
    from nsshell.registry import REGISTRY, Registry
    from nsshell.render import Renderer
    from nsshell.results import Message
    from nsshell.session import Session
    import io
    reg = Registry()
    reg.add(REGISTRY.commands["run"])
    seen = []

    def peek(sh):
        """Say whether the helper is there."""
        seen.append(sh.runner is not None)
        return Message("")
    reg.command("peek", runner=True)(peek)
    reg.command("look")(lambda sh: seen.append(sh.runner is not None))
    out = io.StringIO()
    session = Session()
    try:
        engine = Engine(session, Renderer(out, out, mode="plain"), registry=reg)
        assert session.engine is engine
        assert session.terminal.fd is None    # a batch (no terminal): `run` starts the helper
        assert engine.run_line("run true; peek; run true; look; peek") == 0, out.getvalue()
        assert seen == [True, False, False]
        assert session.runner is None         # the batch ended: the helper with it
    finally:
        session.close_all()


# -- hooks -------------------------------------------------------------------------------

def test_hooks_add_once_remove_and_errors():
    from nsshell.hooks import Hooks
    calls = []
    h = Hooks("test")
    f = h.add(lambda x: calls.append(("f", x)))
    h.add(f)
    assert len(h) == 1
    h.remove(f)
    h.remove(f)                               # not there: nothing happens
    assert len(h) == 0

    def bad(x):
        raise RuntimeError("hook broke")
    strict = Hooks("strict")
    strict.add(bad)
    with pytest.raises(RuntimeError):
        strict.run(1)
    lenient = Hooks("lenient", on_error=lambda fn, e: calls.append(("err", str(e))))
    lenient.add(bad)
    lenient.add(lambda x: calls.append(("after", x)))
    lenient.run(2)
    assert calls == [("err", "hook broke"), ("after", 2)]


def test_a_failing_close_hook_does_not_keep_the_handle_open():
    from nsshell.core.ns.handle import CLOSE_HOOKS, Handle
    seen = []

    def bad(handle):
        seen.append(handle.fd)
        raise RuntimeError("no")
    CLOSE_HOOKS.add(bad)
    try:
        h = Handle.open("/proc/self/ns/uts")
        fd = h.fd
        h.close()
        assert seen == [fd] and h.fd == -1
        assert not os.path.exists(f"/proc/self/fd/{fd}") or \
            os.readlink(f"/proc/self/fd/{fd}") != os.readlink("/proc/self/ns/uts")
    finally:
        CLOSE_HOOKS.remove(bad)


# -- a plugin that fails half way leaves nothing behind --------------------------------------

HALF_WAY = '''
from nsshell.plugin import (Annotated, HandleCache, Message, command, register_state)

@command("c1rb early")
def early(sh):
    """Declared at import time."""
    return Message("early")

@command("c1rbother", group="elsewhere")
def other(sh):
    """Declared at import time under another group."""

register_state("uts", "c1rb_direct", lambda ctx: 1)
CACHE = HandleCache(lambda h: object(), lambda o: None)

def register(api):
    @api.command("c1rb late")
    def late(sh):
        """Declared in register."""
    api.on_session(lambda s: s.add_setting("c1rb", 1, int, "a setting"))
    api.on_handle_close(lambda h: None)
    api.state_reader("net", "c1rb_key")(lambda ctx: 1)
    api.state_reader("uts", "hostname")(lambda ctx: "replaced")   # replaces a built-in's
    api.add_ref_scheme("c1rbscheme", lambda s, rest: None)
    api.add_name_source(lambda s: ())
    raise RuntimeError("c1rb fails half way")
'''


def _registrations() -> dict:
    from nsshell import session as session_mod
    from nsshell.core.look import discover, nsstate
    from nsshell.core.ns import handle as handle_mod
    from nsshell.registry import REGISTRY
    return {
        "commands": dict(REGISTRY.commands),
        "aliases": dict(REGISTRY._aliases),
        "init": list(session_mod.INIT_HOOKS),
        "close": list(handle_mod.CLOSE_HOOKS),
        "state": {t: {k: nsstate.spec(t, k) for k in nsstate.keys(t)} for t in ("uts", "net")},
        "names": list(discover.NAME_SOURCES),
    }


def test_a_plugin_that_fails_is_rolled_back_whole(tmp_path):
    from nsshell import commands  # noqa: F401
    from nsshell import plugin_loader as plugins
    from nsshell.errors import NotFoundError
    from nsshell.session import Session
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "c1rb.py").write_text(textwrap.dedent(HALF_WAY))
    before = _registrations()
    found = [p for p in plugins.user_plugins(str(folder)) if p[0] == "c1rb"]
    assert len(found) == 1 and found[0][2] == "", found
    name, path, _, opened = found[0]
    info = plugins.load(name, path, lambda: plugins._import_opened(name, opened))
    try:
        assert info.status == "failed" and "c1rb fails half way" in info.reason, info
        assert _registrations() == before
        s = Session()
        try:
            assert "c1rb" not in s.settings
            with pytest.raises(NotFoundError):
                s.resolve("c1rbscheme:x")
        finally:
            s.close_all()
    finally:
        plugins.FAILED.remove(info)


def test_top_json_on_a_terminal_prints_data_not_the_view(tmp_path):
    # the command is told of its own --json (Engine.wants_json), not only of `nsshell --json`
    import pexpect
    from conftest import _env, nsshell_argv
    argv = nsshell_argv() + ["-c", "top --json"]
    env = _env({"TERM": "xterm", "PROMPT_TOOLKIT_NO_CPR": "1", "HOME": str(tmp_path)})
    child = pexpect.spawn(argv[0], argv[1:], env=env, encoding="utf-8", timeout=20,
                          dimensions=(40, 160))
    try:
        child.expect(pexpect.EOF)     # the full-screen view would wait for `q`
        out = child.before
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, out
    doc = json.loads(out)   # on a terminal one indented document
    assert doc["namespaces"] and "\x1b[" not in out


def test_a_failing_session_hook_is_one_warning_and_the_shell_starts(tmp_path):
    # the loader hands its warn to the API (plugin.py imports no loader)
    folder = tmp_path / "nsshell" / "plugins"
    folder.mkdir(parents=True)
    os.chmod(tmp_path, 0o755)
    (folder / "c1hook.py").write_text(textwrap.dedent('''
        def register(api):
            def broken(session):
                raise OSError("c1 hook broke")
            api.on_session(broken)
            @api.command("c1hook ok")
            def ok(sh):
                """Still here."""
                from nsshell.plugin import Message
                return Message("ok")
    '''))
    d = run_nsshell("-c", "c1hook ok", env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert d.rc == 0 and d.out == "ok\n", d
    assert d.err == "nsshell: plugin c1hook: session set-up failed: OSError: c1 hook broke\n", d
