"""The man page and the bash/zsh/fish completion scripts, generated from the registry.

    python -m nsshell.docgen            # rewrite man/nsshell.1, completions/*, nsshell/command_index.py
    python -m nsshell.docgen --check    # exit 1 (and say which) when a committed file is stale

Every command (plugins' included), its options and examples come from the
declarations, so the documentation cannot drift from the code: a test runs the
--check and fails when someone added a command without regenerating.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tempfile

from .version import __version__
from .helptext import param_help
from .registry import REGISTRY, Command, Param, Registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUTS = {
    "man/nsshell.1": "man_page",
    "completions/nsshell.bash": "bash_completion",
    "completions/_nsshell": "zsh_completion",
    "completions/nsshell.fish": "fish_completion",
    "nsshell/command_index.py": "command_index",   # the registry's lazy index (start-up)
}


# -- what is documented ------------------------------------------------------------------

def load_registry() -> Registry:
    """The built-in commands and the first-party plugins' (installed through entry points),
    never a person's own plugin folder: the output must not depend on who runs this."""
    from . import commands
    commands.load_all()  # every built-in module, also one the index does not know yet
    try:
        from .plugin_loader import load_all
    except ImportError:
        return REGISTRY
    with tempfile.TemporaryDirectory() as empty:
        load_all(folder=empty)
    return REGISTRY


def cli_options() -> list[tuple[list[str], str | None, str]]:
    """(spellings, metavar or None, help) of the nsshell command line, from its parser."""
    from .cli import build_parser
    out = []
    for action in build_parser()._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        takes = action.nargs != 0
        metavar = (action.metavar or action.dest.upper()) if takes else None
        out.append((list(action.option_strings), metavar, action.help or ""))
    return out


def _ordered_groups(registry: Registry) -> list[tuple[str, list[Command]]]:
    return sorted(registry.groups().items(), key=lambda g: (g[0] != "core", g[0]))


def _one_line(text: str) -> str:
    return " ".join(text.split())


# -- facts taken from the code, never restated ------------------------------------------------

def ref_forms() -> list[tuple[str, str]]:
    """(form, description) of each REF form in the order the session resolves them
    (session.REF_ORDER, with the forms the store and the loaded plugins add)."""
    from .commands.persist import install
    from .core.store.persist import DEFAULT_ROOT
    from .session import Session
    s = Session()
    install(s, DEFAULT_ROOT)   # as the CLI does
    try:
        return s.ref_forms()
    finally:
        s.close_all()


def _setenv(values: dict[str, str | None]) -> None:
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@contextlib.contextmanager
def _env(**values: str | None):
    """The environment with VALUES (None: unset), as it was afterwards."""
    old = {k: os.environ.get(k) for k in values}
    _setenv(values)
    try:
        yield
    finally:
        _setenv(old)


def _templated(fn, var: str) -> tuple[str, str]:
    """The path FN computes from $VAR, as a template ($VAR/...), and its default (~/...):
    the code's own function is asked, with $VAR set to its own name, then unset."""
    with _env(**{var: "$" + var}):
        with_var = fn()
    with _env(**{var: None, "HOME": "~"}):
        default = fn()
    return with_var, default


def paths() -> dict[str, str]:
    """The paths nsshell uses, from the constants and functions that use them."""
    from .core.store import keeper, persist, storefs
    from .plugin_loader import GROUP, user_dir
    from .repl.app import history_path
    out = {"persist_root": persist.DEFAULT_ROOT, "persist_env": persist.ENV_ROOT,
           "netns": storefs.NETNS_DIR,
           "keeper_tmp": os.path.join(keeper.TMP, keeper._tmp_base("UID")),
           "keeper_numbered": str(keeper.NUMBERED), "entry_points": GROUP}
    out["history"], out["history_default"] = _templated(history_path, "XDG_STATE_HOME")
    out["plugins"], out["plugins_default"] = _templated(user_dir, "XDG_CONFIG_HOME")
    with tempfile.TemporaryDirectory() as run:     # a private runtime directory, as the
        os.chmod(run, 0o700)                       # keeper wants it, named by its variable
        with _env(XDG_RUNTIME_DIR=run):
            found = keeper._xdg_dir(os.getuid()) or os.path.join(run, "?")
        out["keeper_xdg"] = "$XDG_RUNTIME_DIR" + found[len(run):]
    return out


