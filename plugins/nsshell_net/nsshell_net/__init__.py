"""nsshell's first-party net plugin: veth pairs, addresses, links up/down, routes, bridges.

It reaches nsshell only through nsshell.plugin, and the kernel through
pyroute2 (imported when a net command first runs, never at start-up).  Each
network namespace gets one rtnetlink socket, opened inside it by a helper and
kept until the namespace's handle closes; no `ip` process is run.
"""


def register(api):
    from . import commands, graph   # graph: `net graph`, the topology drawn
    commands.register(api)
    graph.register(api)
