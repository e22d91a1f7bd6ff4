"""The plugin API and loader: entry points, the user plugin folder, failures that warn once
and leave the shell working, the `plugins` command, and the API's namespace-bound helpers."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import textwrap

import pytest
from conftest import processes_named

GOOD = '''
from nsshell.plugin import Annotated, Message, NsSet, Ref

def register(api):
    @api.command("hello world")
    def hello(sh, ref: Annotated[NsSet, Ref()]):
        """Say hello to a namespace set.

        Arguments:
          ref: the set to greet

        Examples:
          hello world host
        """
        return Message(f"hello {ref.label}")
'''

BROKEN_IMPORT = '''
import nsshell_no_such_module_anywhere
'''

BROKEN_REGISTER = '''
from nsshell.plugin import Message

def register(api):
    @api.command("half done")
    def half(sh):
        """Registered before the failure."""
        return Message("should not exist")
    raise RuntimeError("cannot find my configuration")
'''

CLASH = '''
from nsshell.plugin import Message

def register(api):
    @api.command("ctx")
    def ctx(sh):
        """Tries to take a built-in's name."""
        return Message("mine")
'''

PACKAGE_INIT = '''
from nsshell.plugin import Annotated, Message, ParamType, command


class Colour(ParamType):
    metavar = "COLOUR"

    def parse(self, text, session):
        if text not in ("red", "green"):
            raise ValueError("not red or green")
        return text

    def complete(self, prefix, session):
        return [(c, "") for c in ("red", "green") if c.startswith(prefix)]


@command("paint")
def paint(sh, colour: Annotated[str, Colour()]):
    """Paint in a colour.

    Arguments:
      colour: red or green
    """
    return Message(f"painted {colour}")
