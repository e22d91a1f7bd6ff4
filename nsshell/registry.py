"""Commands are declared once: a typed function and its docstring.

    @command("join")
    def join(sh: Shell, types: Types = None, ref: Ref = ...) -> Result:
        '''Make REF's namespaces current.

        Arguments:
          types: only these types
          ref: the namespaces to join

        Examples:
          join net foo
        '''

Positional-or-keyword parameters are positional words; keyword-only parameters
(after `*`) are options (`--name VALUE`) or, when `bool`, flags (`--name`).
`Annotated[...]` adds the parameter type and markers (Opt, Kw, Rest).  From
this one declaration come parsing, `help`, completion, the man page and the
shell completion scripts.

What the engine must know of a command is declared here too, never by its name:
`data=False` (it never shows data: no --json; every other command without a Rest
parameter takes the generic --json, json_flag), `runner=True` and `creator=True`
(it uses the batch `run` helper or the `new` helper, which the engine ends before
any other command).
"""

from __future__ import annotations

from .errors import UsageError
from .kernel.values import Frozen, Value
from .types import ParamType, is_types_word, type_for

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Opt", "Kw", "Rest", "Needs", "Param", "Command", "Registry", "REGISTRY", "command",
           "CommandName", "Annotated"]

# Start-up: this module is on the path of every batch, so it builds nothing at import
# (plain classes, no dataclasses) and imports neither typing nor inspect nor re: a
# command's parameters are read from its function (code object, defaults, annotations)
# on its first use (Command.params), not when it is declared.


class Annotated:
    """`Annotated[TYPE, marker, ...]` as typing.Annotated spells it, without importing
    typing: the registry reads __origin__ and __metadata__, which typing's own
    Annotated (a third-party plugin may use it) has too."""
    __slots__ = ("__origin__", "__metadata__")

    def __init__(self, origin, metadata: tuple) -> None:
        self.__origin__, self.__metadata__ = origin, metadata

    def __class_getitem__(cls, params):
        if not isinstance(params, tuple) or len(params) < 2:
            raise TypeError("Annotated[...] should be used with at least two arguments "
                            "(a type and an annotation).")
        return cls(params[0], tuple(params[1:]))

    def __eq__(self, other):
        return (isinstance(other, Annotated) and self.__origin__ == other.__origin__
                and self.__metadata__ == other.__metadata__)

    def __hash__(self):
        return hash((self.__origin__, self.__metadata__))

    def __repr__(self) -> str:
        return f"Annotated[{self.__origin__!r}, {', '.join(map(repr, self.__metadata__))}]"


class Opt(Frozen):
    """Extra spellings of an option: Opt("-u") or Opt("-k", "--keep-going")."""
    __slots__ = ("names",)
    _fields = ("names",)

    def __init__(self, *names: str):
        object.__setattr__(self, "names", names)


class Kw(Frozen):
    """A positional introduced by a literal word: `as NAME`, `via GW`."""
    __slots__ = ("word",)
    _fields = ("word",)

    def __init__(self, word: str):
        object.__setattr__(self, "word", word)


class Rest(Frozen):
    """Every remaining word, verbatim (options included): `run CMD ARG...`."""
    __slots__ = ()


class Needs(Frozen):
    """An option that means something only when another parameter's value includes
    these: Needs("types", "pid", "mnt") for `new --mount-proc` (completion offers it
    only then)."""
    __slots__ = ("param", "values")
    _fields = ("param", "values")

    def __init__(self, param: str, *values: str):
        object.__setattr__(self, "param", param)
        object.__setattr__(self, "values", frozenset(values))


