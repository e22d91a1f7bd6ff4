"""nsshell's first-party net plugin: veth pairs, addresses, links up/down, routes, bridges.

It reaches nsshell only through nsshell.plugin, and the kernel through
pyroute2 (imported when a net command first runs, never at start-up).  Each
network namespace gets one rtnetlink socket, opened inside it by a helper and
kept until the namespace's handle closes; no `ip` process is run.

Start-up imports neither commands.py nor graph.py: their commands are named
here (api.commands_in) and declared on first use.
"""

COMMANDS = ("net veth", "net addr", "net up", "net down", "net route", "net bridge",
            "net del", "net link", "net set", "net move", "net ls")


def _commands(api):
    from . import commands
    commands.register(api)


def _graph(api):
    from . import graph   # `net graph`, the topology drawn
    graph.register(api)


def _read_bridges(ctx):
    from .commands import read_bridges
    return read_bridges(ctx)


def _prepare_bridges():
    from .commands import prepare_bridges
    prepare_bridges()


def _bridges_summary(value):
    from .commands import _bridges_summary
    return _bridges_summary(value)


def register(api):
    # What `show` and `diff` report is there from the start (commands.register, run
    # with the first net command, puts its own functions in place of these).
    api.state_reader("net", "bridges", summary=_bridges_summary,
                     prepare=_prepare_bridges)(_read_bridges)
    api.commands_in(COMMANDS, _commands)
    api.commands_in(("net graph",), _graph)
