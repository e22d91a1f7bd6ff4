"""Command lines for the fuzz harness: every command of the registry (plugins
included), with words drawn from pools per parameter type (types, REFs, paths,
numbers, names, addresses), options right and wrong, then mutated: unicode,
control bytes, NUL, unbalanced quotes, operators, variables.

Deterministic for a seed.  Nothing generated may reach beyond the sandbox the
runner gives it: programs for `run`/`sh` come from a short list of harmless ones,
and every directory a command would write to (mount, persist, --root) lies
under FZ (the runner's private scratch directory).

    python tests/fuzz/gen.py --count 20 --seed 1     # print some lines
"""

from __future__ import annotations

import random

FZ = "/tmp/fz"   # the runner makes it (in the sandbox: on a private tmpfs)

TYPES = ["user", "mnt", "mount", "pid", "net", "uts", "ipc", "cgroup", "time", "all",
         "user+mnt", "user+net+uts", "net+uts", "user+pid+mnt", "pid+mnt", "user+time",
         "net+net", "user+", "+", "", "nett", "NET", "user+mnt+pid+net+uts+ipc+cgroup+time",
         "network", "cgroups", "mnt+user", "all+net"]
NAMES = ["fz0", "fz1", "fz2", "fz3", "_fz", "fz.a-b", "0abc", "123", "host", "all", "a" * 64,
         "a" * 65, "fz/x", "fz:x", "-fz", "ns1", "ns2", "Fz", "фз", "fz\u200b"]
REFS = ["host", "ns1", "ns2", "fz0", "fz1", "fz2", "pid:1", "pid:0", "pid:-1", "pid:$$",
        "pid:99999999", "pid:1x", "pid:", "1", "0", "-1", "99999999999999999999",
        "net:[4026531840]", "net:[1]", "net:[]", "net:[abc]", "foo:[1]", "user:[99999999999999999999]",
        "/proc/self/ns/net", "/proc/1/ns/mnt", "/proc/self/ns/pid_for_children",
        "/proc/self/ns", "/proc/self/ns/", "/", "/dev/null", "/dev/zero", "/dev/tty",
        f"{FZ}/fifo", f"{FZ}/file", f"{FZ}/link", f"{FZ}/nonexistent", "/etc/shadow",
        "relative/path", ".", "..", "~", "$HOME", "/proc/self/fd/0", "/proc/self/fd/1",
        "/run/netns/fz0", "/run/nsshell/fz0", "/run/nsshell/fz0/net", "net", "fz0:eth0"]
READ_PATHS = ["/", "/dev/null", "/dev/zero", f"{FZ}/fifo", f"{FZ}/file", f"{FZ}/link",
              f"{FZ}/script.nss", f"{FZ}/bad-utf8.nss", f"{FZ}/self.nss", f"{FZ}/nonexistent",
              "/proc/self/mountinfo", "/etc/shadow", "relative", "", "/" * 300,
              "/tmp/" + "x" * 5000, f"{FZ}/dir"]
WRITE_DIRS = [f"{FZ}/m1", f"{FZ}/m2", f"{FZ}/m3", f"{FZ}/dir", f"{FZ}/nonexistent",
              f"{FZ}/file", f"{FZ}/fifo", f"{FZ}/link", "fzrel", f"{FZ}/m1/../m2", f"{FZ}/m1/",
              f"{FZ}/" + "d" * 300]
STORE_DIRS = [f"{FZ}/p1", f"{FZ}/p2", f"{FZ}/file", f"{FZ}/nonexistent/deeper", "fzrel"]
ROOTS = [f"{FZ}/r1", f"{FZ}/r2", f"{FZ}/file", "relative", "/", f"{FZ}/r1/", ""]
NUMBERS = ["0", "1", "-1", "2", "10", "65534", "65535", "65536", "4294967295", "4294967296",
           "9223372036854775808", "1e300", "-1e300", "nan", "inf", "-inf", "0x10", "1.5", "",
           "٣", "1_000", "+5", " 7", "86400", "-86400", "3.14e9"]
WORDS = ["x", "", " ", "a b", "fz", "é", "日本", "\U0001f600", "a" * 100, "a" * 5000, "--", "-",
         "--json", ";", "#", "&&", "||", "$?", "$1", "$#", "$@", "${HOME}", "$UNSET", "'", '"',
         "\\", "*", "?", "{1..3}", "%s%n", "\x7f", "\u202e", "\ufeff"]
IFNAMES = ["lo", "eth0", "fzv0", "fzv1", "br0", "", "a" * 15, "a" * 16, "a/b", "a:b", "..",
           "lo lo", "é", "fz0:eth0"]
CIDRS = ["10.0.0.1/24", "10.0.0.1", "10.0.0.1/33", "fd00::1/64", "fd00::1/129", "::/0",
         "0.0.0.0/0", "256.1.1.1/8", "x/24", "10.0.0.1/-1", ""]
