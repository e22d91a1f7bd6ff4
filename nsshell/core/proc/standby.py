"""The standby: the process of the next program `run` starts at a terminal, made ready
before it is asked for.

`run` at a terminal must give the program its own process group and the terminal
before it starts, so its process is the shell's own child (the shell waits for its
stops and its exit, `fg` continues it).  Forking the shell for it cost most of a
`run` typed at the prompt (bench `repl`): ~1.3 ms for fork() of the ~35 MB Python
process, then copy-on-write faults in the child until exec and in the shell as it
draws the next prompt (about as much again each).  So once a `run` has handed the
terminal to a program, the REPL starts a standby each time a prompt is drawn, while
the next line is being typed: a fresh, small Python running this module, posix_spawn()ed
(a vfork: nothing of the shell's memory is copied or shared), isolated (_command: no
PYTHON* variable, no current directory, no site: only nsshell's directory and the
standard library are on its path).  It is the shell's
child, in the shell's own namespaces and process group, holds nothing but fds 0-2
and its channel, ignores the terminal's job-control and interrupt signals while it
waits, and dies with the shell (PR_SET_PDEATHSIG) or when the REPL ends.

A `run` sends it the context's namespace fds, the program and its setup: it then does
exactly what a forked child does (program.program_child: its own group, the terminal,
enter, exec) and its pid is the job's.  One standby serves one program.  It learns the
context only with the request, so no standby is in a context it was not asked into,
and a changed context or id map is never served stale.  When it is not ready yet
(still starting) or gone, `run` forks as before.
"""

from __future__ import annotations

import os
import _signal
import sys

from .spawn import DEFAULT_SIGNALS

# While it waits in the shell's process group: what the terminal sends there is the
# shell's business (a Ctrl-C while another command runs must not end the standby).
_WAITING_IGNORES = (_signal.SIGINT, _signal.SIGQUIT, _signal.SIGTSTP, _signal.SIGTTIN,
                    _signal.SIGTTOU)


def keep_ready(terminal) -> None:
    """Start a standby for the next `run` on TERMINAL (a program.Terminal) if the
    terminal is the shell's, programs were run on it, and none is there.  The REPL calls
    it once a prompt is drawn: the standby starts while the next line is typed.  A relay
    that said its program's status before its own exit is reaped here (it has nothing
    left to do but exit): the prompt is on the screen already, the wait is not felt."""
    if terminal.exiting:
        terminal.reap(wait=0.1)
    if terminal.fd is None or not terminal.used or terminal.standby is not None:
        return
    try:
        terminal.standby = Standby()
    except (OSError, ValueError):
        terminal.standby = None


# The directory holding the nsshell package this shell runs: the standby imports the same.
_TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

# What the standby's interpreter runs: isolated (-I: no PYTHON* variable, no user site,
# no current directory on its path), no site (-S: no .pth file of site-packages runs),
# then nsshell's own directory and the standard library only.  It runs as the shell's
# user (often root): nothing in the environment or a user-writable file steers what it
# imports or runs.  sys.argv: TOP FD PARENT.
_BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); "
         "from nsshell.core.proc.standby import main; main(sys.argv[2:])")


def _command(fd: int) -> list[str]:
    return [sys.executable, "-I", "-S", "-c", _BOOT, _TOP, str(fd), str(os.getpid())]


# What it sends once ready: one byte, before any message (no encoder to import for it).
READY = b"R"


class Standby:
    """The shell's end: start one standby; start() hands it a run, close() ends it."""

    def __init__(self) -> None:
        from . import channel
        here, there = channel.socketpair()
        fd = there.fileno()
        try:
            os.set_inheritable(fd, True)
            self.pid = os.posix_spawn(sys.executable, _command(fd), os.environ,
                                      setsigdef=DEFAULT_SIGNALS, setsigmask=())
        except BaseException:
            here.close()
            raise
        finally:
            there.close()
        self.sock = here
        self._ready = False

    def ready(self) -> bool:
        """Whether it said it is ready (without waiting for it)."""
        if self._ready:
            return True
        import select
        p = select.poll()
        p.register(self.sock, select.POLLIN)
        if not p.poll(0):
            return False
        try:
            self._ready = self.sock.recv(1) == READY
        except OSError:
            return False
        return self._ready

    def alive(self) -> bool:
        try:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid:
            self.pid = 0  # reaped
            return False
        return True

    def start(self, entries, argv, env, cwd, fork_after, root, setup, tty,
              errpipe_w) -> int | None:
        """Give it the run: its pid (now the program's process), or None when it is gone
        (the caller forks instead)."""
        from . import channel, program
        specs = [(e.nstype.name, e.label) for e in entries]
        try:
            channel.send(self.sock, ("run", specs, argv, env, cwd, fork_after, root, setup, tty,
                                     program.started_nofile()),
                         [e.fd for e in entries] + [errpipe_w], pickle=True)
        except OSError:
            self.close()
            return None
        self.sock.close()
        return self.pid

    def close(self) -> None:
        """End it and reap it."""
        self.sock.close()
        if self.pid:
            try:
                os.kill(self.pid, _signal.SIGKILL)
            except OSError:
                pass
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self.pid = 0


def _serve(fd: int, parent: int) -> None:
    from ...kernel import nstypes, syscalls
    from . import channel, harden, program
    from .spawn import Entry
    for sig in _WAITING_IGNORES:
        _signal.signal(sig, _signal.SIG_IGN)
    syscalls.prctl(syscalls.PR_SET_PDEATHSIG, _signal.SIGKILL)
    if os.getppid() != parent:
        return
    harden.protect()
    # nothing of the shell's but 0-2 and the channel (its fds are close-on-exec anyway)
    if fd > 3:
        syscalls.close_range(3, fd - 1)
    syscalls.close_range(fd + 1)
    # what the request, errors and the PATH search (os.get_exec_path) need, imported
    # before entering: once in the context's mount namespace, a module would come from
    # the context's files
    import _pickle  # noqa: F401 - channel.pickled (it loads copyreg from files)
    import array  # noqa: F401
    import resource  # noqa: F401 - program.restore_nofile (a dlopen: ~0.3 ms after the request)
    import warnings  # noqa: F401
    import _socket
    sock = _socket.socket(fileno=fd)
    syscalls.set_comm("nsshell-standby")  # named once ready: what ps (and the tests) see
    sock.sendall(READY)
    try:
        msg, fds = channel.recv(sock, maxfds=channel.SCM_MAX_FD, maxsize=1 << 26, pickle=True)
    except channel.ChannelError:
        return  # not needed after all: the shell closed its end
    sock.close()
    _, specs, argv, env, cwd, fork_after, root, setup, tty, nofile = msg
    # what a fork of the shell would have: no death signal (a program may outlive the
    # shell), the fd limit the shell started with to restore
    syscalls.prctl(syscalls.PR_SET_PDEATHSIG, 0)
    if nofile is not None:
        program.remember_nofile(*nofile)
    entries = [Entry(nstypes.get(name), nsfd, label) for (name, label), nsfd in zip(specs, fds)]
    program.program_child(entries, argv, env, cwd, fork_after, root, setup, tty, fds[-1])


def main(args: list[str]) -> None:
    """The standby's process (started by Standby with _BOOT): serve, then never return."""
    try:
        _serve(int(args[0]), int(args[1]))
    finally:
        os._exit(0)
