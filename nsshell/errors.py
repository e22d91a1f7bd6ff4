"""The error tree, exit statuses, and errno -> message + hint.

An NsshellError is shown to a person as one line: `nsshell: WHERE: message; hint: ...`.
"""

from __future__ import annotations

import errno as E

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


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
}


def from_oserror(err: OSError, what: str, hint: str | None = None) -> KernelError:
    """KernelError for an OSError raised while doing WHAT ('setns into net:[4026...]')."""
    code = err.errno or 0
    reason = err.strerror or E.errorcode.get(code, str(err))
    if hint is None:
        hint = _GENERIC_HINTS.get(code)
    return KernelError(f"{what}: {reason}", hint, code)
