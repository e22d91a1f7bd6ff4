"""argv -> mode (-c TEXT, FILE, piped stdin, interactive) -> exit status."""

from __future__ import annotations

import os
import sys

from .version import __version__
from .errors import EXIT_FAILURE, EXIT_INTERNAL, EXIT_USAGE, ExitRequest

# The open files nsshell needs to start and do ordinary work: its own handles (one per
# namespace type), a helper's socket pair, Python's imports.  Below this it refuses to
# start with one clear line rather than fail half way through a command.
MIN_FDS = 64

USAGE = """\
nsshell                      interactive shell
nsshell -c 'CMD; CMD'        run the commands, then exit
nsshell FILE [ARGS]          run a script
... | nsshell                commands from a pipe"""


def build_parser():
    """The command line's parser: its --help, its errors and docgen's option list.  An
    ordinary command line is read by parse_simple, without it (argparse, with the shutil,
    bz2 and lzma its help formatter imports, costs ~5 ms of every start)."""
    import argparse

    class _Parser(argparse.ArgumentParser):
        def error(self, message: str):  # one line, exit 2, as every usage error
            sys.stderr.write(f"nsshell: {message}; hint: nsshell --help\n")
            sys.exit(EXIT_USAGE)

    p = _Parser(prog="nsshell", usage=USAGE,
                description="An interactive shell and scripting language for Linux namespaces.")
    p.add_argument("-c", dest="command", metavar="TEXT", help="run TEXT (commands separated by ; or newlines)")
    p.add_argument("--json", action="store_true", help="JSON for every command that has data to show")
    p.add_argument("-k", "--keep-going", action="store_true", help="do not stop a batch at the first failure")
    p.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    p.add_argument("--no-plugins", action="store_true", help="load no plugins")
    p.add_argument("--persist-root", metavar="DIR",
                   help="where `persist` keeps namespaces and persisted names are found "
                        "(default: $NSSHELL_PERSIST_ROOT, or /run/nsshell)")
    p.add_argument("--version", action="version", version=f"nsshell {__version__}")
    p.add_argument("--complete", metavar="LINE", help=argparse.SUPPRESS)
    p.add_argument("file", nargs="?", metavar="FILE", help="a script of nsshell commands")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="arguments of the script ($1, $2, ...)")
    return p


class Options:
    """What the command line asks for (the attributes build_parser's parse_args gives)."""

    def __init__(self) -> None:
        self.command: str | None = None
        self.json = False
        self.keep_going = False
        self.debug = False
        self.no_plugins = False
        self.complete: str | None = None
        self.persist_root: str | None = None
        self.file: str | None = None
        self.args: list[str] = []


_FLAGS = {"--json": "json", "-k": "keep_going", "--keep-going": "keep_going",
          "--debug": "debug", "--no-plugins": "no_plugins"}
_VALUED = {"-c": "command", "--complete": "complete", "--persist-root": "persist_root"}


def parse_simple(argv: list[str]) -> Options | None:
    """ARGV read as build_parser reads it, for the ordinary forms only: the options each
    spelled out whole, `-c TEXT`, then FILE and its arguments.  None for anything else
    (--help, --version, `-cTEXT`, `--`, an abbreviation, a value that looks like an
    option, an unknown option): the parser answers those, with its messages."""
    opts = Options()
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in _FLAGS:
            setattr(opts, _FLAGS[word], True)
        elif word in _VALUED:
            if i + 1 >= len(argv) or argv[i + 1].startswith("-"):
                return None
            i += 1
            setattr(opts, _VALUED[word], argv[i])
        elif word.startswith("-"):
            return None
        else:
            opts.file, opts.args = word, list(argv[i + 1:])
            if "--" in opts.args:   # argparse drops it from the script's arguments
                return None
            break
        i += 1
    return opts


def parse_args(argv: list[str] | None = None):
    words = sys.argv[1:] if argv is None else list(argv)
    return parse_simple(words) or build_parser().parse_args(words)


def entry() -> None:
    """The `nsshell` command: main(), then exit without the interpreter's teardown.

    Tearing down the modules and collecting every cycle left (pyroute2's messages
    make many) took 20-25 ms of a 300 ms network-lab script, after all the work
    was done.  The exit handlers still run (the socket opener is waited for) and
    the output is flushed; only the freeing of memory the kernel frees anyway
    is skipped.
    """
    status = main()
    if sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(status)  # a profiler or coverage reports at the interpreter's exit
    import atexit
    atexit._run_exitfuncs()  # noqa: SLF001 - what sys.exit would run, before os._exit
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            status = status or 128 + 13
        except (OSError, ValueError):
            pass
    os._exit(status if isinstance(status, int) else 1)


def _say(message: str) -> None:
    from .errors import one_line
    sys.stderr.write(one_line(f"nsshell: {message}") + "\n")
    sys.stderr.flush()


