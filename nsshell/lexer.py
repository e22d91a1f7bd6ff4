"""Splitting a line into commands and words, as a POSIX shell would.

Quotes ('...', "..."), backslash escapes, `;` between commands, `#` comments,
and `!CMD ...` as short for `run CMD ...`.
"""

from __future__ import annotations

from .kernel.values import Value

from .errors import UsageError


class Partial(Value):
    """A line being typed, as completion sees it."""
    words: list[str]    # the finished words of its last command
    current: str        # the word under the cursor ('' after a space)
    start: int          # where that word begins in the line (its opening quote included)
    comment: bool       # the cursor is inside a comment: nothing to complete

    _fields = ("words", "current", "start", "comment")

    def __init__(self, words, current, start, comment) -> None:
        self.words = words
        self.current = current
        self.start = start
        self.comment = comment


def split(line: str) -> list[list[str]]:
    """'a b; c "d;e" # x' -> [['a', 'b'], ['c', 'd;e']]."""
    commands, words, word, _, _ = _walk(line, partial=False)
    if word is not None:
        words.append("".join(word))
    if words:
        commands.append(words)
    return [ws for ws in (_bang(ws) for ws in commands) if ws]


def partial(line: str) -> Partial:
    """The last command of a line still being typed; an open quote is part of the word."""
    _, words, word, start, comment = _walk(line, partial=True)
    current = "".join(word) if word is not None else ""
    if word is None:
        start = len(line)
    words = _bang(words)
    if not words and current.startswith("!"):
        return Partial(["run"], current[1:], start + 1, comment)
    return Partial(words, current, start, comment)


def _walk(line: str, partial: bool):
    """Completion's reading of a line being typed (the language itself is read by tokens()
    and parse() below): (finished commands, words of the last one, the word in progress
    as a list of characters or None, where it starts, whether a comment was reached).
    Unless PARTIAL, an unterminated quote is a UsageError."""
    commands: list[list[str]] = []
    words: list[str] = []
    word: list[str] | None = None
    start = 0
    i, n = 0, len(line)
    if not partial:
        check_text(line)
    while i < n:
        c = line[i]
        if c in " \t\r\n":
            if word is not None:
                words.append("".join(word))
                word = None
        elif c == ";" or (c in "&|" and line[i + 1:i + 2] == c):
            if word is not None:
                words.append("".join(word))
                word = None
            if words:
                commands.append(words)
            words = []
            if c != ";":
                i += 1
        elif c == "#" and word is None:
            return commands, words, None, n, True
        else:
            if word is None:
                word, start = [], i
            if c == "\\":
                if i + 1 < n:
                    if line[i + 1] != "\n":
                        word.append(line[i + 1])
                    i += 1
                else:
                    word.append("\\")
            elif c == "'":
                end = line.find("'", i + 1)
                if end < 0:
                    if not partial:
                        raise UsageError("unterminated single quote", "close the quote with '")
                    end = n
                word.append(line[i + 1:end])
                i = end
            elif c == '"':
                i += 1
                while i < n and line[i] != '"':
                    if line[i] == "\\" and i + 1 < n and line[i + 1] in '"\\$`\n':
                        if line[i + 1] != "\n":
                            word.append(line[i + 1])
                        i += 2
                        continue
                    word.append(line[i])
                    i += 1
                if i >= n and not partial:
                    raise UsageError('unterminated double quote', 'close the quote with "')
            else:
                word.append(c)
        i += 1
    return commands, words, word, start, False


_LEADERS = frozenset({"do", "then", "else", "elif", "if", "!"})


def _bang(words: list[str]) -> list[str]:
    """A command's words as completion sees them: keywords before it dropped (`do`,
    `then`, `if`, `! `), `!CMD` read as `run CMD`."""
    while words and words[0] in _LEADERS:
        words = words[1:]
    if not words:
        return words
    first = words[0]
    if first == "!":
        return ["run"] + words[1:]
    if first.startswith("!") and len(first) > 1:
        return ["run", first[1:]] + words[1:]
    return words


def quote(word: str) -> str:
    if word and all(c.isalnum() or c in "@%+=:,./-_[]" for c in word):
        return word
    return "'" + word.replace("'", "'\\''") + "'"