# -- roff ----------------------------------------------------------------------------------

def _esc(text: str) -> str:
    """Text for a roff line: backslashes and a leading control character made harmless."""
    text = text.replace("\\", "\\e")
    if text[:1] in (".", "'"):
        text = "\\&" + text
    return text


def _code(text: str) -> str:
    """Something typed (a command, an option): minus signs stay minus signs."""
    return _esc(text).replace("-", "\\-")


def _param_usage(p: Param) -> str:
    m = f"\\fI{_code(p.metavar)}\\fR"
    if p.kind == "flag":
        text = "|".join(f"\\fB{_code(f)}\\fR" for f in p.flags)
    elif p.kind == "opt":
        text = "|".join(f"\\fB{_code(f)}\\fR" for f in p.flags) + " " + m
    elif p.kind == "kw":
        text = f"\\fB{_code(p.keyword)}\\fR {m}"
    elif p.kind in ("var", "rest"):
        text = f"{m} ..."
        if p.required:
            return text
    else:
        text = m
    return text if p.required else f"[{text}]"


def _usage_roff(cmd: Command) -> str:
    return " ".join([f"\\fB{_code(cmd.name)}\\fR"] + [_param_usage(p) for p in cmd.params])


def _param_tag(p: Param) -> str:
    if p.kind in ("flag", "opt"):
        text = ", ".join(f"\\fB{_code(f)}\\fR" for f in p.flags)
        return text + (f" \\fI{_code(p.metavar)}\\fR" if p.kind == "opt" else "")
    if p.kind == "kw":
        return f"\\fB{_code(p.keyword)}\\fR \\fI{_code(p.metavar)}\\fR"
    return f"\\fI{_code(p.metavar)}\\fR" + (" ..." if p.kind in ("var", "rest") else "")


def _paragraphs(text: str) -> list[str]:
    return [_esc(_one_line(p)) for p in re.split(r"\n\s*\n", text) if p.strip()]


def _command_roff(cmd: Command) -> list[str]:
    out = [".TP", _usage_roff(cmd), _esc(_one_line(cmd.summary))]
    for para in _paragraphs(cmd.description):
        out += [".IP", para]
    if cmd.params:
        out.append(".RS")
        for p in cmd.params:
            out += [".TP", _param_tag(p), _esc(param_help(p) or p.metavar)]
        out.append(".RE")
    if cmd.aliases:
        out += [".IP", "Also spelled: " + ", ".join(f"\\fB{_code(a)}\\fR" for a in cmd.aliases) + "."]
    if cmd.examples:
        out += [".IP", "Examples:", ".RS", ".RS 4", ".nf"]
        out += [_code(e) for e in cmd.examples]
        out += [".fi", ".RE", ".RE"]
    return out


_EXAMPLES = [
    ("A rootless container (as an unprivileged user; see examples/container.nss).  "
     "A new user namespace owns the others, so root inside it may mount in the new mount "
     "namespace; proc is mounted before pivot_root detaches the host's:",
     ["$ nsshell",
      "host> new user+mnt+pid+uts+ipc+net as box",
      "box> map root",
      "box> mount tmpfs /mnt 64m",
      "box> run mkdir /mnt/upper /mnt/work /mnt/root",
      "box> mount overlay ./rootfs /mnt/upper /mnt/work /mnt/root",
      "box> mount proc /mnt/root/proc",
      "box> mount root /mnt/root",
      "box> hostname box",
      "box> run sh -c 'ps; hostname'"]),
    ("A two-namespace network lab: two network namespaces joined by a veth pair, "
     "one address each, a ping across:",
     ["new net as red --no-join",
      "new net as blue --no-join",
      "net veth red:veth0 blue:veth0",
      "net addr red veth0 10.1.1.1/24",
      "net addr blue veth0 10.1.1.2/24",
      "net up red veth0; net up blue veth0; net up red lo; net up blue lo",
      "join red",
      "run ping -c 1 10.1.1.2"]),
    ("Persisting a namespace so it outlives the shell, and reusing it with ip-netns(8) "
     "and from a later nsshell:",
     ["$ nsshell -c 'new net as lab --no-join; persist lab'",
      "$ ip netns exec lab ip link",
      "$ nsshell -c 'join net lab; run ip link'",
      "$ nsshell -c 'unpersist lab'"]),
    ("A script (the first line makes it executable), its arguments in $1, $2, ...:",
     ["#!/usr/bin/env nsshell",
      "new user+uts; map root",
      "hostname $1",
      "run hostname"]),
]


