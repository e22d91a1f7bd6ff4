"""Help text from command declarations (used by `help`, and by docgen for the man page).

Plain text, laid out for reading at a terminal: a usage line, the summary and
description, the arguments and options in aligned columns (long lines wrapped
with a hanging indent), the sub-commands, and examples.
"""

from __future__ import annotations

import textwrap

from .registry import Command, Param, Registry

MAX_WIDTH = 100


def width() -> int:
    """The width to wrap at: the terminal's (at most MAX_WIDTH), else 80."""
    try:
        import shutil  # here: start-up does not pay for it (bench/README.md)
        cols = shutil.get_terminal_size((80, 24)).columns
    except (OSError, ValueError):
        cols = 80
    return max(40, min(cols, MAX_WIDTH))


def param_spelling(p: Param) -> str:
    if p.kind in ("flag", "opt"):
        return ", ".join(p.flags) + (f" {p.metavar}" if p.kind == "opt" else "")
    if p.kind == "kw":
        return f"{p.keyword} {p.metavar}"
    if p.kind in ("var", "rest"):
        return f"{p.metavar} ..."
    return p.metavar


def param_help(p: Param) -> str:
    text = p.help or ""
    if p.kind == "opt" and p.default not in (None, False, [], ()) and "default" not in text:
        text += f" (default: {p.default})"
    return text.strip()


def _columns(rows: list[tuple[str, str]], total: int, indent: int = 2) -> list[str]:
    """Two aligned columns; the second wraps under itself."""
    if not rows:
        return []
    left = min(max(len(a) for a, _ in rows), 28)
    out = []
    for a, b in rows:
        pad = " " * indent
        if len(a) > left:
            out.append(pad + a)
            first_prefix = pad + " " * (left + 2)
        else:
            first_prefix = pad + a.ljust(left + 2)
        if not b:
            out.append(first_prefix.rstrip())
            continue
        hang = " " * (indent + left + 2)
        wrapped = textwrap.wrap(b, width=max(total - len(hang), 20)) or [""]
        out.append(first_prefix + wrapped[0])
        out.extend(hang + line for line in wrapped[1:])
    return out


def _wrap_usage(cmd: Command, total: int) -> list[str]:
    """The usage line, broken between parameters (never inside `[--opt VALUE]`)."""
    lines, line = [], "  " + cmd.name
    for part in (p.usage() for p in cmd.params):
        if len(line) + 1 + len(part) > total and line.strip() != cmd.name:
            lines.append(line)
            line = " " * (len(cmd.name) + 3) + part
        else:
            line += " " + part
    lines.append(line)
    return lines


def _paragraphs(text: str, total: int) -> list[str]:
    out = []
    for para in text.split("\n\n"):
        para = " ".join(para.split())
        if para:
            out += textwrap.wrap(para, width=total - 2, initial_indent="  ", subsequent_indent="  ")
            out.append("")
    return out[:-1] if out else out


def command_help(cmd: Command, registry: Registry | None = None, total: int | None = None) -> str:
    total = total or width()
    title = f"{cmd.name} - {cmd.summary}" if cmd.summary else cmd.name
    lines = textwrap.wrap(title, width=total, subsequent_indent=" " * (len(cmd.name) + 3))
    lines += ["", "Usage:"]
    lines += _wrap_usage(cmd, total)
    if cmd.description:
        lines += [""] + _paragraphs(cmd.description, total)
    args = [(param_spelling(p), param_help(p)) for p in cmd.params if p.kind not in ("opt", "flag")]
    opts = [(param_spelling(p), param_help(p)) for p in cmd.params if p.kind in ("opt", "flag")]
    if args:
        lines += ["", "Arguments:"] + _columns(args, total)
    if opts:
        lines += ["", "Options:"] + _columns(opts, total)
    if registry is not None:
        subs = registry.subcommands(cmd.name)
        if subs:
            lines += ["", "Sub-commands:"] + _columns([(c.name, c.summary) for c in subs], total)
    if cmd.aliases:
        lines += ["", "Also spelled: " + ", ".join(cmd.aliases)]
    if cmd.examples:
        lines += ["", "Examples:"] + [f"  {e}" for e in cmd.examples]
    return "\n".join(lines)