class Param(Value):
    __slots__ = ("name", "kind", "type", "required", "default", "help", "flags", "keyword",
                 "generic", "needs")
    _fields = __slots__

    def __init__(self, name: str, kind: str, type: ParamType, required: bool, default,
                 help: str = "", flags: tuple[str, ...] = (), keyword: str | None = None,
                 generic: bool = False, needs: Needs | None = None) -> None:
        self.name = name              # Python name
        self.kind = kind              # 'pos', 'var', 'rest', 'opt', 'flag', 'kw'
        self.type = type
        self.required = required
        self.default = default
        self.help = help
        self.flags = flags            # option spellings ('--no-join', '-u')
        self.keyword = keyword        # for kind 'kw'
        self.generic = generic        # the registry's (--json), not a parameter of the function
        self.needs = needs            # an option meaningful only with some values of another

    @property
    def metavar(self) -> str:
        return self.type.metavar or self.name.upper()

    def usage(self) -> str:
        if self.kind == "flag":
            text = "|".join(self.flags)
        elif self.kind == "opt":
            text = f"{'|'.join(self.flags)} {self.metavar}"
        elif self.kind == "kw":
            text = f"{self.keyword} {self.metavar}"
        elif self.kind in ("var", "rest"):
            text = f"{self.metavar} ..." if not self.required else f"{self.metavar} [{self.metavar} ...]"
            if self.kind == "rest" and self.required:
                text = f"{self.metavar} [ARG ...]"
            return text if self.required else f"[{text}]"
        else:
            text = self.metavar
        return text if self.required else f"[{text}]"


class Scan(Value):
    """What Command.scan found in a command's words (raw, unconverted)."""
    __slots__ = ("positionals", "raw", "rest", "pending", "used")
    _fields = __slots__

    def __init__(self, positionals: list[str] | None = None, raw: dict | None = None,
                 rest: list[str] | None = None, pending: Param | None = None,
                 used: set[str] | None = None) -> None:
        self.positionals = [] if positionals is None else positionals
        self.raw = {} if raw is None else raw   # option/keyword param -> word (flag: True)
        self.rest = rest                  # the Rest parameter's words, once reached
        self.pending = pending            # an option or keyword still waiting for its value
        self.used = set() if used is None else used   # option spellings and keywords seen


# What Command builds from its function on first use (Command.params and the rest).
_BUILT = ("params", "summary", "description", "examples", "data")