# -- the language: tokens, a parse tree, expansion -------------------------------------------

KEYWORDS = frozenset({"for", "in", "do", "done", "if", "then", "elif", "else", "fi"})
MAX_BRACE = 100_000   # the most words one brace expansion may give


class Incomplete(UsageError):
    """The text ends inside a quote or a block: more lines would complete it."""


class Part(Value):
    kind: str      # "lit" (text) or "var" ($NAME, $1, $?, $#, $@, $*)
    text: str
    quoted: bool

    _fields = ("kind", "text", "quoted")

    def __init__(self, kind, text, quoted) -> None:
        self.kind = kind
        self.text = text
        self.quoted = quoted


class Word(Value):
    parts: list
    line: int

    _fields = ("parts", "line")

    def __init__(self, parts, line) -> None:
        self.parts = parts
        self.line = line

    def literal(self) -> str | None:
        """The word's text when it is one unquoted literal (keywords, `!`), else None."""
        if len(self.parts) == 1 and self.parts[0].kind == "lit" and not self.parts[0].quoted:
            return self.parts[0].text
        return None


class Simple(Value):
    words: list
    line: int

    _fields = ("words", "line")

    def __init__(self, words, line) -> None:
        self.words = words
        self.line = line


class For(Value):
    name: str
    words: list
    body: list
    line: int

    _fields = ("name", "words", "body", "line")

    def __init__(self, name, words, body, line) -> None:
        self.name = name
        self.words = words
        self.body = body
        self.line = line


class If(Value):
    clauses: list   # [(condition list, body list)]
    orelse: list | None
    line: int

    _fields = ("clauses", "orelse", "line")

    def __init__(self, clauses, orelse, line) -> None:
        self.clauses = clauses
        self.orelse = orelse
        self.line = line


class Pipeline(Value):     # `! CMD` negates; there are no pipes
    command: object
    negate: bool
    line: int

    _fields = ("command", "negate", "line")

    def __init__(self, command, negate, line) -> None:
        self.command = command
        self.negate = negate
        self.line = line


class AndOr(Value):
    first: Pipeline
    rest: list  # [("&&" | "||", Pipeline)]

    _fields = ("first", "rest")

    def __init__(self, first, rest=None) -> None:
        self.first = first
        self.rest = [] if rest is None else rest