def _fd_limit_problem() -> str | None:
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < MIN_FDS:
        return (f"the open-file limit is {soft} (`ulimit -n`); nsshell needs at least {MIN_FDS}; "
                f"hint: raise it (`ulimit -n 1024`" + (")" if hard == resource.RLIM_INFINITY or
                                                         hard >= 1024 else
                                                         f", at most the hard limit {hard})"))
    return None


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    problem = _fd_limit_problem()
    if problem:
        _say(problem)
        return EXIT_FAILURE
    try:
        return _main(opts)
    except (OSError, MemoryError) as e:  # a limit hit while starting (or ending) the shell
        if opts.debug:
            import traceback
            traceback.print_exc()
        from .errors import RESOURCE_ERRNOS, from_oserror
        if isinstance(e, MemoryError):
            _say("out of memory")
            return EXIT_FAILURE
        err = from_oserror(e, e.filename or "starting nsshell")
        _say(str(err))
        return EXIT_FAILURE if e.errno in RESOURCE_ERRNOS else EXIT_INTERNAL
    except Exception as e:  # noqa: BLE001 - a bug outside any command: still one line
        if opts.debug:
            import traceback
            traceback.print_exc()
        from .errors import internal
        _say(str(internal(e)))
        return EXIT_INTERNAL


def persist_root(option: str | None = None) -> str:
    """The persist root, decided once: --persist-root, $NSSHELL_PERSIST_ROOT, /run/nsshell.
    A bad one is a UsageError naming where it came from."""
    from .core.store import DEFAULT_ROOT, ENV_ROOT   # (not the store itself: start-up)
    from .errors import UsageError
    text, where = ((option, "--persist-root") if option is not None else
                   (os.environ.get(ENV_ROOT), f"${ENV_ROOT}"))
    if not text:
        return DEFAULT_ROOT
    from .core.store.persist import parse_root
    try:
        return parse_root(text)
    except ValueError as e:
        raise UsageError(f"{where} {text!r}: {e}", "an absolute path, e.g. /run/nsshell") from None


def _main(opts) -> int:
    from . import commands  # noqa: F401 - registers the built-ins
    from .engine import Engine, read_script
    from .errors import NsshellError, one_line
    from .render import Renderer
    from .session import Session

    interactive = opts.command is None and opts.file is None and sys.stdin.isatty()
    try:
        root = persist_root(opts.persist_root)
    except NsshellError as e:
        _say(str(e))
        return e.status
    if not opts.no_plugins:
        _load_plugins()
    session = Session(interactive=interactive)
    from .commands.persist_names import install
    install(session, root)
    if opts.keep_going:
        session.settings["errexit"].value = False
    renderer = Renderer(want_json=opts.json)
    script_argv = [opts.file or "nsshell"] + list(opts.args or [])
    engine = Engine(session, renderer, debug=opts.debug, argv=script_argv)
    from .progress import for_stream
    session.progress = for_stream(sys.stderr)  # draws on a terminal only
    try:
        if opts.complete is not None:
            from .complete import print_completions
            return print_completions(session, opts.complete)
        if opts.command is not None:
            return engine.run_script(opts.command, "-c")
        if opts.file is not None:
            try:
                text = read_script(opts.file)
            except OSError as e:
                renderer.error(one_line(f"{opts.file}: {e.strerror}"))
                return 127 if e.errno == 2 else 126
            except NsshellError as e:
                renderer.error(one_line(str(e)))
                return e.status
            return engine.run_script(text, opts.file)
        if not interactive:
            # each command runs as soon as it is complete, as sh does (a FIFO, `tail -f`)
            return engine.run_lines(_stdin_lines(sys.stdin.buffer), "stdin")
        from .repl.app import run_repl
        return run_repl(engine)
    except ExitRequest as e:
        return e.status
    except BrokenPipeError:
        # The reader went away (`nsshell -c ls | head`): stop quietly, as a program
        # killed by SIGPIPE would, and keep the exit-time flush from failing again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + 13
    except KeyboardInterrupt:
        return 130
    finally:
        session.close_all()


def _stdin_lines(stream):
    """The lines of STREAM as they arrive, each checked as UTF-8 text (a UsageError naming
    the line and the byte ends the input; the lines before it have run)."""
    from .errors import UsageError
    n = 0
    while True:
        data = stream.readline()
        if not data:
            return
        n += 1
        try:
            yield data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UsageError(f"stdin:{n}: not UTF-8 text (byte 0x{data[e.start]:02x})",
                             "nsshell reads commands as UTF-8: convert them (`iconv -t UTF-8`); "
                             "nothing from this line on was run") from None


def _load_plugins() -> None:
    try:
        from .plugin_loader import load_all
    except ImportError:
        return
    load_all()