class Command:
    """A declared command.  Made by the registry's @command, it reads its function's
    signature and docstring (params, summary, description, examples, data) on the first
    use of one of them, not at declaration: start-up declares many and uses few."""

    def __init__(self, name: str, func, params: list[Param], summary: str, description: str,
                 examples: list[str], group: str = "core", aliases: tuple[str, ...] = (),
                 hidden: bool = False, data: bool = False, runner: bool = False,
                 creator: bool = False) -> None:
        self.name = name                  # 'join', 'net veth'
        self.func = func
        self.params = params
        self.summary = summary
        self.description = description
        self.examples = examples
        self.group = group
        self.aliases = aliases
        self.hidden = hidden
        self.data = data                  # returns data: takes the generic --json (json_flag)
        self.runner = runner              # uses the batch `run` helper (others must not see it)
        self.creator = creator            # uses the `new` helper, core/ns/creator.py (likewise)

    @classmethod
    def declared(cls, name: str, func, group: str, aliases: tuple[str, ...], hidden: bool,
                 data: bool | None, runner: bool, creator: bool) -> "Command":
        """The command FUNC declares; what its signature and docstring say is read later."""
        self = cls.__new__(cls)
        self.name, self.func, self.group, self.aliases = name, func, group, aliases
        self.hidden, self.runner, self.creator = hidden, runner, creator
        self._declared_data = data
        return self

    def __getattr__(self, attr: str):
        # only for what is not built yet (a built attribute is found without this)
        if attr in _BUILT and "_declared_data" in self.__dict__:
            self._build()
            return self.__dict__[attr]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {attr!r}")

    def _build(self) -> None:
        summary, desc, helps, examples = _parse_doc(self.func.__doc__ or "")
        params = _build_params(self.func)
        for p in params:
            p.help = helps.get(p.name, helps.get(p.name.rstrip("_"), "")) or p.type.help
        data = self.__dict__.pop("_declared_data")
        takes_json = data if data is not None else not any(p.kind == "rest" for p in params)
        if takes_json:
            if any(p.name == "json" or "--json" in p.flags for p in params):
                self._declared_data = data
                raise ValueError(f"command {self.name!r} declares its own --json: a data command "
                                 "takes the registry's (drop the parameter)")
            params.append(json_flag())
        self.summary, self.description, self.examples = summary, desc, examples
        self.data = bool(takes_json)
        self.params = params

    def __repr__(self) -> str:
        return f"Command({self.name!r}, group={self.group!r})"

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(self.name.split())

    def usage(self) -> str:
        return " ".join([self.name] + [p.usage() for p in self.params])

    def option(self, word: str) -> Param | None:
        return self._shape().flags.get(word)

    # -- parsing ------------------------------------------------------------

    def _shape(self) -> "_Shape":
        """What parsing needs to know of the parameters, worked out once per parameter
        list (a command is parsed many times: not on every command line)."""
        shape = getattr(self, "_shape_cache", None)
        params = self.params
        if shape is None or shape.params is not params or shape.count != len(params):
            shape = _Shape(params)
            try:
                self._shape_cache = shape   # not a field: no part of eq, repr, replace
            except AttributeError:  # a class without a __dict__: built on every call
                pass
        return shape

    def scan(self, words: list[str], strict: bool = True) -> "Scan":
        """Sort WORDS into options, keywords, positionals and the rest, unconverted.

        The parser scans strictly (an unknown option or a missing value is a
        UsageError); completion scans what has been typed so far, where the last
        option may still wait for its value (`pending`)."""
        scan = Scan()
        shape = self._shape()
        kw_params = shape.keywords
        rest = shape.rest
        before_rest = shape.before_rest
        only_positional = False
        i = 0
        while i < len(words):
            w = words[i]
            if rest is not None and len(scan.positionals) >= before_rest:
                scan.rest = words[i:]
                break
            if not only_positional and w == "--":
                only_positional = True
            elif not only_positional and w.startswith("-") and len(w) > 1 and not _is_number(w):
                name, eq, inline = w.partition("=")
                p = self.option(name)
                scan.used.add(name)
                if p is None:
                    if strict:
                        raise UsageError(f"unknown option {name}", self._options_hint())
                elif p.kind == "flag":
                    if eq and strict:
                        raise UsageError(f"option {name} takes no value")
                    scan.used.update(p.flags)
                    scan.raw[p.name] = True
                else:
                    scan.used.update(p.flags)
                    if eq:
                        scan.raw[p.name] = inline
                    else:
                        i = _take_value(scan, p, words, i, strict,
                                        f"option {name} needs a value ({p.metavar})")
            elif w in kw_params and kw_params[w].name not in scan.raw:
                p = kw_params[w]
                scan.used.add(w)
                i = _take_value(scan, p, words, i, strict, f"'{w}' needs a {p.metavar} after it")
            else:
                scan.positionals.append(w)
            i += 1
        if rest is not None and scan.rest is None and len(scan.positionals) >= before_rest:
            scan.rest = []
        return scan

    def plan_positionals(self, words: list[str]) -> tuple[list[tuple[Param, Any]], list[str]]:
        """Positional words to slots, left to right, optional slots only while words are
        to spare: ([(param, word, (TYPE, word) or [words])], words left over).  A
        parameter whose type takes a type prefix (a REF) takes `TYPE REF` as one value
        when its first word reads as TYPES and a word is to spare."""
        slots = self._shape().slots
        spare = len(words) - sum(1 for p in slots if p.kind == "pos" and p.required)
        plan: list[tuple[Param, Any]] = []
        remaining = list(words)
        for i, p in enumerate(slots):
            if p.kind == "var":
                after = sum(1 for q in slots[i + 1:] if q.required)
                take = remaining[:len(remaining) - after]
                plan.append((p, take))
                remaining = remaining[len(take):]
                continue
            if not remaining:
                break
            if not p.required:
                if spare <= 0:
                    continue
                spare -= 1
            if (p.type.type_prefix and spare > 0 and len(remaining) > 1
                    and is_types_word(remaining[0])):
                # `TYPE REF` fills one REF (`show net box`): two words, one of them spare
                spare -= 1
                plan.append((p, (remaining.pop(0), remaining.pop(0))))
                continue
            plan.append((p, remaining.pop(0)))
        return plan, remaining

    def parse(self, words: list[str], session) -> dict[str, Any]:
        """Words after the command name -> keyword arguments for func."""
        return self.parse_all(words, session)[0]

    def parse_all(self, words: list[str], session) -> tuple[dict[str, Any], dict[str, Any]]:
        """Words after the command name -> (keyword arguments for func, the values of the
        registry's generic options: {'json': bool} for a data command)."""
        values = self._parse(words, session)
        generic = self._shape().generic
        if not generic:
            return values, {}
        return ({k: v for k, v in values.items() if k not in generic},
                {k: v for k, v in values.items() if k in generic})

    def _parse(self, words: list[str], session) -> dict[str, Any]:
        scan = self.scan(words)
        values: dict[str, Any] = {}
        shape = self._shape()
        by_name = shape.by_name
        for name, raw in scan.raw.items():
            p = by_name[name]
            values[name] = True if p.kind == "flag" else self._convert(p, raw, session)
        rest = shape.rest
        if rest is not None and scan.rest is not None:
            values[rest.name] = scan.rest
        # Check the count before converting, so that the error is about the count.
        plan, extra = self.plan_positionals(scan.positionals)
        if extra and rest is None:
            raise UsageError(f"unexpected argument{'s' if len(extra) > 1 else ''}: {' '.join(extra)}",
                             f"usage: {self.usage()}")
        for p, raw in plan:
            if isinstance(raw, list):
                if p.required and not raw:
                    raise UsageError(f"missing {p.metavar}", f"usage: {self.usage()}")
                values[p.name] = self._convert_list(p, raw, session)
            else:
                values[p.name] = self._convert(p, raw, session)
        for p in self.params:
            if p.name not in values:
                if p.required:
                    what = f"{p.keyword} {p.metavar}" if p.kind == "kw" else p.metavar
                    raise UsageError(f"missing {what}", f"usage: {self.usage()}")
                values[p.name] = [] if p.kind in ("var", "rest") and p.default is None else p.default
        return values

    def _positional_count_before_rest(self) -> int:
        return self._shape().before_rest

    def _options_hint(self) -> str:
        opts = [f for p in self.params if p.kind in ("opt", "flag") for f in p.flags]
        return f"{self.name} takes {', '.join(opts)}" if opts else f"{self.name} takes no options"

    def rest_param(self) -> Param | None:
        return self._shape().rest

    def _convert_list(self, p: Param, raw: list[str], session) -> list:
        """The words of a list parameter; `TYPE REF` pairs count as one REF."""
        out, i = [], 0
        while i < len(raw):
            if p.type.type_prefix and i + 1 < len(raw) and is_types_word(raw[i]):
                out.append(self._convert(p, (raw[i], raw[i + 1]), session))
                i += 2
            else:
                out.append(self._convert(p, raw[i], session))
                i += 1
        return out

    def _convert(self, p: Param, raw: str | tuple[str, str], session) -> Any:
        if isinstance(raw, tuple):   # `TYPE REF`
            try:
                return p.type.parse_typed(raw[0], raw[1], session)
            except UsageError:
                raise
            except ValueError as e:
                raise UsageError(f"{p.metavar} {' '.join(raw)!r}: {e}",
                                 p.type.hint(session)) from None
        try:
            return p.type.parse(raw, session)
        except UsageError:
            raise
        except ValueError as e:
            raise UsageError(f"{p.metavar} {raw!r}: {e}", p.type.hint(session)) from None