GATEWAYS = ["10.0.0.254", "fd00::fe", "0.0.0.0", "x", "", "10.0.0.1/24"]
DESTS = ["default", "10.1.0.0/16", "fd01::/64", "10.1.0.1/16", "x", ""]
SIZES = ["1m", "64k", "0", "50%", "101%", "1x", "-1m", "99999999999g", ""]
SETTINGS = ["errexit", "root", "persist_root", "nope", ""]
# Harmless programs only: nothing they do outlives them or writes anywhere.
PROGRAMS = [["true"], ["false"], ["echo", "hi"], ["id", "-u"], ["hostname"], ["ls", "/"],
            ["sh", "-c", "exit 3"], ["sh", "-c", "kill -9 $$"], ["/nonexistent"], ["."],
            [f"{FZ}/file"], ["cat", "/proc/self/uid_map"], ["sleep", "0"], ["env"],
            ["echo", "a\x01b"], ["true", "é"], ["--uid", "0", "true"], ["--uid", "x", "true"],
            ["--gid", "65534", "id"], ["--cwd", "/", "pwd"], ["--cwd", f"{FZ}/nonexistent", "true"],
            ["--root", f"{FZ}/dir", "true"], ["--env", "A=1", "env"], ["--env", "bad", "true"],
            ["--", "true"], [], ["--uid"], ["-x", "true"]]
UNICODE = ["é", "ß", "日", "\U0001f600", "\u0301", "\u200b", "\u202e", "\ufeff", "\ud7ff",
           "\x85", "\u2028"]
CONTROL = ["\x01", "\x07", "\x08", "\t", "\x0b", "\x0c", "\r", "\x1b", "\x1b[31m", "\x1b]0;t\x07",
           "\x7f", "\n"]


def _choice_values(param, rng) -> str:
    t = type(param.type).__name__
    if t == "Choice":
        return rng.choice(list(param.type.choices) + ["nope", "", "PRIVATE"])
    return None


def _value(cmd, param, rng: random.Random, rootless: bool) -> str | list[str]:
    t = type(param.type).__name__
    name = cmd.name
    if t == "NsTypes":
        return rng.choice(TYPES)
    if t in ("Ref", "PersistedName"):
        return rng.choice(REFS + NAMES[:6])
    if t == "NewName":
        return rng.choice(NAMES)
    if t == "Endpoint":
        return rng.choice(REFS[:6]) + rng.choice(["", ":eth0", ":fzv0", ":", ":a/b", ":" + "x" * 20])
    if t in ("Int", "Seconds", "Pid"):
        return rng.choice(NUMBERS + (["pid:1", "pid:$$", "$$"] if t == "Pid" else []))
    if t == "Choice":
        return _choice_values(param, rng)
    if t == "IfName":
        return rng.choice(IFNAMES)
    if t == "Cidr":
        return rng.choice(CIDRS)
    if t == "Gateway":
        return rng.choice(GATEWAYS)
    if t == "RouteDest":
        return rng.choice(DESTS)
    if t == "Size":
        return rng.choice(SIZES)
    if t == "SettingName":
        return rng.choice(SETTINGS)
    if t == "RootDir":
        return rng.choice(ROOTS)
    if t == "CommandName":
        return rng.choice(["new", "net", "net veth", "mount", "nope", "help", ""])
    if t in ("ProgramName",) or param.kind == "rest":
        return list(rng.choice(PROGRAMS))
    if t == "Path":
        if name in ("sh",):
            return rng.choice(["true", "/bin/false", "/nonexistent", ""])
        if name.startswith("mount") or name == "persist":
            return rng.choice(STORE_DIRS if name == "persist" else WRITE_DIRS)
        return rng.choice(READ_PATHS)
    if name == "set" and param.name == "value":
        return rng.choice(["on", "off", "1", "maybe", ""] + ROOTS)
    if name == "map":
        return rng.choice(NUMBERS + ["root", "auto"])
    return rng.choice(WORDS)


class _Literal(str):
    """A word that is always quoted exactly (a program's argument: `sh -c 'exit 3'`)."""


def _quote(word: str, rng: random.Random) -> str:
    if isinstance(word, _Literal):
        return word if word and all(c.isalnum() or c in "@%+=:,./-_" for c in word) else \
            "'" + word.replace("'", "'\\''") + "'"
    if word and all(c.isalnum() or c in "@%+=:,./-_[]" for c in word) and rng.random() < 0.9:
        return word
    style = rng.random()
    if style < 0.6:
        return "'" + word.replace("'", "'\\''") + "'"
    if style < 0.9:
        return '"' + word.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'
    return word  # unquoted, as typed carelessly


# How often each command comes up (1 when not listed): more of what makes state.
WEIGHTS = {"new": 6, "join": 3, "persist": 3, "unpersist": 2, "open": 2, "name": 2, "close": 2,
           "map": 2, "map root": 2, "run": 3, "show": 2, "net veth": 2, "exit": 0.2, "fg": 0,
           "help": 0.5, "plugins": 0.3}


