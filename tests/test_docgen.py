"""The man page and completion scripts: generated from the registry, committed, current."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT
from nsshell import docgen
from nsshell.registry import Registry

MAN = os.path.join(ROOT, "man", "nsshell.1")


@pytest.fixture(scope="module")
def registry():
    return docgen.load_registry()


def test_committed_files_are_current(registry):
    """Fails when a command changed and `python -m nsshell.docgen` was not run."""
    old = docgen.stale(ROOT, registry)
    assert old == [], (f"stale: {old}; regenerate with `.venv/bin/python -m nsshell.docgen` "
                       "and commit man/ and completions/")


def test_check_mode_notices_a_stale_file(tmp_path, registry):
    assert set(docgen.write_all(str(tmp_path), registry)) == set(docgen.OUTPUTS)
    assert docgen.stale(str(tmp_path), registry) == []
    bash = tmp_path / "completions" / "nsshell.bash"
    bash.write_text(bash.read_text().replace("join", "jion"))
    assert docgen.stale(str(tmp_path), registry) == ["completions/nsshell.bash"]
    p = subprocess.run([sys.executable, "-m", "nsshell.docgen", "--check", "--root", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 1 and "completions/nsshell.bash" in p.stderr


def test_every_command_in_man_page_and_scripts(registry):
    with open(MAN) as f:
        man = f.read()
    scripts = {}
    for path in docgen.OUTPUTS:
        if path.startswith("completions/"):
            with open(os.path.join(ROOT, path)) as f:
                scripts[path] = f.read()
    cmds = registry.visible()
    assert len(cmds) >= 15
    for cmd in cmds:
        # each command has its own entry: a .TP whose tag starts with the bold name
        entry = f".TP\n\\fB{docgen._code(cmd.name)}\\fR"
        assert entry in man, f"{cmd.name} has no entry in man/nsshell.1"
        for p in cmd.params:
            for flag in p.flags:
                assert f"\\fB{docgen._code(flag)}\\fR" in man, f"{cmd.name} {flag} not in the man page"
        for path, text in scripts.items():
            assert re.search(rf"(?<![\w-]){re.escape(cmd.name)}(?![\w-])", text), \
                f"{cmd.name} not in {path}"
            assert re.search(rf"(?<![\w-]){re.escape(cmd.words[0])}(?![\w-])", text)


def test_plugin_commands_are_documented(registry):
    groups = registry.groups()
    plugin_cmds = [c for g, cs in groups.items() if g != "core" for c in cs]
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