class _Shape:
    """A command's parameters sorted for the parser (Command._shape): built once."""
    __slots__ = ("params", "count", "keywords", "flags", "rest", "before_rest", "by_name",
                 "slots", "generic")

    def __init__(self, params: list[Param]):
        self.params = params
        self.count = len(params)
        self.keywords = {p.keyword: p for p in params if p.kind == "kw"}
        self.flags: dict[str, Param] = {}
        for p in params:
            for f in p.flags:
                self.flags.setdefault(f, p)   # the first parameter with the spelling
        self.rest = next((p for p in params if p.kind == "rest"), None)
        self.before_rest = sum(1 for p in params if p.kind == "pos")
        self.by_name = {p.name: p for p in params}
        self.slots = [p for p in params if p.kind in ("pos", "var")]
        self.generic = frozenset(p.name for p in params if p.generic)


def _take_value(scan: Scan, p: Param, words: list[str], i: int, strict: bool,
                missing: str) -> int:
    """P (an option or a keyword, WORDS[I]) takes the next word as its value; returns the
    index of the last word used.  At the end of WORDS the parser refuses (MISSING), while
    completion notes P as still waiting for its value."""
    if i + 1 < len(words):
        scan.raw[p.name] = words[i + 1]
        return i + 1
    if strict:
        raise UsageError(missing)
    scan.pending = p
    return i