def _language_roff() -> list[str]:
    """The LANGUAGE section, from the text `help language` shows (nsshell/helptext.py)."""
    from .helptext import LANGUAGE, LANGUAGE_EXAMPLES, LANGUAGE_INTRO
    out = [".SH LANGUAGE", _esc(_one_line(LANGUAGE_INTRO))]
    for term, text in LANGUAGE:
        out += [".TP", "\\fB" + _code(term) + "\\fR", _esc(_one_line(text))]
    out += [".PP", "Examples:", ".RS", ".nf"] + [_code(e) for e in LANGUAGE_EXAMPLES] + [".fi", ".RE"]
    return out


def man_page(registry: Registry | None = None) -> str:
    registry = registry or load_registry()
    from .kernel import nstypes
    where = paths()
    L: list[str] = []
    add = L.extend
    add([
        '.\\" Generated by `python -m nsshell.docgen` from the command registry: do not edit.',
        f'.TH NSSHELL 1 "" "nsshell {__version__}" "User Commands"',
        ".SH NAME",
        "nsshell \\- an interactive shell and scripting language for Linux namespaces",
        ".SH SYNOPSIS",
        ".SY nsshell",
        "[\\fIoptions\\fR]",
        ".YS",
        ".SY nsshell",
        "[\\fIoptions\\fR] \\fB\\-c\\fR \\fITEXT\\fR",
        ".YS",
        ".SY nsshell",
        "[\\fIoptions\\fR] \\fIFILE\\fR [\\fIARG\\fR ...]",
        ".YS",
        ".SY nsshell",
        "[\\fIoptions\\fR] < \\fIFILE\\fR",
        ".YS",
        ".SH DESCRIPTION",
        "\\fBnsshell\\fR is a workbench for Linux namespaces: a shell that holds a live file "
        "descriptor to every namespace it knows, so a person can create namespaces, map user "
        "and group ids, enter them, run programs inside, name, inspect, compare and keep them, "
        "at a terminal or from a script, as root or as an unprivileged user (through user "
        "namespaces).",
        ".PP",
        "Without arguments and with a terminal on standard input, \\fBnsshell\\fR is "
        "interactive: the prompt and a bottom toolbar show the current context, the user "
        "namespace's uid mapping and the last status; Tab completes commands, sub-commands, "
        "options, namespace types, names, process ids, interface names and paths, each "
        "candidate with a description; the history is kept between sessions, suggested while "
        "typing (Right arrow accepts) and searched with Ctrl-R.  Ctrl-C clears the line, or "
        "goes to the program that \\fBrun\\fR started; Ctrl-D leaves.",
        ".PP",
        "With \\fB\\-c\\fR, a \\fIFILE\\fR, or commands on a pipe, it runs them and exits: "
        "no prompt and no colours.  Output is drawn with colours and tables on a terminal, "
        "as plain text in a pipe or when NO_COLOR is set, and as JSON with \\fB\\-\\-json\\fR "
        "(or \\fB\\-\\-json\\fR after one command).",
        ".PP",
        "The shell process itself never calls \\fBsetns\\fR(2) or \\fBunshare\\fR(2): helper "
        "processes forked for the purpose do, and hand back namespace file descriptors.",
        ".SH OPTIONS",
    ])
    for spellings, metavar, help_ in cli_options():
        tag = ", ".join(f"\\fB{_code(s)}\\fR" for s in spellings)
        if metavar:
            tag += f" \\fI{_code(metavar)}\\fR"
        add([".TP", tag, _esc(_one_line(help_))])
    add([
        ".TP", "\\fIFILE\\fR [\\fIARG\\fR ...]",
        "A script of nsshell commands; a first line \\fB#!/usr/bin/env nsshell\\fR makes it "
        "executable.  Its arguments are $1, $2, ... ($# their count, $@ all of them).",
        *_language_roff(),
        ".SH \"THE COMMAND LANGUAGE\"",
        "How namespaces are named and which ones commands act in.",
        ".SS \"Namespace types\"",
        f"\\fITYPES\\fR is one or more of \\fB{' '.join(nstypes.NAMES)}\\fR ("
        + ", ".join(f"\\fB{a}\\fR is \\fB{t}\\fR" for a, t in nstypes.ALIASES.items())
        + "), joined with \\fB+\\fR (\\fBuser+mnt+net\\fR), or \\fBall\\fR.",
        ".SS \"References (REF)\"",
        "A \\fIREF\\fR names namespaces, and is resolved in this order:",
    ])
    for form, what in ref_forms():
        add([".TP", f"\\fB{_code(form)}\\fR", _esc(_one_line(what))])
    add([
        ".PP",
        "\\fITYPE REF\\fR picks one namespace of a set (\\fBnet box\\fR), wherever a \\fIREF\\fR "
        "is taken (\\fBshow user box\\fR, \\fBclose net box\\fR).",
        ".SS \"The context\"",
        "The session has a current context: one namespace of each type, at the start the "
        "shell's own (\\fBhost\\fR).  \\fBrun\\fR, \\fBsh\\fR, \\fBnew\\fR, \\fBmap\\fR, "
        "\\fBhostname\\fR and the plugins' commands act in it; \\fBnew\\fR joins the set it "
        "creates, \\fBjoin\\fR and \\fBleave\\fR change it, \\fBctx\\fR shows it.  The prompt "
        "and the toolbar show it too: \\fBhost\\fR, a set's name, or \\fINAME\\fB:\\fItypes\\fR "
        "when only some types of a set are current.",
        ".SH COMMANDS",
        "At the prompt, \\fBhelp\\fR \\fICOMMAND\\fR shows what this section says of one "
        "command.  \\fB\\-\\-json\\fR after a command that shows data gives JSON.",
    ])
    for group, cmds in _ordered_groups(registry):
        title = "Core commands" if group == "core" else f"{group} commands (plugin)"
        add([f'.SS "{_esc(title)}"'])
        for cmd in cmds:
            add(_command_roff(cmd))
    add([
        ".SH \"EXIT STATUS\"",
        "0 when every command succeeded; otherwise the status of the first failing command, "
        "and a batch stops there (unless \\fBset errexit off\\fR or \\fB\\-k\\fR).",
    ])
    from .errors import EXIT_STATUSES  # the statuses come from the code, never restated
    for code, meaning in EXIT_STATUSES:
        add([".TP", "\\fB" + _esc(code) + "\\fR", _esc(meaning)])
    add([
        ".PP",
        "\\fBrun\\fR's status is the program's own.  \\fBexit\\fR \\fIN\\fR leaves with \\fIN\\fR, "
        "Ctrl-D with 0.  Errors go to standard error as one line, "
        "\\fBnsshell: \\fIWHERE\\fB: \\fIwhat went wrong\\fR, with a hint where one helps.",
        ".SH ENVIRONMENT",
        ".TP", ".B NO_COLOR",
        "When set (to anything), output is plain text even on a terminal "
        "(https://no\\-color.org).",
        ".TP", ".B TERM",
        "\\fBdumb\\fR gives plain text and no progress display.",
        ".TP", f".B {where['persist_env']}",
        f"The persist root (default \\fI{_code(where['persist_root'])}\\fR; the "
        "\\fBpersist_root\\fR setting and \\fBpersist \\-\\-root\\fR change it too).",
        ".TP", ".B XDG_STATE_HOME",
        f"Where the history is kept (default \\fI{_code(where['history_default'])}\\fR).",
        ".TP", ".B XDG_CONFIG_HOME",
        f"Where the plugin folder is (default \\fI{_code(where['plugins_default'])}\\fR).",
        ".TP", ".B XDG_RUNTIME_DIR",
        "Where an unprivileged user's keeper socket is (when it is a private directory).",
        ".TP", ".B SHELL",
        "The program \\fBsh\\fR starts (default \\fI/bin/sh\\fR).",
        ".TP", ".B PATH",
        "Searched by \\fBrun\\fR, inside the context.",
        ".SH FILES",
        ".TP", f".I {_code(where['history'])}",
        f"The interactive history (default \\fI{_code(where['history_default'])}\\fR).",
        ".TP", f".I {_code(where['persist_root'])}/NAME/",
        "The persist root: bind mounts of persisted namespaces, one file per type.",
        ".TP", f".I {_code(where['netns'])}/NAME",
        "A persisted network namespace, also under the name \\fBip netns\\fR uses.",
        ".TP", f".I {_code(where['keeper_xdg'])}/", f"(or \\fI{_code(where['keeper_tmp'])}/\\fR)",
        "The socket of the per-user keeper: an unprivileged user cannot bind-mount, so "
        "\\fBpersist\\fR hands the namespaces' file descriptors to a small process that holds "
        "them for later shells of the same user.  Only a directory the user owns, mode 0700, "
        f"is used: when another user has taken that name in {_code(os.path.dirname(where['keeper_tmp']))}, "
        f"the keeper lives in \\fI{_code(where['keeper_tmp'])}.N/\\fR "
        f"(N = 1..{where['keeper_numbered']}) or a random "
        f"\\fI{_code(where['keeper_tmp'])}.XXXXXXXX/\\fR, found by its owner.",
        ".TP", f".I {_code(where['plugins'])}/",
        "The plugin folder: Python files or packages with a \\fBregister(api)\\fR function "
        f"(default \\fI{_code(where['plugins_default'])}/\\fR).  Installed packages register "
        f"through the entry-point group \\fB{_code(where['entry_points'])}\\fR.",
        ".SH EXAMPLES",
    ])
    for i, (text, lines) in enumerate(_EXAMPLES):
        if i:
            add([".PP"])
        add([_esc(text), ".PP", ".RS 4", ".nf"] + [_code(x) for x in lines] + [".fi", ".RE"])
    add([
        ".SH \"SEE ALSO\"",
        ".BR unshare (1),",
        ".BR nsenter (1),",
        ".BR lsns (8),",
        ".BR ip\\-netns (8),",
        ".BR namespaces (7),",
        ".BR user_namespaces (7),",
        ".BR pid_namespaces (7),",
        ".BR network_namespaces (7),",
        ".BR newuidmap (1)",
    ])
    return "\n".join(L) + "\n"


