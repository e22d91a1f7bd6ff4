"""The commands any shell has: source, echo, set, help, exit."""

from __future__ import annotations

from ..errors import ExitRequest, NotFoundError, NsshellError, UsageError
from ..helptext import command_help, language_help, overview
from ..registry import REGISTRY, Annotated, CommandName, Rest, command
from ..results import Message, Status, Table
from ..types import Int, Path, ParamType, Word

MAX_SOURCE_DEPTH = 32


class SettingName(ParamType):
    metavar = "OPTION"

    def parse(self, text, session):
        if text not in session.settings:
            raise ValueError(f"no such option (options: {', '.join(sorted(session.settings))})")
        return text

    def complete(self, prefix, session, ctx=None):
        return [(n, s.help) for n, s in sorted(session.settings.items()) if n.startswith(prefix)]


@command("source", aliases=(".",))
def source(sh, path: Annotated[str, Path("FILE")], args: Annotated[list, Rest(), Word("ARG")] = None):
    """Run the commands of FILE in this session, as if typed here.

    With ARGS, $1, $2, ... $# and $@ in FILE are those words (and are restored after it).

    Arguments:
      path: a script of nsshell commands
      args: the script's arguments ($1, $2, ...)

    Examples:
      source lab.nss
      source mklab.nss 10 blue
    """
    from ..engine import read_script
    try:
        text = read_script(path)
    except OSError as e:
        raise NotFoundError(f"cannot read {path}: {e.strerror}") from None
    engine = sh.engine
    if engine.depth >= MAX_SOURCE_DEPTH:
        raise NsshellError(f"source nests more than {MAX_SOURCE_DEPTH} deep", "a script sources itself?")
    engine.depth += 1
    saved = engine.argv
    if args:
        engine.argv = [path] + list(args)
    try:
        return Status(engine.run_script(text, path))
    finally:
        engine.argv = saved
        engine.depth -= 1


@command("echo")
def echo(sh, words: Annotated[list, Rest(), Word("TEXT")] = None):
    """Print the words, separated by spaces (`-n` first: no newline at the end).

    Every other word is printed as it is, `---` and `--help` too.

    Arguments:
      words: what to print ($1, $?, $NAME are expanded)

    Examples:
      echo built the lab
      echo last status $?
      echo -n no newline
    """
    words = list(words or [])
    renderer = sh.engine.renderer
    if words[:1] == ["-n"] and renderer.mode in ("plain", "rich"):
        renderer.out.write(" ".join(words[1:]))   # as typed: no newline (nor JSON) after it
        renderer.out.flush()
        return None
    if words[:1] == ["-n"]:
        words = words[1:]
    return Message(" ".join(words))


@command("true", data=False)
def true_(sh):
    """Do nothing, successfully (status 0): `while`-less loops and conditions use it.

    Examples:
      true && echo yes
    """
    return None


@command("false", data=False)
def false_(sh):
    """Do nothing, and fail (status 1).

    Examples:
      false || echo no
    """
    return Status(1)


@command("set")
def set_(sh, option: Annotated[str, SettingName()] = None, value: Annotated[str, Word("VALUE")] = None):
    """Show the settings, or set OPTION to VALUE.

    Arguments:
      option: errexit (stop a batch at the first failure), root, ...
      value: on/off for switches

    Examples:
      set
      set errexit off
    """
    if option is None:
        rows = [[n, _show(s.value), s.help] for n, s in sorted(sh.settings.items())]
        return Table(["option", "value", "description"], rows, key="settings")
    setting = sh.settings[option]
    if value is None:
        return Message(_show(setting.value))
    try:
        setting.value = setting.parse(value)
    except ValueError as e:
        raise UsageError(f"{option} {value!r}: {e}") from None
    return None


def _show(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


@command("help")
def help_(sh, topic: Annotated[list, CommandName()] = None):
    """Show the commands, or how to use one.

    Arguments:
      topic: a command (e.g. new, or net veth), or `language` (the grammar)

    Examples:
      help
      help new
      help net veth
      help language
    """
    if not topic:
        return Message(overview(REGISTRY))
    if topic == ["language"]:
        return Message(language_help())
    found = REGISTRY.lookup(topic)
    if found is None or found[1] != len(topic):
        subs = REGISTRY.subcommands(" ".join(topic))
        if subs:
            return Message("\n\n".join(command_help(c, REGISTRY) for c in subs))
        raise UsageError(f"no command {' '.join(topic)!r}", "`help` lists the commands")
    return Message(command_help(found[0], REGISTRY))


@command("exit", aliases=("quit",), data=False)
def exit_(sh, status: Annotated[int, Int("STATUS", minimum=0)] = None):
    """Leave the shell (handles are closed; persisted namespaces stay).

    Arguments:
      status: the exit status (default: the last command's)

    Examples:
      exit
      exit 3
    """
    raise ExitRequest(sh.last_status if status is None else status & 0xFF)
