"""Completion: the registry-driven logic (nsshell.complete), the hidden `nsshell --complete`,
and the generated bash/zsh/fish scripts run by the real shells."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from conftest import ROOT, nsshell_argv
from nsshell.complete import complete_line, split_partial, word_start
from nsshell.registry import Annotated, Registry
from nsshell.types import ParamType, Ref

BIN = os.path.dirname(nsshell_argv()[0])
SCRIPTS = os.path.join(ROOT, "completions")


def texts(session, line):
    return [c.text for c in complete_line(session, line).candidates]


def cands(session, line):
    return {c.text: c for c in complete_line(session, line).candidates}


# -- the logic ------------------------------------------------------------------------------

def test_command_names(shell):
    assert texts(shell.session, "jo") == ["join"]
    got = cands(shell.session, "")
    assert {"new", "join", "run", "help", "map"} <= set(got)
    assert got["new"].meta.startswith("Create namespaces")
    assert got["join"].suffix == " "


def test_every_command_is_reachable_word_by_word(shell):
    from nsshell.registry import REGISTRY
    for cmd in REGISTRY.visible():
        words = cmd.words
        for i, w in enumerate(words):
            before = " ".join(words[:i]) + (" " if i else "")
            got = texts(shell.session, before + w[:1])
            assert w in got, (cmd.name, before + w[:1], got)


def test_sub_commands_beside_arguments(shell):
    got = cands(shell.session, "map ")
    assert {"root", "auto"} <= set(got)
    assert "unshare -r" in got["root"].meta
    assert texts(shell.session, "help map r") == ["root"]


def test_types_go_on_after_plus(shell):
    got = complete_line(shell.session, "new user+mn")
    assert [c.text for c in got.candidates] == ["user+mnt"]
    assert got.candidates[0].suffix == ""          # +net may follow
    assert got.word == "user+mn"
    assert "user" not in texts(shell.session, "new user+")[0].split("+")[1:]
    assert "user+net" in texts(shell.session, "new user+")


def test_options_and_their_values(shell):
    got = cands(shell.session, "new net --no")
    assert list(got) == ["--no-join"]
    assert got["--no-join"].meta
    assert set(texts(shell.session, "new net --propagation ")) == {"private", "shared", "slave",
                                                                      "unchanged"}
    # an option already given is not offered again
    assert "--no-join" not in texts(shell.session, "new net --no-join --")
    # when no more words may come, Tab on nothing offers the options left
    assert "--no-join" in texts(shell.session, "new net as x ")
    assert "--json" in texts(shell.session, "ctx ")


def test_keyword_and_names(shell, prefix):
    assert "as" in texts(shell.session, "new net ")
    assert shell(f"new uts as {prefix}a --no-join").rc == 0
    got = cands(shell.session, f"close {prefix}")
    assert list(got) == [f"{prefix}a"]
    assert "uts" in got[f"{prefix}a"].meta
    assert f"{prefix}a" in texts(shell.session, "join uts ")
    assert "host" in texts(shell.session, "join ")


def test_pids_and_held_ids(shell):
    got = cands(shell.session, f"join pid:{os.getpid()}")
    assert f"pid:{os.getpid()}" in got
    with open(f"/proc/{os.getpid()}/comm") as f:
        assert got[f"pid:{os.getpid()}"].meta == f.read().strip()
    net = str(shell.session.host.handles["net"].nsid)
    assert net in texts(shell.session, "join net:[")


def test_programs_and_paths(shell, tmp_path):
    assert "echo" in texts(shell.session, "run ech")
    assert "echo" in texts(shell.session, "!ech")
    (tmp_path / "script.nss").write_text("echo hi\n")
    (tmp_path / "sub").mkdir()
    got = cands(shell.session, f"source {tmp_path}/")
    assert f"{tmp_path}/script.nss" in got
    assert got[f"{tmp_path}/sub/"].suffix == ""    # a directory goes on
    assert f"{tmp_path}/script.nss" in texts(shell.session, f"run cat {tmp_path}/scr")


def test_last_command_of_a_line_and_comments(shell):
    assert texts(shell.session, "echo a; jo") == ["join"]
    assert texts(shell.session, "echo 'a; jo") == []     # inside quotes: one word of echo
    assert texts(shell.session, "# jo") == []


def test_split_partial():
    assert split_partial("new user+m") == (["new"], "user+m")
    assert split_partial("new ") == (["new"], "")
    assert split_partial("echo 'a b' 'c d") == (["echo", "a b"], "c d")
    assert split_partial("a; b c") == (["b"], "c")
    assert split_partial("!ho") == (["run"], "ho")
    assert word_start("echo 'a b' 'c d") == len("echo 'a b' ")


class Thing(ParamType):
    """A type whose candidates depend on the REF typed before it."""
    metavar = "THING"
    seen: dict = {}

    def complete(self, prefix, session, *, args=None):
        Thing.seen = dict(args or {})
        return [(f"{args['ref']}-{n}", "a thing") for n in ("one", "two")]


POKE = Registry()


@POKE.command("poke")
def poke(sh, ref: Annotated[object, Ref()], thing: Annotated[str, Thing()]):
    """Poke a thing."""


def test_a_type_sees_the_words_typed_before(shell, prefix):
    """A parameter type whose complete() takes `args` (e.g. interface names of the REF
    before them) gets the words typed so far, by parameter name."""
    assert shell(f"new uts as {prefix}k --no-join").rc == 0
    got = complete_line(shell.session, f"poke {prefix}k ", POKE)
    assert [c.text for c in got.candidates] == [f"{prefix}k-one", f"{prefix}k-two"]
    assert Thing.seen == {"ref": f"{prefix}k"}
    assert [c.text for c in complete_line(shell.session, f"poke {prefix}k zz", POKE).candidates] == []
    assert [c.text for c in complete_line(shell.session, f"poke {prefix}", POKE).candidates] == [f"{prefix}k"]


def test_interface_names(nsshell):
    """net's interface type, through the real nsshell (plugins loaded): `net up REF l<Tab>`
    offers lo of that namespace; `net veth REF:l<Tab>` too."""
    r = nsshell("--complete", "net up host l")
    if r.out == "" and "net up" not in nsshell("-c", "help net").out:
        pytest.skip("the net plugin is not installed")
    assert [line.split("\t")[0] for line in r.out.splitlines()] == ["lo"]
    r = nsshell("--complete", "net veth host:l")
    assert "host:lo" in [line.split("\t")[0] for line in r.out.splitlines()]


# -- the hidden helper ------------------------------------------------------------------------

def test_complete_helper(nsshell):
    r = nsshell("--complete", "new user+m")
    assert r.rc == 0, r
    assert r.out.splitlines() == ["user+mnt\tmount table"]
    r = nsshell("--complete", "jo")
    assert r.out.startswith("join\t")
    r = nsshell("--complete", "echo x; new net --no-j")
    assert r.out.split("\t")[0] == "--no-join"
    # names that earlier commands of the same -c text will make
    r = nsshell("--complete", "new net as lab --no-join; name pid:1 web; join ")
    got = [line.split("\t")[0] for line in r.out.splitlines()]
    assert {"lab", "web", "host", "net"} <= set(got)


# -- the shells ------------------------------------------------------------------------------

def _bash(words: list[str], cword: int | None = None, cwd: str = "/tmp") -> list[str]:
    cword = len(words) - 1 if cword is None else cword
    arr = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    script = (f"source {SCRIPTS}/nsshell.bash\n"
              f"COMP_WORDS=({arr}); COMP_CWORD={cword}; COMPREPLY=()\n"
              "_nsshell\n"
              "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True,
                       text=True, env=env, cwd=cwd, timeout=60)
    assert p.returncode == 0, p.stderr
    return [line for line in p.stdout.splitlines() if line]


def test_bash_options_and_files(tmp_path):
    assert _bash(["nsshell", "--js"]) == ["--json"]
    assert set(_bash(["nsshell", "-"])) >= {"-c", "--json", "-k", "--keep-going", "--debug",
                                            "--no-plugins", "--version", "--help"}
    (tmp_path / "lab.nss").write_text("echo\n")
    assert _bash(["nsshell", "la"], cwd=str(tmp_path)) == ["lab.nss"]


def test_bash_inside_c(tmp_path):
    assert _bash(["nsshell", "-c", "'jo"]) == ["join"]
    assert _bash(["nsshell", "-c", "'new user+mn"]) == ["new user+mnt"]
    assert _bash(["nsshell", "--json", "-c", "\"echo a; jo"]) == ["echo a; join"]
    assert "map root" in _bash(["nsshell", "-c", "'map r"])
    assert "join host" in _bash(["nsshell", "-c", "'join "])
    assert _bash(["nsshell", "-c", "'new net as lab; join l"]) == ["new net as lab; join lab"]
    # the word after -c's text is a script argument no more: nothing from nsshell there
    assert _bash(["nsshell", "-c", "ctx", "--js"]) == ["--json"]


def test_bash_lists_every_command():
    from nsshell.registry import REGISTRY
    got = set(_bash(["nsshell", "-c", "'"]))
    assert {c.words[0] for c in REGISTRY.visible()} <= got


@pytest.mark.skipif(not shutil.which("zsh"), reason="zsh is not installed")
def test_zsh_parses_the_script():
    p = subprocess.run(["zsh", "-n", os.path.join(SCRIPTS, "_nsshell")], capture_output=True, text=True)
    assert p.returncode == 0 and not p.stderr, p.stderr


@pytest.mark.skipif(not shutil.which("fish"), reason="fish is not installed")
def test_fish_parses_and_completes(tmp_path):
    script = os.path.join(SCRIPTS, "nsshell.fish")
    p = subprocess.run(["fish", "-n", script], capture_output=True, text=True)
    assert p.returncode == 0 and not p.stderr, p.stderr
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}",
               HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path))

    def fish(line: str) -> list[str]:
        q = line.replace("\\", "\\\\").replace("'", "\\'")
        p = subprocess.run(["fish", "--no-config", "-c", f"source {script}; complete -C '{q}'"],
                           capture_output=True, text=True, env=env, timeout=60)
        assert p.returncode == 0, p.stderr
        return [x.split("\t")[0] for x in p.stdout.splitlines()]

    assert fish("nsshell -c 'new user+mn") == ["new user+mnt"]
    assert fish("nsshell -c 'jo") == ["join"]
    assert fish("nsshell --js") == ["--json"]
    # with no helper to ask, the command names still come (from the script itself)
    assert "join" in fish("/nonexistent/nsshell -c 'jo")


# -- completion driven by the parameter types only ---------------------------------------------

@pytest.fixture
def plugged():
    """A session with the first-party plugins loaded (their commands, types and REF schemes),
    as the installed nsshell has them."""
    from nsshell.docgen import load_registry
    from nsshell.session import Session
    registry = load_registry()
    if registry.lookup(["net", "veth"]) is None:
        pytest.skip("the net plugin is not installed")
    s = Session()
    yield s
    s.close_all()


def _repl(session, text: str) -> list[str]:
    """What Tab offers at the end of TEXT in the REPL (its prompt_toolkit completer)."""
    from prompt_toolkit.completion import CompleteEvent
    from prompt_toolkit.document import Document
    from nsshell.repl.completer import NsCompleter
    got = NsCompleter(session).get_completions(Document(text), CompleteEvent(completion_requested=True))
    return [c.text for c in got]


def _helper(nsshell, line: str) -> list[str]:
    r = nsshell("--complete", line)
    assert r.rc == 0 and not r.err, r
    return [x.split("\t")[0] for x in r.out.splitlines()]


def test_refs_complete_everywhere_a_ref_is_taken(plugged, nsshell):
    """pid:N, paths, names and TYPE:[INODE] complete for a plugin's REF-taking type
    (net veth's REF[:IF]) as for the built-ins' REF: in the REPL and through the helper."""
    me = str(os.getpid())
    repl = _repl(plugged, f"net veth pid:{me}")
    assert f"pid:{me} " in repl
    assert _repl(plugged, "net veth /proc/se") == ["/proc/self/"]          # a directory goes on
    assert f"pid:{me} " in _repl(plugged, f"open pid:{me}")
    assert "pid:1 " in _repl(plugged, "open pid:")
    assert "pid:" in _repl(plugged, "join pi")                            # the scheme, no space
    assert _repl(plugged, "new us") == ["user"]                            # +mnt may follow
    assert "host " in _repl(plugged, "name ")
    net = str(plugged.host.handles["net"].nsid)
    assert net + " " in _repl(plugged, "net veth net:[")
    assert "/proc/self/" in _helper(nsshell, "net veth /proc/se")
    assert "pid:1" in _helper(nsshell, "net veth pid:1")
    assert "pid:1" in _helper(nsshell, "open pid:")
    assert _helper(nsshell, "new us") == ["user"]
    assert "host" in _helper(nsshell, "name ")
    # the plugin's own schemes (podman:, docker:) come through the same Ref completion
    assert {"podman:", "pid:"} <= set(_repl(plugged, "net veth p"))
    assert "docker:" in _repl(plugged, "net veth d")
    assert "docker:" in _helper(nsshell, "net veth d")


def test_bash_completes_plugin_refs():
    assert "net veth pid:1" in _bash(["nsshell", "-c", "'net veth pid:1"])
    assert _bash(["nsshell", "-c", "'net veth /proc/se"]) == ["net veth /proc/self/"]


def test_every_parameter_type_completes_or_says_it_does_not(plugged):
    """The class, not the example: every parameter of every registered command (the
    plugins' included) is asked for candidates directly (errors are not swallowed here).
    A type that completes offers something for some start of a word; one that
    deliberately does not (a number, a new name) offers nothing."""
    from nsshell.complete import as_candidate
    from nsshell.registry import REGISTRY
    from nsshell.types import Ctx
    cwd = os.getcwd()
    os.chdir(ROOT)                       # a Path type has something to offer here
    try:
        asked = 0
        for cmd in REGISTRY.commands.values():
            for p in cmd.params:
                ctx = Ctx({}, [], REGISTRY)
                got = {prefix: [as_candidate(c) for c in p.type.complete(prefix, plugged, ctx)]
                       for prefix in ("", "/", "pid:", "l")}
                for prefix, cands in got.items():
                    for c in cands:
                        assert isinstance(c.text, str) and c.text.startswith(prefix), \
                            (cmd.name, p.name, prefix, c)
                        assert isinstance(c.meta, str) and c.suffix in ("", " ")
                if p.type.completes:
                    assert any(got.values()), (cmd.name, p.name, type(p.type).__name__)
                else:
                    assert not any(got.values()), (cmd.name, p.name, got)
                asked += 1
        assert asked > 50
    finally:
        os.chdir(cwd)


def test_new_names_of_a_line_come_from_the_types(plugged):
    """The names earlier commands of a -c text will make are read by the parser from the
    parameters whose type gives a name, whatever the command."""
    from nsshell.complete import names_made_earlier
    line = "new net as n1 --no-join; open pid:1 net as n2; name n1 n3; echo as n4; join "
    assert names_made_earlier(line) == ["n1", "n2", "n3"]


def test_options_offered_by_their_declared_needs(plugged):
    """`new --mount-proc` needs pid and mnt (declared with the option): offered only then."""
    assert "--mount-proc" not in texts(plugged, "new net --")
    assert "--mount-proc" in texts(plugged, "new pid+mount --")
    assert "--monotonic" in texts(plugged, "new all --")
    assert "--propagation" not in texts(plugged, "new time --")