def _is_number(word: str) -> bool:
    """-N or -N.N (what reads as a negative number, not an option), as \\d does: ASCII
    and other decimal digits."""
    whole, dot, frac = word[1:].partition(".")
    return (word[:1] == "-" and whole.isdecimal()
            and (not dot or frac.isdecimal()))


_SECTIONS = ("Arguments", "Options", "Examples")


def _section(stripped: str) -> str | None:
    """The section a (stripped) docstring line opens: `Arguments:` (spaces before the
    colon's end allowed, as `^(Arguments|Options|Examples):\\s*$` reads it)."""
    name, colon, after = stripped.partition(":")
    return name if colon and name in _SECTIONS and not after.strip() else None


def _cleandoc(doc: str) -> list[str]:
    """inspect.cleandoc(DOC)'s lines, without importing inspect: tabs expanded, the
    common indentation of the lines after the first removed, blank lines around gone."""
    lines = doc.expandtabs().split("\n")
    margin = min((len(line) - len(line.lstrip()) for line in lines[1:] if line.lstrip()),
                 default=0)
    lines[0] = lines[0].lstrip()
    lines[1:] = [line[margin:] for line in lines[1:]]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def _help_line(line: str) -> tuple[str, str] | None:
    """`  name: text` in an Arguments/Options section -> (name, text), as
    `\\s*([\\w-]+):\\s*(.*)` matches it."""
    name, colon, text = line.lstrip().partition(":")
    if colon and name and all(c.isalnum() or c in "_-" for c in name):
        return name, text.strip()
    return None


def _parse_doc(doc: str) -> tuple[str, str, dict[str, str], list[str]]:
    lines = _cleandoc(doc or "")
    # the summary is the first paragraph (a docstring's first sentence may wrap)
    first = 0
    while first < len(lines) and lines[first].strip() and not _section(lines[first].strip()):
        first += 1
    summary = " ".join(line.strip() for line in lines[:max(first, 1)]) if lines else ""
    body: list[str] = []
    helps: dict[str, str] = {}
    examples: list[str] = []
    section = None
    for line in lines[max(first, 1):]:
        opens = _section(line.strip())
        if opens:
            section = opens
            continue
        if section in ("Arguments", "Options"):
            found = _help_line(line)
            if found:
                helps[found[0].replace("-", "_")] = found[1]
            elif line.strip() and helps:
                last = list(helps)[-1]
                helps[last] += " " + line.strip()
        elif section == "Examples":
            if line.strip():
                examples.append(line.strip())
        else:
            body.append(line)
    return summary, "\n".join(body).strip(), helps, examples


_EMPTY = object()     # no default (inspect.Parameter.empty)
_CO_VARARGS, _CO_VARKEYWORDS = 0x04, 0x08


