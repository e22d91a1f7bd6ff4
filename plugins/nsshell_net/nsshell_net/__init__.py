"""nsshell's net plugin (work in progress)."""


def register(api):
    from . import commands
    commands.register(api)