def check_text(text: str) -> None:
    """Refuse what no kernel call can take (NUL) and bytes that were not UTF-8, once."""
    if "\0" in text:
        raise UsageError("a NUL byte in a command line",
                         "commands are text: remove the \\0 bytes (`tr -d '\\0'`)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:  # bytes that were not UTF-8 (argv, $1, $NAME)
        byte = ord(text[e.start]) - 0xDC00 if 0xDC80 <= ord(text[e.start]) <= 0xDCFF else None
        raise UsageError("a command line that is not UTF-8 text" +
                         (f" (byte 0x{byte:02x})" if byte is not None else ""),
                         "nsshell reads commands as UTF-8: convert the input "
                         "(`iconv -t UTF-8`)") from None


_SPECIAL = "?#@*"
# A run of characters that mean nothing to the lexer, taken whole (not one at a time);
# `#`, `&` and `|` end it: they mean something at a word's start or doubled, and are
# taken one at a time by the loop.
# The text is mapped once (str.translate: C speed, no `re` to import at start-up) so
# that the end of a run is one str.find.
_MARK = str.maketrans({c: "\0" for c in " \t\r\n;&|#\\'\"$"})


def tokens(text: str, final: bool = True, line: int = 1) -> list:
    """TEXT as tokens: Word, or an operator string (";", "\\n", "&&", "||").  Raises
    Incomplete when TEXT ends inside a quote (or after a backslash, unless FINAL)."""
    check_text(text)
    out: list = []
    parts: list | None = None
    lit: list[str] = []
    i, n = 0, len(text)
    wline = line
    marks = None   # TEXT with every character that means something as NUL (_MARK)

    def flush_lit(quoted: bool):
        if lit:
            parts.append(Part("lit", "".join(lit), quoted))
            lit.clear()

    def end_word():
        nonlocal parts
        if parts is not None:
            flush_lit(False)
            out.append(Word(parts, wline))
            parts = None

    def var(j: int, quoted: bool) -> int:
        """Read a $-expansion at text[j] == '$'; returns the index after it (or -1: a plain $)."""
        if j + 1 >= n:
            return -1
        c = text[j + 1]
        name = None
        k = j + 2
        if c in _SPECIAL or c.isdigit():
            name = c
        elif c == "{":
            end = text.find("}", j + 2)
            inner = text[j + 2:end] if end > 0 else ""
            if inner and (inner.isdigit() or inner in _SPECIAL or
                          (inner[0].isalpha() or inner[0] == "_") and
                          all(x.isalnum() or x == "_" for x in inner)):
                name, k = inner, end + 1
        elif c.isalpha() or c == "_":
            k = j + 1
            while k < n and (text[k].isalnum() or text[k] == "_"):
                k += 1
            name = text[j + 1:k]
        if name is None:
            return -1
        flush_lit(quoted)
        parts.append(Part("var", name, quoted))
        return k

    while i < n:
        c = text[i]
        if c in " \t\r":
            end_word()
        elif c == "\n":
            end_word()
            out.append("\n")
            line += 1
        elif c == ";":
            end_word()
            out.append(";")
        elif c in "&|" and i + 1 < n and text[i + 1] == c:
            end_word()
            out.append(c + c)
            i += 1
        elif c == "#" and parts is None:
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        else:
            if parts is None:
                parts, wline = [], line
            if c == "\\":
                if i + 1 < n:
                    if text[i + 1] == "\n":
                        line += 1
                    else:
                        lit.append(text[i + 1])
                    i += 1
                elif final:
                    lit.append("\\")
                else:
                    raise Incomplete("a backslash at the end", "continue on the next line")
            elif c == "'":
                end = text.find("'", i + 1)
                if end < 0:
                    raise Incomplete("unterminated single quote", "close the quote with '")
                flush_lit(False)
                parts.append(Part("lit", text[i + 1:end], True))
                line += text.count("\n", i, end)
                i = end
            elif c == '"':
                flush_lit(False)
                parts.append(Part("lit", "", True))   # "" is a word of its own
                i += 1
                while i < n and text[i] != '"':
                    d = text[i]
                    if d == "\\" and i + 1 < n and text[i + 1] in '"\\$`\n':
                        if text[i + 1] != "\n":
                            lit.append(text[i + 1])
                        else:
                            line += 1
                        i += 2
                        continue
                    if d == "$":
                        k = var(i, True)
                        if k > 0:
                            i = k
                            continue
                    if d == "\n":
                        line += 1
                    lit.append(d)
                    i += 1
                if i >= n:
                    raise Incomplete('unterminated double quote', 'close the quote with "')
                flush_lit(True)
            elif c == "$":
                k = var(i, False)
                if k > 0:
                    i = k
                    continue
                lit.append(c)
            else:
                if marks is None:
                    marks = text.translate(_MARK)
                end = marks.find("\0", i)
                if end == i:  # a `#`, `&` or `|` inside a word: itself
                    lit.append(c)
                else:
                    end = n if end < 0 else end
                    lit.append(text[i:end])
                    i = end
                    continue
        i += 1
    end_word()
    return out


class _Parser:
    def __init__(self, toks: list):
        self.toks = toks
        self.n = len(toks)
        self.i = 0

    def peek(self):
        i = self.i
        return self.toks[i] if i < self.n else None

    def kw(self, tok=None) -> str | None:
        tok = self.peek() if tok is None else tok
        if isinstance(tok, Word):
            t = tok.literal()
            if t in KEYWORDS or t == "!":
                return t
        return None

    def skip_newlines(self, semis: bool = False):
        while self.peek() == "\n" or (semis and self.peek() == ";"):
            self.i += 1

    def unexpected(self, tok, what: str = ""):
        if tok is None:
            raise Incomplete(f"the text ends inside {what}" if what else "unexpected end",
                             "finish the block" if what else "")
        shown = tok if isinstance(tok, str) else (tok.literal() or "a word")
        shown = "a newline" if shown == "\n" else repr(shown)
        raise UsageError(f"syntax error: unexpected {shown}" + (f" in {what}" if what else ""),
                         "see `help language`")

    def program(self) -> list:
        items = self.cmdlist(stop=())
        if self.peek() is not None:
            self.unexpected(self.peek())
        return items

    def cmdlist(self, stop: tuple, what: str = "") -> list:
        """and-or lists separated by ; or newlines, up to a keyword of STOP (or the end)."""
        items = []
        while True:
            self.skip_newlines(semis=bool(items) or not stop)
            tok = self.peek()
            if tok is None:
                if stop:
                    self.unexpected(None, what)
                return items
            if self.kw() in stop:
                if not items:
                    self.unexpected(tok, what)
                return items
            items.append(self.andor(what))
            tok = self.peek()
            if tok in (";", "\n"):
                self.i += 1
            elif tok is None or self.kw() in stop:
                continue
            else:
                self.unexpected(tok, what)

    def andor(self, what: str) -> AndOr:
        node = AndOr(self.pipeline(what))
        while self.peek() in ("&&", "||"):
            op = self.peek()
            self.i += 1
            self.skip_newlines()
            if self.peek() is None:
                raise Incomplete(f"the text ends after {op}", "give the command that follows")
            node.rest.append((op, self.pipeline(what)))
        return node

    def pipeline(self, what: str) -> Pipeline:
        tok = self.peek()
        negate = False
        if self.kw() == "!":
            negate = True
            self.i += 1
            tok = self.peek()
            if tok is None:
                raise Incomplete("the text ends after !", "give the command to negate")
        if not isinstance(tok, Word):
            self.unexpected(tok, what)
        return Pipeline(self.command(what), negate, tok.line)

    def command(self, what: str):
        tok = self.peek()
        k = self.kw()
        if k == "for":
            return self.for_()
        if k == "if":
            return self.if_()
        if k is not None and k != "!":
            self.unexpected(tok, what)
        words = []
        while isinstance(self.peek(), Word):
            words.append(self.peek())
            self.i += 1
        return Simple(words, tok.line)

    def for_(self) -> For:
        line = self.peek().line
        self.i += 1
        tok = self.peek()
        name = tok.literal() if isinstance(tok, Word) else None
        if tok is None:
            raise Incomplete("the text ends inside for", "for NAME in WORDS; do ...; done")
        if not name or not (name[0].isalpha() or name[0] == "_") or \
                not all(c.isalnum() or c == "_" for c in name):
            raise UsageError("for: a variable name must follow `for`", "for NAME in WORDS; do ...; done")
        self.i += 1
        words = []
        self.skip_newlines()
        if self.kw() == "in":
            self.i += 1
            while isinstance(self.peek(), Word):
                words.append(self.peek())
                self.i += 1
        else:
            raise UsageError("for: `in WORDS` must follow the name", "for NAME in WORDS; do ...; done")
        self.skip_newlines(semis=False)
        if self.peek() == ";":
            self.i += 1
        self.skip_newlines()
        if self.peek() is None:
            raise Incomplete("the text ends inside for", "for NAME in WORDS; do ...; done")
        if self.kw() != "do":
            self.unexpected(self.peek(), "for")
        self.i += 1
        body = self.cmdlist(("done",), "for")
        self.i += 1
        return For(name, words, body, line)

    def if_(self) -> If:
        line = self.peek().line
        clauses = []
        orelse = None
        while True:
            self.i += 1   # if / elif
            cond = self.cmdlist(("then",), "if")
            self.i += 1
            body = self.cmdlist(("elif", "else", "fi"), "if")
            clauses.append((cond, body))
            k = self.kw()
            if k == "elif":
                continue
            if k == "else":
                self.i += 1
                orelse = self.cmdlist(("fi",), "if")
            self.i += 1   # fi
            return If(clauses, orelse, line)


def parse(text: str, final: bool = True, line: int = 1) -> list:
    """TEXT as a list of AndOr nodes.  Raises Incomplete when more text would complete it
    (an open quote or block, a trailing `&&`), UsageError for a syntax error."""
    toks = tokens(text, final, line)
    simple = _one_simple(toks)
    return simple if simple is not None else _Parser(toks).program()


def _one_simple(toks: list) -> list | None:
    """The usual line, one simple command (words, then newlines), as the parser makes
    it; None for anything else (operators, keywords, `!`, several commands)."""
    n = len(toks)
    while n and toks[n - 1] == "\n":
        n -= 1
    if not n:
        return None
    for i in range(n):
        if type(toks[i]) is not Word:
            return None
    first = toks[0]
    word = first.literal()
    if word is not None and (word in KEYWORDS or word == "!"):
        return None
    return [AndOr(Pipeline(Simple(toks[:n], first.line), False, first.line))]


def is_complete(text: str) -> bool:
    """Whether TEXT is a whole command (the REPL's and a pipe's reader ask before running)."""
    try:
        parse(text, final=False)
    except Incomplete:
        return False
    except UsageError:
        return True
    return True


def expand_word(word: Word, lookup, args: list[str]) -> list[str]:
    """The fields WORD gives: braces, then $-expansions (LOOKUP(name) -> str), then unquoted
    values split at blanks (no globbing).  "$@" is one field per argument of ARGS."""
    parts = word.parts
    if len(parts) == 1:  # the usual word: one literal, nothing to expand (quoted: no braces)
        p = parts[0]
        if p.kind == "lit" and (p.quoted or "{" not in p.text):
            return [p.text]
    out: list[str] = []
    for parts in _braces(word.parts):
        out.extend(_fields(parts, lookup, args))
    return out


def _fields(parts: list, lookup, args: list[str]) -> list[str]:
    real = [p for p in parts if not (p.kind == "lit" and p.quoted and not p.text)]
    if not args and len(real) == 1 and real[0].kind == "var" and real[0].text == "@":
        return []   # "$@" without arguments is no word at all
    fields: list[str] = []
    cur: list[str] = []
    have = False

    def close():
        nonlocal cur, have
        if have:
            fields.append("".join(cur))
        cur, have = [], False

    for p in parts:
        if p.kind == "lit":
            cur.append(p.text)
            have = have or p.quoted or bool(p.text)
            continue
        if p.text in ("@", "*"):
            values = list(args)
            if p.quoted and p.text == "*":
                values = [" ".join(args)]
        else:
            values = [lookup(p.text)]
        for j, v in enumerate(values):
            if j:
                if p.quoted:
                    have = True
                close()
            if p.quoted:
                cur.append(v)
                have = True
                continue
            pieces = v.split()
            if not pieces:
                continue
            if v[:1].isspace():
                close()
            for k, piece in enumerate(pieces):
                if k:
                    close()
                cur.append(piece)
                have = True
            if v[-1:].isspace():
                close()
    close()
    return fields


def _braces(parts: list) -> list:
    """Brace expansion of the unquoted literal parts: {1..5}, {a..e}, {x,y}."""
    for idx, p in enumerate(parts):
        if p.kind != "lit" or p.quoted or "{" not in p.text:
            continue
        t = p.text
        start = t.find("{")
        while start >= 0:
            end = t.find("}", start)
            if end < 0:
                break
            inner = t[start + 1:end]
            items = _brace_items(inner)
            if items is not None:
                out = []
                for item in items:
                    rest = [Part("lit", t[:start] + item, False)]
                    tail = t[end + 1:]
                    new = parts[:idx] + rest + ([Part("lit", tail, False)] if tail else []) + parts[idx + 1:]
                    out.extend(_braces(new) if len(out) < MAX_BRACE else [])
                return out
            start = t.find("{", start + 1)
    return [parts]


def _brace_items(inner: str) -> list[str] | None:
    if "{" in inner:
        return None
    if ".." in inner:
        a, _, b = inner.partition("..")
        try:
            x, y = int(a), int(b)
        except ValueError:
            if len(a) == 1 and len(b) == 1 and a.isalpha() and b.isalpha():
                step = 1 if ord(b) >= ord(a) else -1
                return [chr(c) for c in range(ord(a), ord(b) + step, step)]
            return None
        if abs(y - x) >= MAX_BRACE:
            raise UsageError(f"{{{inner}}} gives more than {MAX_BRACE} words",
                             "use a smaller range")
        step = 1 if y >= x else -1
        return [str(v) for v in range(x, y + step, step)]
    if "," in inner:
        return inner.split(",")
    return None