def _signature(func) -> list[tuple[str, bool, object]]:
    """FUNC's parameters as (name, keyword-only, default or _EMPTY), as inspect.signature
    gives them (following __wrapped__), read from the code object: inspect and typing
    cost milliseconds to import.  Anything but a plain function (a partial, a callable
    object, *args or **kwargs) is read by inspect itself."""
    f = func
    while hasattr(f, "__wrapped__") and not hasattr(f, "__signature__"):
        f = f.__wrapped__
    code = getattr(f, "__code__", None)
    if (code is None or hasattr(f, "__signature__") or type(f).__name__ != "function"
            or code.co_flags & (_CO_VARARGS | _CO_VARKEYWORDS)):
        import inspect
        return [(p.name, p.kind is p.KEYWORD_ONLY,
                 _EMPTY if p.default is p.empty else p.default)
                for p in inspect.signature(func).parameters.values()]
    npos, nkw = code.co_argcount, code.co_kwonlyargcount
    names = code.co_varnames[:npos + nkw]
    defaults = f.__defaults__ or ()
    kwdefaults = f.__kwdefaults__ or {}
    first_default = npos - len(defaults)
    out = []
    for i, name in enumerate(names):
        if i < npos:
            out.append((name, False, defaults[i - first_default] if i >= first_default else _EMPTY))
        else:
            out.append((name, True, kwdefaults.get(name, _EMPTY)))
    return out


def _hints(func) -> dict:
    """typing.get_type_hints(FUNC, include_extras=True) for what declarations use: each
    annotation, a string evaluated in the globals of the function (the innermost one
    under __wrapped__); None is NoneType."""
    f = func
    while hasattr(f, "__wrapped__"):
        f = f.__wrapped__
    glob = getattr(f, "__globals__", {})
    out = {}
    for name, value in (getattr(func, "__annotations__", None) or {}).items():
        while isinstance(value, str):   # ("'X'" is a forward reference to X, as typing reads it)
            value = eval(value, glob, None)  # noqa: S307 - the declaration's own annotation
        out[name] = type(None) if value is None else value
    return out


def _origin(hint):
    return getattr(hint, "__origin__", None)


def _args(hint) -> tuple:
    return getattr(hint, "__args__", None) or ()


def _build_params(func) -> list[Param]:
    hints = _hints(func)
    params: list[Param] = []
    for i, (name, kwonly, default) in enumerate(_signature(func)):
        if i == 0:
            continue  # the shell / session
        hint = hints.get(name, str)
        base, meta = hint, ()
        if getattr(hint, "__metadata__", None) is not None:   # Annotated (ours or typing's)
            base, meta = hint.__origin__, tuple(hint.__metadata__)
        ptype = next((m for m in meta if isinstance(m, ParamType)), None)
        marker = next((m for m in meta if isinstance(m, (Opt, Kw, Rest))), None)
        # `= ...` marks a required positional after an optional one (`join [TYPES] REF`).
        has_default = default is not _EMPTY and default is not Ellipsis
        default = default if has_default else None
        is_list = _origin(base) is list or base is list
        if ptype is None:
            inner = base
            if is_list and _args(base):
                inner = _args(base)[0]
            ptype = type_for(inner)
        dashed = "--" + name.rstrip("_").replace("_", "-")
        if isinstance(marker, Rest):
            p = Param(name, "rest", ptype, not has_default, default)
        elif isinstance(marker, Kw):
            p = Param(name, "kw", ptype, not has_default, default, keyword=marker.word)
        elif kwonly:
            flags = (marker.names if isinstance(marker, Opt) else ()) + (dashed,)
            if base is bool:
                p = Param(name, "flag", ptype, False, bool(default), flags=flags)
            else:
                p = Param(name, "opt", ptype, not has_default, default, flags=flags)
        elif is_list:
            p = Param(name, "var", ptype, not has_default, default)
        else:
            p = Param(name, "pos", ptype, not has_default, default)
        p.needs = next((m for m in meta if isinstance(m, Needs)), None)
        params.append(p)
    return params


