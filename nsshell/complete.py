"""Completion from the command registry: one logic for the REPL and the shell scripts.

`complete_line(session, text)` looks at the text before the cursor, finds the
command being typed and the parameter the word under the cursor belongs to, and
asks that parameter's TYPE for candidates (names, types, pids, interface names,
paths): `ptype.complete(prefix, session, ctx)`, where ctx (types.Ctx) holds the
words already typed by parameter name.  Nothing here knows a command or a type
by name.  The REPL adapts the result to prompt_toolkit (repl/completer.py); the
hidden `nsshell --complete LINE` prints it for the bash/zsh/fish scripts.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import lexer
from .registry import REGISTRY, Command, Param, Registry
from .types import Candidate, Ctx, ParamType, is_types_word

__all__ = ["Candidate", "Completions", "complete_line", "type_candidates", "split_partial",
           "word_start", "names_made_earlier", "print_completions"]

MAX_CANDIDATES = 200


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

def as_candidate(item, fallback: str = "") -> Candidate:
    """A type's answer as a Candidate: a Candidate, a (text, description) pair or a text.
    A directory (text ending in '/') takes no space after it."""
    if isinstance(item, Candidate):
        return item if item.meta or not fallback else Candidate(item.text, fallback, item.suffix)
    text, meta = (item, "") if isinstance(item, str) else (item[0], item[1] if len(item) > 1 else "")
    return Candidate(text, meta or fallback, "" if text.endswith("/") else " ")


def type_candidates(ptype: ParamType, prefix: str, session, ctx: Ctx | None = None,
                    fallback: str = "") -> list[Candidate]:
    """Candidates from a parameter type (errors in a type's completer give none: Tab must
    never break the prompt; tests/test_completion.py asks every type directly)."""
    try:
        found = ptype.complete(prefix, session, ctx if ctx is not None else Ctx())
        return [as_candidate(c, fallback) for c in found or ()]
    except Exception:  # noqa: BLE001 - a completer must never break the prompt
        return []


def _fallback(p: Param) -> str:
    text = p.help or p.metavar
    return text if len(text) <= 60 else text[:57] + "..."


# -- which parameter is being typed ------------------------------------------------------------

@dataclass
class _Scan:
    positionals: list[str]
    used: set[str]                 # option spellings and keywords already typed
    args: dict                     # parameter -> the word typed for it (a list for several)
    pending: Param | None          # an option or keyword whose value is being typed
    rest: list[str] | None         # the rest param's words so far, once reached


def _scan(cmd: Command, words: list[str]) -> _Scan:
    """The parser's own reading of the words typed so far (Command.scan, not strict)."""
    found = cmd.scan(words, strict=False)
    args = {name: raw for name, raw in found.raw.items() if isinstance(raw, str)}
    plan, _ = cmd.plan_positionals(found.positionals)
    for p, raw in plan:
        if isinstance(raw, list):
            args.setdefault(p.name, [r[1] if isinstance(r, tuple) else r for r in raw])
        elif isinstance(raw, tuple):   # `TYPE REF`: the REF
            args.setdefault(p.name, raw[1])
        else:
            args.setdefault(p.name, raw)
    rest = list(found.rest) if found.rest is not None else None
    return _Scan(found.positionals, found.used, args, found.pending, rest)


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

    def ask(p: Param, fallback: str) -> list[Candidate]:
        own = scan.rest if p.kind == "rest" else scan.args.get(p.name) if p.kind == "var" else []
        ctx = Ctx(scan.args, own if isinstance(own, list) else [], registry)
        return type_candidates(p.type, current, session, ctx, fallback)

    if scan.pending is not None:
        return ask(scan.pending, _fallback(scan.pending))
    rest = cmd.rest_param()
    if scan.rest is not None and rest is not None:
        return ask(rest, "program" if current and not scan.rest else "")
    if current.startswith("-"):
        return _options(cmd, scan, current, session)
    out: list[Candidate] = []
    slots = [p for p in cmd.params if p.kind in ("pos", "var")]
    nxt = _next_slots(slots, len(scan.positionals))
    if scan.positionals and is_types_word(scan.positionals[-1]):
        # `show net <Tab>`: the REF of `TYPE REF` comes first
        refs = [p for p in _next_slots(slots, len(scan.positionals) - 1) if p.type.type_prefix]
        nxt = refs + [p for p in nxt if p not in refs]
    for p in nxt:
        out += ask(p, _fallback(p))
    for p in cmd.params:
        if p.kind == "kw" and p.keyword not in scan.used and p.keyword.startswith(current):
            out.append(Candidate(p.keyword, f"{p.keyword} {p.metavar}: {p.help}".rstrip(": ")))
    if not out and not current:
        out = _options(cmd, scan, current, session)   # nothing else may come: what options are left
    return out


def _meaningful(p: Param, cmd: Command, scan: _Scan, session) -> bool:
    """Whether option P means something with the words typed so far (its declared Needs:
    `new net --<Tab>` does not offer --mount-proc, which needs pid and mnt)."""
    if p.needs is None:
        return True
    typed = scan.args.get(p.needs.param)
    other = next((q for q in cmd.params if q.name == p.needs.param), None)
    if not typed or other is None or isinstance(typed, list):
        return True
    try:
        value = other.type.parse(typed, session)
    except Exception:  # noqa: BLE001 - not (yet) a valid word: offer everything
        return True
    values = value if isinstance(value, (tuple, list, set, frozenset)) else (value,)
    return p.needs.values <= {getattr(v, "name", str(v)) for v in values}


def _options(cmd: Command, scan: _Scan, current: str, session) -> list[Candidate]:
    out = []
    for p in cmd.params:
        if p.kind not in ("opt", "flag"):
            continue
        if set(p.flags) & scan.used or not _meaningful(p, cmd, scan, session):
            continue
        for f in p.flags:
            if f.startswith(current):
                meta = p.help or ""
                if p.kind == "opt":
                    meta = f"{p.metavar}: {meta}" if meta else p.metavar
                out.append(Candidate(f, meta))
    return out   # a data command's --json is one of its params (registry.json_flag)


# -- the hidden `nsshell --complete LINE` ---------------------------------------------------------

def names_made_earlier(text: str, registry: Registry = REGISTRY) -> list[str]:
    """Names the earlier commands of TEXT give, read by the parser (the words typed for a
    parameter whose type gives a name: `new ... as NAME`, `open ... as NAME`, `name REF
    NEWNAME`): in `nsshell -c 'new net as lab; join l<Tab>` no session knows `lab` yet,
    but the line will."""
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
        found = registry.lookup(words) if words else None
        if found is None:
            continue
        cmd, used = found
        try:
            scan = _scan(cmd, words[used:])
        except NsshellError:
            continue
        for p in cmd.params:
            given = scan.args.get(p.name)
            if p.type.gives_name and given:
                out += given if isinstance(given, list) else [given]
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
