"""Help text from command declarations (used by `help`, and by docgen for the man page)."""

from __future__ import annotations

from .registry import Command, Registry


def param_lines(cmd: Command) -> list[tuple[str, str]]:
    out = []
    for p in cmd.params:
        if p.kind in ("flag", "opt"):
            spell = ", ".join(p.flags) + (f" {p.metavar}" if p.kind == "opt" else "")
        elif p.kind == "kw":
            spell = f"{p.keyword} {p.metavar}"
        else:
            spell = p.metavar
        default = ""
        if p.kind == "opt" and p.default not in (None, False, [], ()):
            default = f" (default: {p.default})"
        out.append((spell, (p.help or "") + default))
    return out


def command_help(cmd: Command) -> str:
    lines = [f"usage: {cmd.usage()}", "", cmd.summary]
    if cmd.description:
        lines += ["", cmd.description]
    params = param_lines(cmd)
    if params:
        width = max(len(s) for s, _ in params)
        lines += [""] + [f"  {s:<{width}}  {h}".rstrip() for s, h in params]
    if cmd.aliases:
        lines += ["", "aliases: " + ", ".join(cmd.aliases)]
    if cmd.examples:
        lines += ["", "examples:"] + [f"  {e}" for e in cmd.examples]
    return "\n".join(lines)


def overview(registry: Registry) -> str:
    lines = []
    for group, cmds in sorted(registry.groups().items(), key=lambda g: (g[0] != "core", g[0])):
        lines.append("commands:" if group == "core" else f"{group} (plugin):")
        width = max(len(c.name) for c in cmds)
        lines += [f"  {c.name:<{width}}  {c.summary}" for c in cmds]
        lines.append("")
    lines.append("`help COMMAND` tells more; --json after a command gives JSON.")
    return "\n".join(lines)