# -- completion scripts ------------------------------------------------------------------------

def _commands_with_summaries(registry: Registry) -> list[tuple[str, str]]:
    """First words of the commands (`net` for `net veth`), with a summary."""
    seen: dict[str, str] = {}
    for c in registry.visible():
        first = c.words[0]
        if len(c.words) == 1:
            seen[first] = _one_line(c.summary)
        else:
            seen.setdefault(first, f"{first} commands")
    return sorted(seen.items())


def _all_command_names(registry: Registry) -> list[str]:
    return [c.name for c in registry.visible()]


def _sh_single(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def bash_completion(registry: Registry | None = None) -> str:
    registry = registry or load_registry()
    opts = [s for spellings, _, _ in cli_options() for s in spellings]
    with_value = [s for spellings, m, _ in cli_options() if m for s in spellings]
    words = " ".join(w for w, _ in _commands_with_summaries(registry))
    names = " ".join(_sh_single(n) for n in _all_command_names(registry))
    return f"""# bash completion for nsshell -*- shell-script -*-
# Generated by `python -m nsshell.docgen` from the command registry: do not edit.
# Install: copy to /usr/share/bash-completion/completions/nsshell (or source it).

# every command nsshell knows: {names}
_nsshell_words="{words}"

# Candidates for the text of a -c argument, through the hidden `nsshell --complete`.
_nsshell_line() {{
    local line=$1 quote="" before cands c
    case $line in
        \\'*|\\"*) quote=${{line:0:1}}; line=${{line:1}} ;;
    esac
    # what goes before the word under the cursor
    before=${{line%"${{line##*[[:space:];]}}"}}
    cands=$("${{_nsshell_cmd:-nsshell}}" --complete "$line" 2>/dev/null | cut -f1)
    if [[ -z $cands && $before == "" ]]; then
        cands=$(compgen -W "$_nsshell_words" -- "$line")
    fi
    local IFS=$'\\n'
    for c in $cands; do
        COMPREPLY+=("$before$c")
    done
}}

_nsshell() {{
    local cur prev i
    COMPREPLY=()
    cur=${{COMP_WORDS[COMP_CWORD]}}
    prev=${{COMP_WORDS[COMP_CWORD-1]}}
    _nsshell_cmd=${{COMP_WORDS[0]}}
    case $prev in
        -c)
            compopt -o nospace 2>/dev/null
            _nsshell_line "$cur"
            return 0 ;;
        {"|".join(w for w in with_value if w != "-c") or "--never--"})
            return 0 ;;
    esac
    # after a script FILE, its arguments are its own business
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${{COMP_WORDS[i]}} in
            -c) ((i++)) ;;
            -*) ;;
            *) compopt -o default 2>/dev/null; return 0 ;;
        esac
    done
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "{" ".join(opts)} --help" -- "$cur"))
        return 0
    fi
    compopt -o filenames 2>/dev/null
    COMPREPLY=($(compgen -f -- "$cur"))
    return 0
}}
complete -F _nsshell nsshell
"""


def _zsh_quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace(":", "\\:").replace("'", "'\\''").replace("[", "\\[").replace("]", "\\]")


def zsh_completion(registry: Registry | None = None) -> str:
    registry = registry or load_registry()
    specs = []
    for spellings, metavar, help_ in cli_options():
        h = _zsh_quote(_one_line(help_))
        if spellings == ["-c"]:
            action = ":commands:_nsshell_line"
        elif metavar:
            action = f":{metavar.lower()}:"
        else:
            action = ""
        if len(spellings) > 1:
            excl = "(" + " ".join(spellings) + ")"
            specs.append(f"'{excl}'{{{','.join(spellings)}}}'[{h}]{action}'")
        else:
            specs.append(f"'{spellings[0]}[{h}]{action}'")
    specs.append("'(-c)1:script:_files'")
    specs.append("'*::argument:_files'")
    cmds = "\n".join(f"    '{_zsh_quote(w)}:{_zsh_quote(s)}'" for w, s in _commands_with_summaries(registry))
    names = " ".join(_all_command_names(registry))
    spec_text = " \\\n    ".join(specs)
    return f"""#compdef nsshell
# zsh completion for nsshell.
# Generated by `python -m nsshell.docgen` from the command registry: do not edit.
# Install: put this file, named _nsshell, in a directory of $fpath.

# every command nsshell knows: {names}
_nsshell_commands=(
{cmds}
)

# The text of a -c argument: candidates from the hidden `nsshell --complete`.
_nsshell_line() {{
    local line=$PREFIX
    local -a out cands
    out=(${{(f)"$(${{words[1]:-nsshell}} --complete "$line" 2>/dev/null)"}})
    compset -P '*[[:space:];]'
    if (( ${{#out}} == 0 )) && [[ $line != *[[:space:]]* ]]; then
        _describe -t commands 'nsshell command' _nsshell_commands
        return
    fi
    local c w d
    for c in $out; do
        w=${{c%%$'\\t'*}}
        d=${{c#*$'\\t'}}
        [[ $d == $c ]] && d=""
        w=${{w//:/\\\\:}}
        cands+=("$w${{d:+:$d}}")
    done
    _describe -t nsshell-words 'nsshell' cands
}}

_arguments -s -S \\
    {spec_text}
"""


def _fish_quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def fish_completion(registry: Registry | None = None) -> str:
    registry = registry or load_registry()
    lines = [
        "# fish completion for nsshell.",
        "# Generated by `python -m nsshell.docgen` from the command registry: do not edit.",
        "# Install: copy to ~/.config/fish/completions/nsshell.fish",
        "",
        "# every command nsshell knows: " + " ".join(_all_command_names(registry)),
        "",
        "# The text of a -c argument: candidates from the hidden `nsshell --complete`,",
        "# each the whole argument as it would read with the word completed.",
        "function __nsshell_line",
        "    set -l line (commandline -ct)",
        "    set -l line (string replace -r -- '^[\\'\"]' '' $line)",
        "    set -l before (string replace -r -- '[^\\s;]*$' '' $line)",
        "    set -l nsshell (commandline -opc)[1]",
        "    set -l out",
        "    if command -q $nsshell",
        "        set out (command $nsshell --complete \"$line\" 2>/dev/null)",
        "    end",
        "    if test (count $out) -eq 0; and test -z \"$before\"",
        "        set out (__nsshell_commands)",
        "    end",
        "    for c in $out",
        "        echo \"$before$c\"",
        "    end",
        "end",
        "",
        "# The commands nsshell knows (when the helper cannot be asked).",
        "function __nsshell_commands",
    ] + [f"    echo {_fish_quote(w + chr(9) + s)}" for w, s in _commands_with_summaries(registry)] + [
        "end",
        "",
        "complete -c nsshell -f",
    ]
    for spellings, metavar, help_ in cli_options():
        parts = ["complete -c nsshell"]
        for s in spellings:
            parts.append(f"-l {s[2:]}" if s.startswith("--") else f"-s {s[1:]}")
        if spellings == ["-c"]:
            parts.append("-x -a '(__nsshell_line)'")
        elif metavar:
            parts.append("-r")
        parts.append(f"-d {_fish_quote(_one_line(help_))}")
        lines.append(" ".join(parts))
    lines.append("complete -c nsshell -n 'not __fish_seen_subcommand_from -c' -F "
                 "-d 'script of nsshell commands'")
    return "\n".join(lines) + "\n"


def command_index(registry: Registry) -> str:
    from .commands import render_index
    return render_index(registry)


# -- writing and checking ------------------------------------------------------------------------

def render_all(registry: Registry | None = None) -> dict[str, str]:
    registry = registry or load_registry()
    return {path: globals()[fn](registry) for path, fn in OUTPUTS.items()}


def stale(root: str = ROOT, registry: Registry | None = None) -> list[str]:
    """The committed files that differ from what the registry gives now."""
    out = []
    for path, text in render_all(registry).items():
        try:
            with open(os.path.join(root, path)) as f:
                if f.read() == text:
                    continue
        except OSError:
            pass
        out.append(path)
    return out


def write_all(root: str = ROOT, registry: Registry | None = None) -> list[str]:
    written = []
    for path, text in render_all(registry).items():
        full = os.path.join(root, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        try:
            with open(full) as f:
                if f.read() == text:
                    continue
        except OSError:
            pass
        with open(full, "w") as f:
            f.write(text)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m nsshell.docgen",
                                description="Regenerate man/nsshell.1 and completions/ from the registry.")
    p.add_argument("--check", action="store_true", help="only say which files are stale (exit 1)")
    p.add_argument("--root", default=ROOT, help="the checkout to write into")
    opts = p.parse_args(argv)
    if opts.check:
        old = stale(opts.root)
        for path in old:
            print(f"stale: {path}", file=sys.stderr)
        if old:
            print("run: python -m nsshell.docgen", file=sys.stderr)
        return 1 if old else 0
    for path in write_all(opts.root):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
