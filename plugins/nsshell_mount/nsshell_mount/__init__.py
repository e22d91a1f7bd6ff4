"""nsshell's first-party mount plugin: mounts in the current context's mount namespace.

`mount ls`, `mount tmpfs`, `mount bind`, `mount proc`, `mount overlay`,
`mount propagation`, `mount umount` and `mount root` (pivot_root into a root
filesystem).  Each runs in a helper that enters the context's mount namespace
(and the user namespace that owns it, for the capabilities; and the PID
namespace, for proc).  The host's mounts are never changed by mistake: while the
context's mount namespace is the shell's own, every command but `mount ls`
refuses unless --host is given, and a mount that would propagate into the host's
mount namespace (a namespace joined with shared propagation) is refused too.

It uses only nsshell's plugin API (nsshell.plugin).  Start-up does not import
commands.py: its commands are named here and declared on first use.
"""

COMMANDS = ("mount ls", "mount tmpfs", "mount bind", "mount proc", "mount overlay",
            "mount propagation", "mount umount", "mount root")


def _commands(api):
    from . import commands
    commands.register(api)


def register(api):
    api.commands_in(COMMANDS, _commands)
