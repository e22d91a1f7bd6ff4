"""Completion from the command registry: one logic for the REPL and the shell scripts.

`complete_line(session, text)` looks at the text before the cursor, finds the
command being typed and the parameter the last word belongs to, and asks that
parameter's type for candidates (names, types, pids, interface names, paths).
The REPL adapts the result to prompt_toolkit (repl/completer.py); the hidden
`nsshell --complete LINE` prints it for the bash/zsh/fish scripts.

A type's `complete(prefix, session)` may take a keyword `args`: it then gets the
words already typed for the command, by parameter name (e.g. the REF before an
interface name), so a candidate list can depend on them.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from . import lexer
from .registry import REGISTRY, Command, CommandName, Param, Registry
from .types import (NsTypes, ParamType, Ref, complete_path, complete_pids,
                    is_types_word)

MAX_CANDIDATES = 200


@dataclass(frozen=True)
class Candidate:
    text: str            # what replaces the word being typed
    meta: str = ""       # a one-line description shown beside it
    suffix: str = " "    # appended when accepted ('' when the word may go on: dirs, TYPES)


@dataclass
class Completions:
    word: str                  # the partial word before the cursor (what candidates replace)
    candidates: list[Candidate]
    start: int = 0             # where that word begins in the text (raw, quotes included)


# -- splitting a partial line -------------------------------------------------------------

def split_partial(text: str) -> tuple[list[str], str]:
    """Words of the LAST command in TEXT (after the last unquoted ';'), the finished ones and
    the word under the cursor ('' after a space; '\\0' inside a comment).  Tolerates open
    quotes."""
    line = lexer.partial(text)
    return line.words, "\0" if line.comment else line.current


def word_start(text: str) -> int:
    """Where, in TEXT, the word under the cursor begins (its opening quote included)."""
    return lexer.partial(text).start


# -- asking the parameter types ---------------------------------------------------------------

_TAKES_ARGS: dict[type, bool] = {}


def type_candidates(ptype: ParamType, prefix: str, session, args: dict | None = None,
                    fallback: str = "") -> list[Candidate]:
    """Candidates from a parameter type (errors in a type's completer give none)."""
    cls = type(ptype)
    if cls not in _TAKES_ARGS:
        try:
            _TAKES_ARGS[cls] = "args" in inspect.signature(ptype.complete).parameters
        except (TypeError, ValueError):
            _TAKES_ARGS[cls] = False
    try:
        if _TAKES_ARGS[cls]:
            pairs = ptype.complete(prefix, session, args=args or {})
        else:
            pairs = ptype.complete(prefix, session)
    except Exception:  # noqa: BLE001 - a completer must never break the prompt
        return []
    if isinstance(ptype, Ref):
        sets = getattr(session, "sets", {})
        pairs = [(t, f"held set: {' '.join(sets[t].handles)}" if t in sets else m)
                 for t, m in (p if isinstance(p, tuple) else (p, "") for p in pairs)]
        pairs += _ref_extras(prefix, session, {p[0] for p in pairs})
    out = []
    for pair in pairs or ():
        text, meta = (pair, "") if isinstance(pair, str) else (pair[0], pair[1] if len(pair) > 1 else "")
        out.append(Candidate(text, meta or fallback, _suffix_for(ptype, text)))
    return out


def _fallback(p: Param) -> str:
    text = p.help or p.metavar
    return text if len(text) <= 60 else text[:57] + "..."


def _suffix_for(ptype: ParamType, text: str) -> str:
    if text.endswith("/") or (isinstance(ptype, Ref) and text.endswith(":")):
        return ""   # a directory, or a REF scheme (pid:, podman:) the word goes on after
    if isinstance(ptype, NsTypes) and text != "all":
        return ""  # user+mnt may go on: +net
    return " "


def _ref_extras(prefix: str, session, seen: set[str]) -> list[tuple[str, str]]:
    """What a REF may also be: pid:N (with the command), a path, TYPE:[INODE] of held handles."""
    out: list[tuple[str, str]] = []
    if prefix.startswith("pid:") or (prefix.isdigit() and prefix):
        digits = prefix[4:] if prefix.startswith("pid:") else prefix
        lead = "pid:" if prefix.startswith("pid:") else ""
        out += [(lead + pid, comm) for pid, comm in complete_pids(digits)]
    elif "pid:".startswith(prefix) and prefix:
        out.append(("pid:", "the namespaces of a process"))
    elif "/" in prefix or prefix.startswith("~") or prefix.startswith("."):
        out += complete_path(prefix)
    elif ":" in prefix or "[" in prefix or prefix in ("user", "mnt", "net", "pid", "uts",
                                                            "ipc", "cgroup", "time"):
        try:
            held = {str(h.nsid): (name or "held") for name, h in session.held()}
        except Exception:  # noqa: BLE001
            held = {}
        out += [(label, f"held by {name}") for label, name in sorted(held.items())
                if label.startswith(prefix)]
    return [c for c in out if c[0] not in seen]


# -- which parameter is being typed ------------------------------------------------------------

@dataclass
class _Scan:
    positionals: list[str]
    used: set[str]                 # option spellings and keywords already typed
    args: dict[str, str]           # parameter -> the word typed for it (first one of a list)
    pending: Param | None          # an option or keyword whose value is being typed
    rest_index: int | None         # the index within the rest param's words, if there


def _scan(cmd: Command, words: list[str]) -> _Scan:
    """The parser's own reading of the words typed so far (Command.scan, not strict)."""
    found = cmd.scan(words, strict=False)
    args = {name: raw for name, raw in found.raw.items() if isinstance(raw, str)}
    plan, _ = cmd.plan_positionals(found.positionals)
    for p, raw in plan:
        if isinstance(raw, list):
            if raw:
                args.setdefault(p.name, raw[0])
        elif isinstance(raw, tuple):   # `TYPE REF`: the REF
            args.setdefault(p.name, raw[1])
        else:
            args.setdefault(p.name, raw)
    rest_index = len(found.rest) if found.rest is not None else None
    return _Scan(found.positionals, found.used, args, found.pending, rest_index)


def _next_slots(slots: list[Param], n: int) -> list[Param]:
    """The positional parameters the (n+1)th positional word may fill."""
    out = []
    required_before = 0
    for j, p in enumerate(slots):
        if p.kind == "var":
            if n >= required_before:
                out.append(p)
            break
        if required_before <= n <= j:
            out.append(p)
        if p.required:
            required_before += 1
    return out


# -- the entry point ---------------------------------------------------------------------------

def complete_line(session, text: str, registry: Registry = REGISTRY) -> Completions:
    """Candidates for the word under the cursor at the end of TEXT."""
    line = lexer.partial(text)
    if line.comment:
        return Completions("", [], len(text))
    words, current, start = line.words, line.current, line.start
    cands = _complete_words(session, words, current, registry)
    seen: set[str] = set()
    unique = []
    for c in cands:
        if c.text not in seen and c.text.startswith(current):
            seen.add(c.text)
            unique.append(c)
    return Completions(current, unique[:MAX_CANDIDATES], start)


def _complete_words(session, words: list[str], current: str, registry: Registry) -> list[Candidate]:
    if not words:
        return _command_words(registry, "", current)
    found = registry.lookup(words)
    # `net` alone (a group) or `map` followed by a sub-command word
    subs = _subcommand_words(registry, words, current)
    if found is None:
        return subs
    cmd, used = found
    rest_words = words[used:]
    out = list(subs) if not rest_words else []
    return out + _complete_params(session, registry, cmd, rest_words, current)


def _command_words(registry: Registry, group: str, current: str) -> list[Candidate]:
    out = []
    summaries: dict[str, str] = {}
    for c in registry.visible():
        first = c.words[0]
        if len(c.words) == 1:
            summaries[first] = c.summary
        else:
            summaries.setdefault(first, f"{first} commands ({c.group})")
    for name, summary in summaries.items():
        if name.startswith(current):
            out.append(Candidate(name, summary))
    for alias, target in registry._aliases.items():
        if " " not in alias and current and alias.startswith(current) and alias not in summaries:
            out.append(Candidate(alias, f"= {target}"))
    return sorted(out, key=lambda c: c.text)


def _subcommand_words(registry: Registry, words: list[str], current: str) -> list[Candidate]:
    prefix = " ".join(words)
    out = []
    for c in registry.subcommands(prefix):
        rest = c.words[len(words):]
        if rest and rest[0].startswith(current):
            text = rest[0]
            meta = c.summary if len(rest) == 1 else f"{prefix} {text} commands"
            out.append(Candidate(text, meta))
    return out


def _complete_params(session, registry: Registry, cmd: Command, words: list[str],
                     current: str) -> list[Candidate]:
    scan = _scan(cmd, words)
    if scan.pending is not None:
        return type_candidates(scan.pending.type, current, session, scan.args,
                               _fallback(scan.pending))
    rest = cmd.rest_param()
    if scan.rest_index is not None and rest is not None:
        if scan.rest_index == 0:
            return type_candidates(rest.type, current, session, scan.args,
                                   "program" if current else "")
        return [Candidate(t, m, "" if t.endswith("/") else " ") for t, m in complete_path(current)]
    if current.startswith("-"):
        return _options(cmd, scan, current)
    out: list[Candidate] = []
    slots = [p for p in cmd.params if p.kind in ("pos", "var")]
    nxt = _next_slots(slots, len(scan.positionals))
    if scan.positionals and is_types_word(scan.positionals[-1]):
        # `show net <Tab>`: the REF of `TYPE REF` comes first
        refs = [p for p in _next_slots(slots, len(scan.positionals) - 1) if p.type.type_prefix]
        nxt = refs + [p for p in nxt if p not in refs]
    for p in nxt:
        if isinstance(p.type, CommandName):
            out += _command_name_words(registry, words, current)
        else:
            out += type_candidates(p.type, current, session, scan.args, _fallback(p))
    for p in cmd.params:
        if p.kind == "kw" and p.keyword not in scan.used and p.keyword.startswith(current):
            out.append(Candidate(p.keyword, f"{p.keyword} {p.metavar}: {p.help}".rstrip(": ")))
    if not out and not current:
        out = _options(cmd, scan, current)   # nothing else may come: what options are left
    return out


def _command_name_words(registry: Registry, words: list[str], current: str) -> list[Candidate]:
    """`help net v` -> veth: complete command names word by word."""
    typed = [w for w in words if not w.startswith("-")]
    if not typed:
        return _command_words(registry, "", current)
    return _subcommand_words(registry, typed, current)


# Options of `new` that mean something only with some types: `new net --<Tab>` does not
# offer --mount-proc.  (option -> the types it needs, all of them)
NEEDS_TYPES = {("new", "--mount-proc"): {"pid", "mnt"}, ("new", "--propagation"): {"mnt"},
               ("new", "--monotonic"): {"time"}, ("new", "--boottime"): {"time"}}


def _types_given(scan: _Scan) -> set[str] | None:
    text = scan.args.get("types")
    if not text:
        return None
    names = set(text.split("+"))
    if "all" in names:
        return None
    return {"mnt" if n == "mount" else n for n in names}


def _options(cmd: Command, scan: _Scan, current: str) -> list[Candidate]:
    out = []
    given = _types_given(scan)
    for p in cmd.params:
        if p.kind not in ("opt", "flag"):
            continue
        if set(p.flags) & scan.used:
            continue
        needs = NEEDS_TYPES.get((cmd.name, p.flags[0]))
        if needs and given is not None and not needs <= given:
            continue
        for f in p.flags:
            if f.startswith(current):
                meta = p.help or ""
                if p.kind == "opt":
                    meta = f"{p.metavar}: {meta}" if meta else p.metavar
                out.append(Candidate(f, meta))
    return out   # a data command's --json is one of its params (registry.json_flag)


# -- the hidden `nsshell --complete LINE` ---------------------------------------------------------

def names_made_earlier(text: str) -> list[str]:
    """Names an earlier command of TEXT gives (`new ... as NAME`, `open ... as NAME`,
    `name REF NEWNAME`): in `nsshell -c 'new net as lab; join l<Tab>` no session knows
    `lab` yet, but the line will."""
    from .errors import NsshellError
    commands = None
    for tail in ("", "'", '"'):
        try:
            commands = lexer.split(text + tail)
            break
        except NsshellError:
            continue
    out = []
    for words in (commands or [])[:-1]:
        if words[0] in ("new", "open") and "as" in words[1:-1]:
            out.append(words[words.index("as", 1) + 1])
        elif words[0] == "name" and len(words) >= 3:
            out.append(words[2])
    return out


class _LineNames:
    """A resolver that resolves nothing but offers the names made earlier in the line."""

    def __init__(self, names: list[str]):
        self.names = names

    def __call__(self, session, text):
        return None

    def candidates(self, session, prefix):
        return [(n, "made earlier on this line") for n in self.names if n.startswith(prefix)]


def print_completions(session, line: str) -> int:
    """One candidate a line, `WORD<TAB>DESCRIPTION`, for the shell completion scripts."""
    import sys
    names = names_made_earlier(line)
    if names:
        session.resolvers.append(_LineNames(names))
    result = complete_line(session, line)
    for c in result.candidates:
        meta = " ".join(c.meta.split())
        sys.stdout.write(f"{c.text}\t{meta}\n" if meta else f"{c.text}\n")
    sys.stdout.flush()
    return 0
