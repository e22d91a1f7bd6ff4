"""Running programs in the current context: run (and !), sh, fg."""

from __future__ import annotations

import os

from ..core import program, runner
from ..errors import NsshellError, UsageError
from ..registry import Annotated, Rest, command
from ..progress import clear_line
from ..results import Status
from ..types import Path, ProgramName


def _run(sh, argv: list[str]) -> Status:
    clear_line()  # the program writes to the terminal: no progress line in its way
    if sh.terminal.fd is None:
        # A batch: no terminal to hand over, so a pre-entered helper starts the
        # program (core/runner.py) -- much faster for many runs in one context.
        status, job = runner.run(sh, sh.entries(), argv, env=dict(os.environ), cwd=_cwd(),
                                 root=sh.get("root"))
    else:
        status, job = program.run_program(
            sh.entries(), argv, env=dict(os.environ), cwd=_cwd(),
            fork_after=sh.needs_fork_after(), terminal=sh.terminal, root=sh.get("root"))
    if job is not None:
        sh.jobs.append(job)
        sh.engine.renderer.warn(f"{argv[0]} (pid {job.pid}) stopped; `fg` resumes it")
    return Status(status)


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:
        return None


@command("run", aliases=("!",))
def run(sh, argv: Annotated[list, Rest(), ProgramName()]):
    """Run a program in the current context, wait for it, and report its status.

    The program gets the terminal (Ctrl-C and Ctrl-Z go to it, not the shell),
    the shell's environment, and the same working directory if it exists in
    the context's mount namespace (else $HOME or /).  It inherits no fd of the
    shell but 0, 1 and 2.  Its exit status becomes the command's status
    (128+N when killed by signal N).  `!CMD ...` is short for `run CMD ...`.

    Arguments:
      argv: the program and its arguments (PATH is searched in the context)

    Examples:
      run ip link
      !hostname
      run sh -c 'echo $$'
    """
    if not argv:
        raise UsageError("missing CMD", "usage: run CMD [ARG ...]")
    return _run(sh, argv)


@command("sh")
def sh_(sh, program: Annotated[str, Path("PROGRAM")] = None):
    """Start an interactive shell ($SHELL, else /bin/sh) in the current context.

    Arguments:
      program: the shell to run instead of $SHELL

    Examples:
      sh
      sh /bin/bash
    """
    prog = program or os.environ.get("SHELL") or "/bin/sh"
    return _run(sh, [prog])


@command("fg")
def fg(sh):
    """Resume the program most recently stopped with Ctrl-Z, in the foreground.

    Examples:
      fg
    """
    if not sh.jobs:
        raise NsshellError("no stopped program", "Ctrl-Z during `run` stops one")
    job = sh.jobs.pop()
    clear_line()
    if isinstance(job, runner.RunnerJob):
        status, again = job.runner.resume(job)
        if again is None:
            runner.finished(sh, job)
    else:
        status, again = program.resume(job, sh.terminal)
    if again is not None:
        sh.jobs.append(again)
        sh.engine.renderer.warn(f"{job.argv[0]} (pid {job.pid}) stopped; `fg` resumes it")
    return Status(status)