'''


@pytest.fixture
def xdg(tmp_path):
    """A private $XDG_CONFIG_HOME with an (empty) nsshell plugin folder."""
    folder = tmp_path / "nsshell" / "plugins"
    folder.mkdir(parents=True)
    os.chmod(tmp_path, 0o755)
    return tmp_path, folder


def _run(nsshell, xdg, *args):
    base, _ = xdg
    return nsshell(*args, env={"XDG_CONFIG_HOME": str(base)})


def _plugins(done) -> dict:
    return {p["name"]: p for p in json.loads(done.out)["plugins"]}


def test_first_party_plugins_are_found_by_entry_point(nsshell):
    d = nsshell("--json", "-c", "plugins")
    assert d.rc == 0 and d.err == "", d
    found = _plugins(d)
    assert found["net"]["status"] == "loaded"
    assert "net veth" in found["net"]["commands"] and "net ls" in found["net"]["commands"]
    assert found["net"]["source"].startswith("entry point nsshell_net")


def test_cheap_entry_point_scan_agrees_with_importlib_metadata():
    from importlib.metadata import entry_points

    from nsshell import plugin_loader
    mine = {(name, value) for name, value, _dist in plugin_loader.entry_points()}
    theirs = {(ep.name, ep.value) for ep in entry_points(group="nsshell.plugins")}
    assert theirs and mine == theirs


def test_plugin_from_the_user_folder(nsshell, xdg):
    (xdg[1] / "greet.py").write_text(GOOD)
    d = _run(nsshell, xdg, "-c", "hello world host")
    assert d.rc == 0 and d.out.strip() == "hello host" and d.err == "", d
    d = _run(nsshell, xdg, "--json", "-c", "plugins")
    greet = _plugins(d)["greet"]
    assert greet["status"] == "loaded" and greet["commands"] == ["hello world"]
    assert greet["source"] == str(xdg[1] / "greet.py")
    # declared like a built-in: help and completion know it
    d = _run(nsshell, xdg, "-c", "help hello world")
    assert d.rc == 0 and "Say hello to a namespace set." in d.out and "REF" in d.out, d
    d = _run(nsshell, xdg, "--complete", "hello ")
    assert "world" in d.out.split()
    d = _run(nsshell, xdg, "-c", "hello world")
    assert d.rc == 2 and "missing REF" in d.err, d


def test_package_plugin_with_its_own_parameter_type(nsshell, xdg):
    pkg = xdg[1] / "painter"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(PACKAGE_INIT)
    d = _run(nsshell, xdg, "-c", "paint red")
    assert d.rc == 0 and d.out.strip() == "painted red", d
    d = _run(nsshell, xdg, "-c", "paint blue")
    assert d.rc == 2 and "not red or green" in d.err, d
    d = _run(nsshell, xdg, "--complete", "paint g")
    assert [line.split("\t")[0] for line in d.out.splitlines()] == ["green"], d
    d = _run(nsshell, xdg, "--json", "-c", "plugins")
    assert _plugins(d)["painter"]["commands"] == ["paint"]


@pytest.mark.parametrize("source, reason", [
    (BROKEN_IMPORT, "ModuleNotFoundError"),
    (BROKEN_REGISTER, "RuntimeError: cannot find my configuration"),
    (CLASH, "'ctx' is already registered"),
    ("x = 1\n", "no register(api) function"),
    ("def register(api):\n    raise SystemExit(3)\n", "SystemExit"),
])
def test_broken_plugin_warns_once_and_the_shell_starts(nsshell, xdg, source, reason):
    (xdg[1] / "broken.py").write_text(source)
    (xdg[1] / "greet.py").write_text(GOOD)
    d = _run(nsshell, xdg, "-c", "ctx")
    assert d.rc == 0, d
    warnings = d.err.strip().splitlines()
    assert len(warnings) == 1, d.err
    assert warnings[0].startswith("nsshell: plugin broken:") and reason in warnings[0], warnings
    assert "Traceback" not in d.err
    # the others still load, and `plugins` shows the failure with its reason
    d = _run(nsshell, xdg, "--json", "-c", "plugins")
    assert d.rc == 0, d
    found = _plugins(d)
    assert found["broken"]["status"] == "failed" and reason in found["broken"]["reason"]
    assert found["greet"]["status"] == "loaded" and found["net"]["status"] == "loaded"
    d = _run(nsshell, xdg, "-c", "hello world host")
    assert d.rc == 0 and d.out.strip() == "hello host", d
    # nothing of a half-registered plugin remains
    d = _run(nsshell, xdg, "-c", "half done")
    assert d.rc == 2 and "unknown command" in d.err, d
    d = _run(nsshell, xdg, "-c", "ctx")
    assert "mine" not in d.out


def test_plain_plugins_listing_shows_the_reason(nsshell, xdg):
    (xdg[1] / "broken.py").write_text(BROKEN_IMPORT)
    d = _run(nsshell, xdg, "-c", "plugins")
    line = [x for x in d.out.splitlines() if x.startswith("broken")]
    assert line and "failed" in line[0] and "ModuleNotFoundError" in line[0], d.out


def test_plugin_files_writable_by_others_are_refused(nsshell, xdg):
    path = xdg[1] / "greet.py"
    path.write_text(GOOD)
    os.chmod(path, 0o666)
    d = _run(nsshell, xdg, "-c", "hello world host")
    assert d.rc == 2, d
    assert "nsshell: plugin greet: not loaded:" in d.err and "writable by others" in d.err


def test_no_plugins_flag(nsshell, xdg):
    (xdg[1] / "greet.py").write_text(GOOD)
    d = _run(nsshell, xdg, "--no-plugins", "-c", "plugins")
    assert d.rc == 0 and "--no-plugins" in d.out, d
    d = _run(nsshell, xdg, "--no-plugins", "-c", "net ls")
    assert d.rc == 2 and "unknown command 'net'" in d.err, d
    d = _run(nsshell, xdg, "--no-plugins", "-c", "hello world host")
    assert d.rc == 2, d


def test_user_folder_defaults_to_dot_config(nsshell, tmp_path):
    folder = tmp_path / ".config" / "nsshell" / "plugins"
    folder.mkdir(parents=True)
    (folder / "greet.py").write_text(GOOD)
    env = {"HOME": str(tmp_path)}
    d = nsshell("-c", "hello world host", env={**env, "XDG_CONFIG_HOME": ""})
    assert d.rc == 0 and "hello host" in d.out, d


def test_plugin_state_reader_shows_in_show_and_diff(nsshell):
    d = nsshell("--json", "-c", "new net as a --no-join; new net as b --no-join; "
                                "net bridge a br0; show a")
    assert d.rc == 0, d
    shown = json.loads(d.out[d.out.index("\n{", d.out.index("bridge br0")) + 1:])
    text = json.dumps(shown)
    assert '"bridges"' in text and '"br0"' in text, text
    d = nsshell("-c", "new net as a --no-join; new net as b --no-join; net bridge a br0; diff a b")
    assert d.rc in (0, 1) and "bridges" in d.out and "br0" in d.out, d


# -- the API's namespace-bound helpers, in process -------------------------------------------

SIOCGSKNS = 0x894C


def _netns_of_socket(fd: int):
    from nsshell.kernel.nsfs import nsid_of_fd
    nsfd = fcntl.ioctl(fd, SIOCGSKNS)
    try:
        return nsid_of_fd(nsfd, "net")
    finally:
        os.close(nsfd)


def test_socket_in_opens_the_socket_inside_the_namespace(shell):
    from nsshell.plugin import socket_in
    assert shell("new net as a --no-join").rc == 0
    handle = shell.session.sets["a"].handles["net"]
    fds = [socket_in(handle, socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        for fd in fds:
            assert _netns_of_socket(fd) == handle.nsid
        host = shell.session.host.handles["net"]
        fd = socket_in(host, socket.AF_INET, socket.SOCK_DGRAM)
        assert _netns_of_socket(fd) == host.nsid
        os.close(fd)
    finally:
        for fd in fds:
            os.close(fd)


def test_handle_cache_closes_with_the_handle(shell):
    from nsshell.plugin import HandleCache, socket_in
    closed = []
    cache = HandleCache(lambda h: socket.socket(fileno=socket_in(h, socket.AF_INET, socket.SOCK_DGRAM)),
                        lambda s: (closed.append(s.fileno()), s.close()))
    try:
        assert shell("new net as a --no-join").rc == 0
        handle = shell.session.sets["a"].handles["net"]
        first = cache.get(handle)
        assert cache.get(handle) is first          # one per namespace
        fd = first.fileno()
        assert shell("close a").rc == 0
        assert closed == [fd]                      # closed with the handle
        assert first.fileno() == -1
    finally:
        cache.clear()


def test_rollback_removes_commands_and_hooks():
    from nsshell import session as session_mod
    from nsshell.core.ns import handle as handle_mod
    from nsshell.plugin import PluginAPI
    from nsshell.registry import REGISTRY
    api = PluginAPI("rollbacktest")

    @api.command("rollbacktest run")
    def run(sh):
        """A command to be removed."""

    api.on_session(lambda s: None)
    api.on_handle_close(lambda h: None)
    assert "rollbacktest run" in REGISTRY.commands
    hooks = (len(session_mod.INIT_HOOKS), len(handle_mod.CLOSE_HOOKS))
    api.rollback()
    assert "rollbacktest run" not in REGISTRY.commands
    assert (len(session_mod.INIT_HOOKS), len(handle_mod.CLOSE_HOOKS)) == (hooks[0] - 1, hooks[1] - 1)


def test_on_session_hook_adds_a_setting(nsshell, xdg):
    (xdg[1] / "knob.py").write_text(textwrap.dedent('''
        def register(api):
            api.on_session(lambda s: s.add_setting("knob", 3, int, "a plugin's setting"))
            @api.command("knob show")
            def show(sh):
                """Show the knob."""
                from nsshell.plugin import Message
                return Message(f"knob={sh.get('knob')}")
    '''))
    d = _run(nsshell, xdg, "-c", "knob show")
    assert d.rc == 0 and d.out.strip() == "knob=3", d


def test_a_failing_session_hook_warns_once_through_the_loader(nsshell, xdg):
    # The API reports the failure through the warn the loader gave it (it never imports
    # the loader): one line, the plugin's commands still work, the shell still starts.
    (xdg[1] / "sour.py").write_text(textwrap.dedent('''
        def register(api):
            def boom(s):
                raise RuntimeError("no configuration for sour")
            api.on_session(boom)
            @api.command("sour taste")
            def taste(sh):
                """Taste."""
                from nsshell.plugin import Message
                return Message("sour")
    '''))
    d = _run(nsshell, xdg, "-c", "sour taste")
    assert d.rc == 0 and d.out.strip() == "sour", d
    lines = [l for l in d.err.splitlines() if l.strip()]
    assert lines == ["nsshell: plugin sour: session set-up failed: RuntimeError: "
                     "no configuration for sour"], d


def test_a_plugin_api_made_by_hand_raises_a_failing_session_hook():
    from nsshell import session as session_mod
    from nsshell.plugin import PluginAPI
    api = PluginAPI("c2handmade")
    try:
        api.on_session(lambda s: (_ for _ in ()).throw(RuntimeError("raised, not swallowed")))
        with pytest.raises(RuntimeError, match="raised, not swallowed"):
            session_mod.Session()
    finally:
        api.rollback()


def _my_openers() -> list[int]:
    return processes_named("nsshell-sockets", ppid=os.getpid())


@pytest.mark.skipif(os.geteuid() != 0, reason="the socket opener serves root")
def test_socket_in_survives_the_opener_dying(shell):
    import signal
    import time
    from nsshell.plugin import socket_in
    assert shell("new net as a --no-join").rc == 0
    handle = shell.session.sets["a"].handles["net"]
    os.close(socket_in(handle, socket.AF_INET, socket.SOCK_DGRAM))
    openers = _my_openers()
    assert len(openers) == 1, openers
    os.kill(openers[0], signal.SIGKILL)
    deadline = time.monotonic() + 5
    while _my_openers() and time.monotonic() < deadline:
        time.sleep(0.01)
    fd = socket_in(handle, socket.AF_INET, socket.SOCK_DGRAM)   # falls back, then restarts
    try:
        assert _netns_of_socket(fd) == handle.nsid
    finally:
        os.close(fd)
    fd = socket_in(handle, socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert _netns_of_socket(fd) == handle.nsid
        assert len(_my_openers()) == 1
    finally:
        os.close(fd)


def test_user_plugin_cannot_replace_an_installed_one(nsshell, xdg):
    (xdg[1] / "net.py").write_text(GOOD)
    d = _run(nsshell, xdg, "--json", "-c", "plugins")
    assert d.rc == 0, d
    assert d.err.strip() == ("nsshell: plugin net: not loaded: a plugin named 'net' is already "
                             "loaded from entry point nsshell_net (nsshell_net)"), d.err
    found = json.loads(d.out)["plugins"]
    assert [p["status"] for p in found if p["name"] == "net"] == ["loaded", "failed"]
