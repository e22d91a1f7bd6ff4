"""Every built-in command -> the module that declares it (GENERATED: do not edit).

Written by `python -m nsshell.docgen` from the declarations in nsshell/commands/;
tests/test_command_index.py fails when it is stale.  The registry imports a
module on the first use of one of its commands; EAGER modules add to an
extension point (settings, names for ls...) and are imported at start-up."""

COMMANDS = {
    'close': 'nsshell.commands.handles',
    'ctx': 'nsshell.commands.context',
    'diff': 'nsshell.commands.inspect',
    'echo': 'nsshell.commands.shell',
    'exit': 'nsshell.commands.shell',
    'false': 'nsshell.commands.shell',
    'fg': 'nsshell.commands.run',
    'handles': 'nsshell.commands.handles',
    'help': 'nsshell.commands.shell',
    'hostname': 'nsshell.commands.context',
    'identify': 'nsshell.commands.inspect',
    'join': 'nsshell.commands.context',
    'leave': 'nsshell.commands.context',
    'ls': 'nsshell.commands.inspect',
    'map': 'nsshell.commands.context',
    'map auto': 'nsshell.commands.context',
    'map root': 'nsshell.commands.context',
    'name': 'nsshell.commands.handles',
    'new': 'nsshell.commands.context',
    'open': 'nsshell.commands.handles',
    'persist': 'nsshell.commands.persist',
    'pids': 'nsshell.commands.inspect',
    'plugins': 'nsshell.commands.plugins_cmd',
    'run': 'nsshell.commands.run',
    'set': 'nsshell.commands.shell',
    'setgroups': 'nsshell.commands.context',
    'sh': 'nsshell.commands.run',
    'show': 'nsshell.commands.inspect',
    'source': 'nsshell.commands.shell',
    'top': 'nsshell.commands.top',
    'tree': 'nsshell.commands.inspect',
    'true': 'nsshell.commands.shell',
    'unpersist': 'nsshell.commands.persist',
}

ALIASES = {
    'quit': 'exit',
    '!': 'run',
    '.': 'source',
}

EAGER = (
    'nsshell.commands.persist_names',
    'nsshell.commands.run_settings',
)