def json_flag() -> Param:
    """The one --json: every data command takes it (help, the man page and completion
    show it as any option); the engine renders that command's result as JSON."""
    return Param("json", "flag", type_for(bool), False, False,
                 "print JSON (the shapes are in docs/json.md)", flags=("--json",), generic=True)


class Registry:
    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}
        self._aliases: dict[str, str] = {}
        # Commands known by name only, until first use: name -> module that declares them
        # (nsshell/command_index.py, generated by `python -m nsshell.docgen`).
        self._lazy: dict[str, str] = {}
        self._lazy_aliases: dict[str, str] = {}
        # A plugin's deferred commands: module -> (loader, group) (PluginAPI.commands_in);
        # a module without a loader here is imported (a built-in command module).
        self._loaders: dict[str, tuple] = {}

    # -- lazy loading (start-up: a batch imports only the modules of the commands it uses) --

    def defer(self, commands: dict[str, str], aliases: dict[str, str]) -> None:
        """Know COMMANDS (name -> module) and their ALIASES (alias -> name) without importing
        the modules: each is imported on the first lookup of one of its commands."""
        self._lazy.update((n, m) for n, m in commands.items() if n not in self.commands)
        self._lazy_aliases.update((a, n) for a, n in aliases.items() if n in self._lazy)

    def defer_loader(self, names, key: str, loader, group: str) -> None:
        """Know NAMES (a plugin's commands) before they are declared: LOADER() declares
        them on the first lookup of one of them (or when every command is wanted: help,
        completion).  KEY names the loader (it is never a module's name: "PLUGIN: ...").
        A name already taken is refused as add() refuses it."""
        for n in names:
            if n in self.commands or n in self._aliases or n in self._lazy \
                    or n in self._lazy_aliases:
                raise ValueError(f"command {n!r} is already registered")
        self._lazy.update((n, key) for n in names)
        self._loaders[key] = (loader, group)

    def deferred(self, group: str | None = None) -> list[str]:
        """The names known but not declared yet (of GROUP's plugin loaders, when given)."""
        return [n for n, m in self._lazy.items()
                if group is None or self._loaders.get(m, (None, None))[1] == group]

    def _forget_deferred(self, key: str) -> None:
        for name in [n for n, m in self._lazy.items() if m == key]:
            del self._lazy[name]
        for alias in [a for a, n in self._lazy_aliases.items() if n not in self._lazy]:
            del self._lazy_aliases[alias]

    def _load(self, key: str) -> None:
        loader, _ = self._loaders.pop(key, (None, None))
        if loader is not None:      # a plugin's: its names are free for it to declare
            self._forget_deferred(key)
            loader()
            return
        # a built-in module: its @command declarations call add(); __import__ rather than
        # importlib.import_module, which `python -X importtime` does not see
        try:
            __import__(key)
        finally:
            self._forget_deferred(key)

    def load_all(self) -> None:
        """Import every deferred module (help, completion, docgen: all commands at once)."""
        for module in sorted(set(self._lazy.values())):
            self._load(module)

    def command(self, name: str | None = None, *, group: str = "core",
                aliases: tuple[str, ...] = (), hidden: bool = False,
                data: bool | None = None, runner: bool = False, creator: bool = False,
                now: bool = False):
        """Declare a command.  DATA: it returns data to show, so it takes --json (default:
        every command without a Rest parameter; data=False for one that never shows
        data).  RUNNER: it uses the batch `run` helper (core/proc/runner.py); CREATOR: it
        uses the `new` helper (core/ns/creator.py); the engine ends each helper before any
        command that does not declare it (Session.drop_helpers).

        The function's signature and docstring are read on the command's first use
        (Command.params); NOW reads them at once, so that a bad declaration (a plugin's)
        raises here and declares nothing.  A parameter of its own called json is checked
        at once in any case."""
        def deco(func):
            cname = name or func.__name__.rstrip("_").replace("_", "-")
            cmd = Command.declared(cname, func, group, aliases, hidden, data, runner, creator)
            if now or (data is not False
                       and any(n.rstrip("_") == "json" for n, _, _ in _signature(func))):
                cmd.params   # noqa: B018 - read now: a bad declaration declares nothing
            self.add(cmd)
            func.command = cmd
            return func
        return deco

    def add(self, cmd: Command) -> None:
        lazy = self._lazy.get(cmd.name)
        if (cmd.name in self.commands or cmd.name in self._aliases or cmd.name in self._lazy_aliases
                or (lazy is not None and lazy != getattr(cmd.func, "__module__", None))):
            raise ValueError(f"command {cmd.name!r} is already registered")
        self.commands[cmd.name] = cmd
        for a in cmd.aliases:
            self._aliases[a] = cmd.name

    def remove(self, name: str) -> None:
        """Forget command NAME and its aliases (nothing happens when it is not there)."""
        cmd = self.commands.pop(name, None)
        if cmd is not None:
            for a in cmd.aliases:
                self._aliases.pop(a, None)

    def remove_group(self, group: str) -> None:
        for name in [n for n, c in self.commands.items() if c.group == group]:
            cmd = self.commands.pop(name)
            for a in cmd.aliases:
                self._aliases.pop(a, None)
        for module in [m for m, (_, g) in self._loaders.items() if g == group]:
            del self._loaders[module]
            for name in [n for n, m in self._lazy.items() if m == module]:
                del self._lazy[name]

    def lookup(self, words: list[str]) -> tuple[Command, int] | None:
        """The command named by the longest run of leading WORDS, and how many it took."""
        for n in range(min(len(words), 3), 0, -1):
            key = " ".join(words[:n])
            key = self._aliases.get(key, key)
            if key not in self.commands and self._lazy:
                key = self._lazy_aliases.get(key, key)
                if key in self._lazy:
                    self._load(self._lazy[key])
            if key in self.commands:
                return self.commands[key], n
        return None

    def visible(self) -> list[Command]:
        self.load_all()
        return sorted((c for c in self.commands.values() if not c.hidden), key=lambda c: c.name)

    def groups(self) -> dict[str, list[Command]]:
        out: dict[str, list[Command]] = {}
        for c in self.visible():
            out.setdefault(c.group, []).append(c)
        return out

    def subcommands(self, prefix: str) -> list[Command]:
        for module in sorted({m for n, m in self._lazy.items() if n.startswith(prefix + " ")}):
            self._load(module)   # only the modules that declare PREFIX's sub-commands
        return sorted((c for c in self.commands.values()
                       if not c.hidden and c.name.startswith(prefix + " ")), key=lambda c: c.name)

    def top_words(self) -> list[str]:
        """First words of every command ('net' for 'net veth') plus aliases."""
        words = {c.words[0] for c in self.visible()}
        words.update(a for a in self._aliases if " " not in a)
        return sorted(words)


REGISTRY = Registry()
command = REGISTRY.command


class CommandName(ParamType):
    """A command's name (`help net veth`): the one parameter type that reads the registry,
    so it lives here, above types.py, and types.py never imports the registry."""
    metavar = "COMMAND"

    def complete(self, prefix, session, ctx=None):
        """Word by word, as typed: `help n<Tab>` -> net, new; `help net v<Tab>` -> veth."""
        registry = getattr(ctx, "registry", None) or REGISTRY
        typed = list(getattr(ctx, "own", []))
        out: dict[str, str] = {}
        for c in registry.visible():
            if list(c.words[:len(typed)]) != typed or len(c.words) <= len(typed):
                continue
            word = c.words[len(typed)]
            if word.startswith(prefix):
                more = len(c.words) > len(typed) + 1
                group = " ".join(typed + [word])
                out.setdefault(word, f"{group} commands" if more else c.summary)
                if not more:
                    out[word] = c.summary
        return sorted(out.items())
