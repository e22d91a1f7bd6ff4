"""Splitting a line into commands and words, as a POSIX shell would.

Quotes ('...', "..."), backslash escapes, `;` between commands, `#` comments,
and `!CMD ...` as short for `run CMD ...`.
"""

from __future__ import annotations

from .errors import UsageError


def split(line: str) -> list[list[str]]:
    """'a b; c "d;e" # x' -> [['a', 'b'], ['c', 'd;e']]."""
    commands: list[list[str]] = []
    words: list[str] = []
    word: list[str] = []
    in_word = False
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c in " \t\r\n":
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
        elif c == ";":
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
            if words:
                commands.append(words)
            words = []
        elif c == "#" and not in_word:
            break
        elif c == "\\":
            if i + 1 < n:
                if line[i + 1] != "\n":
                    word.append(line[i + 1])
                    in_word = True
                i += 1
            else:
                word.append("\\")
                in_word = True
        elif c == "'":
            end = line.find("'", i + 1)
            if end < 0:
                raise UsageError("unterminated single quote", "close the quote with '")
            word.append(line[i + 1:end])
            in_word = True
            i = end
        elif c == '"':
            i += 1
            in_word = True
            while True:
                if i >= n:
                    raise UsageError('unterminated double quote', 'close the quote with "')
                ch = line[i]
                if ch == '"':
                    break
                if ch == "\\" and i + 1 < n and line[i + 1] in '"\\$`\n':
                    if line[i + 1] != "\n":
                        word.append(line[i + 1])
                    i += 2
                    continue
                word.append(ch)
                i += 1
        else:
            word.append(c)
            in_word = True
        i += 1
    if in_word:
        words.append("".join(word))
    if words:
        commands.append(words)
    return [_bang(ws) for ws in commands]


def segments(line: str) -> list[str]:
    """The raw text of each `;`-separated command of LINE (quotes respected, comment
    dropped), so that each can be expanded just before it runs ($? is then current)."""
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
    return [seg for seg in out if seg.strip()]


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
