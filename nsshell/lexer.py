"""Splitting a line into commands and words, as a POSIX shell would.

Quotes ('...', "..."), backslash escapes, `;` between commands, `#` comments,
and `!CMD ...` as short for `run CMD ...`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError


@dataclass
class Partial:
    """A line being typed, as completion sees it."""
    words: list[str]    # the finished words of its last command
    current: str        # the word under the cursor ('' after a space)
    start: int          # where that word begins in the line (its opening quote included)
    comment: bool       # the cursor is inside a comment: nothing to complete


def split(line: str) -> list[list[str]]:
    """'a b; c "d;e" # x' -> [['a', 'b'], ['c', 'd;e']]."""
    commands, words, word, _, _ = _walk(line, partial=False)
    if word is not None:
        words.append("".join(word))
    if words:
        commands.append(words)
    return [_bang(ws) for ws in commands]


def partial(line: str) -> Partial:
    """The last command of a line still being typed; an open quote is part of the word."""
    _, words, word, start, comment = _walk(line, partial=True)
    current = "".join(word) if word is not None else ""
    if word is None:
        start = len(line)
    if words:
        words = _bang(words)
    elif current.startswith("!"):
        return Partial(["run"], current[1:], start + 1, comment)
    return Partial(words, current, start, comment)


def _walk(line: str, partial: bool):
    """The one tokenizer: (finished commands, words of the last one, the word in progress
    as a list of characters or None, where it starts, whether a comment was reached).
    Unless PARTIAL, an unterminated quote is a UsageError."""
    commands: list[list[str]] = []
    words: list[str] = []
    word: list[str] | None = None
    start = 0
    i, n = 0, len(line)
    if not partial and "\0" in line:  # no kernel call can take it: refuse it here, once
        raise UsageError("a NUL byte in a command line",
                         "commands are text: remove the \\0 bytes (`tr -d '\\0'`)")
    if not partial:
        try:
            line.encode("utf-8")
        except UnicodeEncodeError as e:  # bytes that were not UTF-8 (argv, $1, $NAME)
            byte = ord(line[e.start]) - 0xDC00 if 0xDC80 <= ord(line[e.start]) <= 0xDCFF else None
            raise UsageError("a command line that is not UTF-8 text" +
                             (f" (byte 0x{byte:02x})" if byte is not None else ""),
                             "nsshell reads commands as UTF-8: convert the input "
                             "(`iconv -t UTF-8`)") from None
    while i < n:
        c = line[i]
        if c in " \t\r\n":
            if word is not None:
                words.append("".join(word))
                word = None
        elif c == ";":
            if word is not None:
                words.append("".join(word))
                word = None
            if words:
                commands.append(words)
            words = []
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


def segments(line: str) -> list[str]:
    """The raw text of each `;`-separated command of LINE (quotes respected, comment
    dropped), so that each can be expanded just before it runs ($? is then current)."""
    return _segments(line)[0]


def open_quote(line: str) -> bool:
    """Whether LINE ends inside a quote (a script's next line continues the word)."""
    return _segments(line)[1]


def _segments(line: str) -> tuple[list[str], bool]:
    out, start, i, n = [], 0, 0, len(line)
    quote_char = None
    while i < n:
        c = line[i]
        if quote_char:
            if c == quote_char:
                quote_char = None
            elif c == "\\" and quote_char == '"':
                i += 1
        elif c == "\\":
            i += 1
        elif c in "'\"":
            quote_char = c
        elif c == ";":
            out.append(line[start:i])
            start = i + 1
        elif c == "#" and (i == 0 or line[i - 1] in " \t;"):
            break
        i += 1
    out.append(line[start:i] if quote_char is None else line[start:])
    return [seg for seg in out if seg.strip()], quote_char is not None


def _bang(words: list[str]) -> list[str]:
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
