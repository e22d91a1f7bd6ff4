"""The man page and completion scripts: generated from the registry, committed, current."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass

import pytest

from conftest import ROOT
from nsshell import docgen
from nsshell.registry import Registry

MAN = os.path.join(ROOT, "man", "nsshell.1")


def docgen_run(*args: str) -> subprocess.CompletedProcess:
    """python -m nsshell.docgen in a process of its own (plugins load there, not here)."""
    return subprocess.run([sys.executable, "-m", "nsshell.docgen", *args], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)


@dataclass
class Cmd:
    name: str
    group: str
    flags: list


@pytest.fixture(scope="module")
def commands():
    """Every command nsshell knows with its plugins loaded (as `nsshell` and docgen load them)."""
    code = ("import json; from nsshell import docgen; r = docgen.load_registry(); "
            "print(json.dumps([[c.name, c.group, [f for p in c.params for f in p.flags]] "
            "for c in r.visible()]))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    return [Cmd(*c) for c in json.loads(p.stdout)]


def test_committed_files_are_current():
    """Fails when a command changed and `python -m nsshell.docgen` was not run."""
    p = docgen_run("--check")
    assert p.returncode == 0, (f"{p.stderr.strip()}: regenerate with `.venv/bin/python -m "
                               "nsshell.docgen` and commit man/ and completions/")


def test_check_mode_notices_a_stale_file(tmp_path):
    p = docgen_run("--root", str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert set(p.stdout.split()) >= set(docgen.OUTPUTS)
    assert docgen_run("--check", "--root", str(tmp_path)).returncode == 0
    bash = tmp_path / "completions" / "nsshell.bash"
    bash.write_text(bash.read_text().replace("join", "jion"))
    p = docgen_run("--check", "--root", str(tmp_path))
    assert p.returncode == 1 and "stale: completions/nsshell.bash" in p.stderr
    assert "man/nsshell.1" not in p.stderr


def test_every_command_in_man_page_and_scripts(commands):
    with open(MAN) as f:
        man = f.read()
    scripts = {}
    for path in docgen.OUTPUTS:
        if path.startswith("completions/"):
            with open(os.path.join(ROOT, path)) as f:
                scripts[path] = f.read()
    assert len(commands) >= 15
    for cmd in commands:
        # each command has its own entry: a .TP whose tag starts with the bold name
        entry = f".TP\n\\fB{docgen._code(cmd.name)}\\fR"
        assert entry in man, f"{cmd.name} has no entry in man/nsshell.1"
        for flag in cmd.flags:
            assert f"\\fB{docgen._code(flag)}\\fR" in man, f"{cmd.name} {flag} not in the man page"
        for path, text in scripts.items():
            assert re.search(rf"(?<![\w-]){re.escape(cmd.name)}(?![\w-])", text), \
                f"{cmd.name} not in {path}"
            first = cmd.name.split()[0]
            assert re.search(rf"(?<![\w-]){re.escape(first)}(?![\w-])", text)


def test_plugin_commands_are_documented(commands):
    plugin_cmds = [c for c in commands if c.group != "core"]
    if not plugin_cmds:
        pytest.skip("no plugin is installed")
    with open(MAN) as f:
        man = f.read()
    for c in plugin_cmds:
        assert f"\\fB{docgen._code(c.name)}\\fR" in man


def test_a_new_command_shows_up():
    """Generation really reads the registry: a command declared here appears."""
    reg = Registry()

    @reg.command("frobnicate")
    def frob(sh, *, hard: bool = False):
        """Frobnicate the namespaces.

        Options:
          hard: frobnicate hard

        Examples:
          frobnicate --hard
        """

    man = docgen.man_page(reg)
    assert "\\fBfrobnicate\\fR" in man and "frobnicate hard" in man
    assert "frobnicate \\-\\-hard" in man
    for fn in (docgen.bash_completion, docgen.zsh_completion, docgen.fish_completion):
        assert "frobnicate" in fn(reg)


def test_groff_gives_no_warning():
    p = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", MAN], capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "", p.stderr


def test_man_renders_every_section():
    env = dict(os.environ, MANPAGER="cat", PAGER="cat", MANWIDTH="100", LC_ALL="C.UTF-8")
    p = subprocess.run(["man", "-l", MAN], capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    text = re.sub(r".\x08", "", p.stdout)
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "EXIT STATUS",
                    "ENVIRONMENT", "FILES", "EXAMPLES", "SEE ALSO"):
        assert re.search(rf"^{section}$", text, re.M), section
    for ref in ("unshare(1)", "nsenter(1)", "lsns(8)", "ip-netns(8)", "namespaces(7)",
                "user_namespaces(7)"):
        assert ref in text
    for fact in ("/run/nsshell", "nsshell/history", "nsshell/plugins", "NO_COLOR",
                 "pid:N", "TYPE:[INODE]", "ip netns exec", "map root", "net veth"):
        assert fact in text, fact
    assert "new user+mnt" in text   # an example from a declaration


def test_scripts_parse():
    assert subprocess.run(["bash", "-n", os.path.join(ROOT, "completions", "nsshell.bash")]).returncode == 0
    if shutil.which("zsh"):
        assert subprocess.run(["zsh", "-n", os.path.join(ROOT, "completions", "_nsshell")]).returncode == 0
    if shutil.which("fish"):
        assert subprocess.run(["fish", "-n", os.path.join(ROOT, "completions", "nsshell.fish")]).returncode == 0


def test_pip_install_puts_the_man_page_where_man_finds_it(tmp_path):
    """The wheel carries man/nsshell.1 to PREFIX/share/man/man1 (and the completions to
    their folders); man finds it through PATH, as after `pip install` into a venv."""
    try:
        import hatchling  # noqa: F401
        isolation = ["--no-build-isolation"]
    except ImportError:
        isolation = []
    pip = [sys.executable, "-m", "pip"]
    p = subprocess.run(pip + ["wheel", "-q", "--no-deps", *isolation, "-w", str(tmp_path / "w"), ROOT],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    wheel = glob.glob(str(tmp_path / "w" / "nsshell-*.whl"))[0]
    names = zipfile.ZipFile(wheel).namelist()
    for want in ("share/man/man1/nsshell.1", "share/bash-completion/completions/nsshell",
                 "share/zsh/site-functions/_nsshell", "share/fish/vendor_completions.d/nsshell.fish"):
        assert any(n.endswith(".data/data/" + want) for n in names), want
    # a fresh environment of its own (pip install --prefix would uninstall the nsshell
    # installed where this test runs)
    prefix = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(prefix)], check=True)
    p = subprocess.run(pip + ["--python", str(prefix / "bin" / "python"), "install", "-q",
                              "--no-deps", "--no-index", wheel],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if k != "MANPATH"}
    env["PATH"] = f"{prefix}/bin:/usr/bin:/bin"
    p = subprocess.run(["man", "-w", "nsshell"], capture_output=True, text=True, env=env)
    assert p.stdout.strip() == f"{prefix}/share/man/man1/nsshell.1", (p.stdout, p.stderr)


def test_man_page_takes_ref_order_and_paths_from_the_code():
    """The REF forms appear in the order Session.resolve tries them (session.REF_ORDER,
    with the store's and the plugins' forms in their place), each with its description;
    every path the code uses appears as the code's constant gives it."""
    code = ("import json; from nsshell import docgen; docgen.load_registry(); "
            "from nsshell.session import REF_ORDER; "
            "print(json.dumps([docgen.ref_forms(), docgen.paths(), [s.form for s in REF_ORDER]]))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    forms, paths, steps = json.loads(p.stdout)
    assert [f for f, _ in forms][:1] == steps[:1] and [f for f, _ in forms][-4:] == steps[-4:]
    assert any(w.startswith("a persisted name") for _, w in forms)
    with open(MAN) as f:
        man = f.read()
    section = man[man.index('.SS "References (REF)"'):man.index('.SS "The context"')]
    at = 0
    for form, what in forms:
        entry = f".TP\n\\fB{docgen._code(form)}\\fR\n{docgen._esc(docgen._one_line(what))}\n"
        found = section.find(entry, at)
        assert found >= 0, (form, what, "missing or out of order")
        at = found + len(entry)
    for key, value in paths.items():
        assert docgen._code(value) in man, (key, value)
    # the overview of `help` lists the same order
    from nsshell.helptext import overview
    from nsshell.registry import REGISTRY
    text = " ".join(overview(REGISTRY, 200).split())
    assert "tried in this order: " + ", ".join(steps) in text