def overview(registry: Registry, total: int | None = None) -> str:
    total = total or width()
    lines = ["nsshell: create, enter, inspect and keep Linux namespaces.", ""]
    groups = sorted(registry.groups().items(), key=lambda g: (g[0] != "core", g[0]))
    for group, cmds in groups:
        lines.append("Commands:" if group == "core" else f"{group.capitalize()} commands (plugin {group}):")
        lines += _columns([(c.name, c.summary) for c in cmds], total)
        lines.append("")
    from .kernel.nstypes import NAMES
    from .session import REF_ORDER      # the order Session.resolve tries, never restated
    refs = ", ".join(step.form for step in REF_ORDER)
    lines += textwrap.wrap(f"References (REF), tried in this order: {refs}; `TYPE REF` picks "
                           "that type of it (net box).", max(40, total))
    lines += [
        f"TYPES: {' '.join(NAMES)}, joined with + (user+mnt+net), or all.",
        "",
        "`help COMMAND` shows its options and examples; `help language` the grammar (for, if,",
        "&&, ||, quotes, $VAR); Tab completes; `man nsshell` tells all.",
    ]
    return "\n".join(lines)


# -- the language (`help language`, and the man page's LANGUAGE section, from this one text) ---

LANGUAGE_INTRO = (
    "nsshell reads commands as a small POSIX-shell subset, the same at the prompt, in -c, "
    "in script files, from a pipe and through `source` and the Python API.  A command runs "
    "as soon as it is complete: an open quote, an open for/if block, or a line ending in "
    "`&&`, `||` or a backslash goes on on the next line (at the prompt, a `> ` prompt asks "
    "for it).")

LANGUAGE = [
    ("WORDS", "Split at blanks, as sh splits them: 'single quotes' keep everything, "
              "\"double quotes\" keep everything but $-expansions and \\\\, \\\", \\$; a "
              "backslash quotes the next character.  Quotes may span lines."),
    ("CMD ; CMD, newline", "Run one after the other.  `#` at the start of a word begins a "
                           "comment, to the end of the line."),
    ("$NAME ${NAME} $1 $# $@ $?", "A for loop's NAME, else the environment; the script's (or "
                                  "source's) arguments, their count, all of them; the last "
                                  "status.  A value is data, never code: `;`, `#`, quotes "
                                  "and operators in it are plain characters.  Unquoted, a "
                                  "value is split at blanks into words (no globbing); "
                                  "\"$X\" is one word; \"$@\" is one word per argument."),
    ("{1..100} {a..e} {x,y}", "Brace expansion of unquoted words: h{1..3} gives h1 h2 h3 "
                              "(at most 100000 words)."),
    ("CMD && CMD, CMD || CMD", "The second runs only if the first succeeded (&&) or failed "
                               "(||); the status is the last one run."),
    ("! CMD", "`!` alone, then a space, negates CMD's status (0 becomes 1, failures 0).  "
              "`!PROG ARGS` without a space is short for `run PROG ARGS`."),
    ("for NAME in WORDS; do CMDS; done", "Runs CMDS once per word, with $NAME set to it "
                                         "(the words are expanded first)."),
    ("if CMDS; then CMDS; [elif CMDS; then CMDS;] [else CMDS;] fi",
     "Runs the first branch whose condition's last command succeeds."),
    ("true, false", "Succeed; fail (status 1): for conditions."),
    ("errexit", "On by default in batches (-k or `set errexit off` turns it off): a failing "
                "command stops the batch, except, as in sh, a command in an if or elif "
                "condition, one of an && or || list but the last, or one negated with !.  "
                "The batch's status is that of the first failure."),
]


def language_help(total: int | None = None) -> str:
    total = total or width()
    lines = ["LANGUAGE", ""] + _paragraphs(LANGUAGE_INTRO, total) + [""]
    lines += _columns(LANGUAGE, total)
    lines += ["", "Examples:"] + [f"  {e}" for e in LANGUAGE_EXAMPLES]
    return "\n".join(lines)


LANGUAGE_EXAMPLES = [
    "for i in {1..100}; do new net as h$i --no-join; done",
    "if new net as lab --no-join; then persist lab; else echo no lab; fi",
    "new net as a --no-join && persist a || echo failed",
]
