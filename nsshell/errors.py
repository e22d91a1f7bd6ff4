"""The error tree, exit statuses, and errno -> message + hint.

An NsshellError is shown to a person as one line: `nsshell: WHERE: message; hint: ...`.
"""

from __future__ import annotations

import errno as E

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70   # EX_SOFTWARE of sysexits.h: a bug in nsshell, never the user's input

# Every status nsshell itself gives, as the man page lists them (docgen renders this).
EXIT_STATUSES: list[tuple[str, str]] = [
    ("0", "success"),
    (str(EXIT_FAILURE), "a command failed (the kernel refused, a name was not found, a limit "
                        "was reached, ...)"),
    (str(EXIT_USAGE), "a usage error: unknown command or option, missing or extra arguments, "
                      "a malformed value or input (e.g. a NUL byte, or a file that is not UTF-8)"),
    (str(EXIT_INTERNAL), "an internal error, in the shell or in one of its helper processes "
                         "(a bug: run with --debug for the traceback and report it)"),
    ("126, 127", "run could not execute the program, or did not find it"),
    ("128+N", "run's program was killed by signal N (130 for Ctrl-C)"),
]


class NsshellError(Exception):
    status = EXIT_FAILURE

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message, hint)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}; hint: {self.hint}"


class UsageError(NsshellError):
    """Wrong words: unknown command, missing or extra arguments, malformed values."""
    status = EXIT_USAGE


class NotFoundError(NsshellError):
    """A name, process or file that does not exist."""


class KernelError(NsshellError):
    """The kernel refused; the message says what was asked and why it failed."""

    def __init__(self, message: str, hint: str | None = None, errno: int = 0):
        super().__init__(message, hint)
        self.args = (message, hint, errno)
        self.errno = errno


class ProgramNotFound(NsshellError):
    """`run` of a program that is not there (127) or cannot be executed (126), as shells do."""

    def __init__(self, message: str, hint: str | None = None, status: int = 127):
        super().__init__(message, hint)
        self.args = (message, hint, status)
        self.status = status


class StaleError(NsshellError):
    """A handle whose namespace can no longer be used (e.g. its PID init died)."""


class InternalError(NsshellError):
    """A bug: something nsshell did not expect, in the shell or in a helper process.
    Shown as one line, `internal error: ...`, with EXIT_INTERNAL (the traceback with --debug)."""
    status = EXIT_INTERNAL


def internal(exc: BaseException, where: str = "") -> InternalError:
    """The InternalError for an unexpected exception EXC (in WHERE, e.g. 'a helper')."""
    place = f" in {where}" if where else ""
    return InternalError(f"internal error{place}: {type(exc).__name__}: {exc}",
                         "run with --debug for the traceback, and report it")


class ExitRequest(Exception):
    """`exit [STATUS]`: leave the shell."""

    def __init__(self, status: int = 0):
        super().__init__(status)
        self.status = status


_GENERIC_HINTS = {
    E.EPERM: "not permitted: this needs a capability in the user namespace that owns "
             "the target; create or join a user namespace you own first (e.g. `new user+...`)",
    E.EACCES: "permission denied: check the file's owner and mode, or run as its owner",
    E.ENOSPC: "a kernel limit was hit (see /proc/sys/user/max_*_namespaces)",
    E.EUSERS: "user namespaces nest at most 32 deep",
    E.ENOMEM: "the PID namespace's init has exited, or memory ran out",
    E.EBUSY: "it is in use",
    E.ENOENT: None,
    E.EAGAIN: "a process limit was reached (RLIMIT_NPROC, `ulimit -u`, or the cgroup's "
              "pids.max): end some processes, or raise the limit",
    E.EMFILE: "this process has too many open files (`ulimit -n`): raise the limit, or "
              "`close` sets you no longer need",
    E.ENFILE: "the system's open-file table is full (/proc/sys/fs/file-max)",
}

# errno values that mean a resource ran out, not a bug: wherever they surface they are
# reported as the failure they are (status 1), never as an internal error.
RESOURCE_ERRNOS = frozenset({E.EAGAIN, E.EMFILE, E.ENFILE, E.ENOMEM, E.ENOSPC, E.EDQUOT,
                             E.ENOBUFS})


def one_line(text: str) -> str:
    """TEXT with every control character escaped (\\n, \\t, \\x1b, ...), so that an
    error is one line however odd the words it quotes, and no byte from input
    reaches the terminal as a control sequence."""
    if text.isprintable():
        return text
    out = []
    for c in text:
        if c.isprintable() or c == " ":
            out.append(c)
        else:
            r = repr(c)[1:-1]
            out.append(r if r != c else f"\\x{ord(c):02x}")
    return "".join(out)


def from_oserror(err: OSError, what: str, hint: str | None = None) -> KernelError:
    """KernelError for an OSError raised while doing WHAT ('setns into net:[4026...]')."""
    code = err.errno or 0
    reason = err.strerror or E.errorcode.get(code, str(err))
    if hint is None:
        hint = _GENERIC_HINTS.get(code)
    return KernelError(f"{what}: {reason}", hint, code)
