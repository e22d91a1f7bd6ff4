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
    lines += [
        "References (REF): a session name, a persisted name, pid:N, host, a path to a",
        "namespace file, or TYPE:[INODE]; `TYPE REF` picks that type of it (net box).",
        "TYPES: user mnt pid net uts ipc cgroup time, joined with + (user+mnt+net), or all.",
        "",
        "`help COMMAND` shows its options and examples; Tab completes; `man nsshell` tells all.",
    ]
    return "\n".join(lines)