def command_line(registry, rng: random.Random, rootless: bool) -> str:
    cmds = sorted(registry.commands.values(), key=lambda c: c.name)
    cmd = rng.choices(cmds, [WEIGHTS.get(c.name, 1) for c in cmds])[0]
    words = list(cmd.words)
    for p in cmd.params:
        if p.kind in ("flag",):
            # --host on a mount command as root would change the sandbox's own mounts (and
            # `mount root --host` would pivot it): the refusal without --host is what is fuzzed
            if rng.random() < 0.3 and not (p.name == "host" and cmd.name.startswith("mount")
                                           and not rootless):
                words.append(rng.choice(p.flags))
            continue
        if p.kind == "opt":
            if rng.random() < 0.35:
                v = _value(cmd, p, rng, rootless)
                words += [rng.choice(p.flags), v] if rng.random() < 0.8 else [f"{p.flags[-1]}={v}"]
            continue
        if p.kind == "kw":
            if rng.random() < 0.5:
                words += [p.keyword, _value(cmd, p, rng, rootless)]
            continue
        if not p.required and rng.random() < 0.4:
            continue
        if rng.random() < 0.04:
            continue  # a missing argument
        v = _value(cmd, p, rng, rootless)
        if isinstance(v, list):  # a program's words: quoted as they are meant
            words += [_Literal(w) for w in v]
        elif p.kind == "var":
            words += [v] + ([_value(cmd, p, rng, rootless)] if rng.random() < 0.3 else [])
        else:
            words.append(v)
    if rng.random() < 0.05 and cmd.rest_param() is None:  # after a program: its own words
        extra = ["--json", "--nope", "-z", "--help", "extra"]
        if rootless or not cmd.name.startswith("mount"):  # root's --host mounts: see above
            extra.append("--host")
        words.append(rng.choice(extra))
    return " ".join(_quote(w, rng) for w in words)


def _mutate(line: str, rng: random.Random) -> str:
    r = rng.random()
    if r < 0.06:
        i = rng.randrange(len(line) + 1)
        return line[:i] + rng.choice(UNICODE) + line[i:]
    if r < 0.12:
        i = rng.randrange(len(line) + 1)
        return line[:i] + rng.choice(CONTROL) + line[i:]
    if r < 0.15:
        i = rng.randrange(len(line) + 1)
        return line[:i] + "\x00" + line[i:]
    if r < 0.19:
        return line + rng.choice([" '", ' "', " 'a", ' "a', " \\", ' "\\'])  # unbalanced
    if r < 0.22:  # `!CMD` runs a program: only harmless ones (never one named like a command)
        return rng.choice(["!", "! ", "!!", ""]) + " ".join(
            _quote(_Literal(w), rng) for w in rng.choice(PROGRAMS))
    if r < 0.28:
        return line + rng.choice([" && echo ok", " || echo failed", "; echo $?", " # comment",
                                  "; ; ;", " &&", "|| ||"])
    if r < 0.30:
        return f"for i in {{1..{rng.choice(['3', '0', '-1', 'x', '99999999999'])}}}; do {line}; done"
    if r < 0.32:
        return f"if {line}; then echo yes; else echo no; fi"
    if r < 0.34:
        words = line.split(" ")
        rng.shuffle(words)
        return " ".join(words)
    if r < 0.36:
        return line[:rng.randrange(len(line) + 1)]  # cut short
    return line


def generate(count: int, seed: int = 0, rootless: bool = False) -> list[str]:
    """COUNT command lines (str; may hold any character, NUL included)."""
    import nsshell.commands  # noqa: F401 - registers the built-ins
    from nsshell.plugin_loader import load_all
    from nsshell.registry import REGISTRY
    load_all()
    REGISTRY.load_all()   # every command declared (built-ins and plugins load on first use)
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        r = rng.random()
        if r < 0.03:   # raw noise
            n = rng.randrange(0, 40)
            line = "".join(rng.choice(UNICODE + CONTROL + ["\x00", "'", '"', ";", " ", "a", "$"])
                           for _ in range(n))
        else:
            line = command_line(REGISTRY, rng, rootless)
            if line.startswith(("run", "sh", "!")) and not line.startswith(("show", "set")):
                # a program's words are its own (what it prints about them is not ours to
                # judge): only the command word is mutated
                if rng.random() < 0.2:
                    i = rng.randrange(3)
                    line = line[:i] + rng.choice(UNICODE + CONTROL + ["\x00", "'"]) + line[i:]
            else:
                line = _mutate(line, rng)
        out.append(line)
    return out


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rootless", action="store_true")
    a = ap.parse_args()
    for line in generate(a.count, a.seed, a.rootless):
        print(repr(line))
