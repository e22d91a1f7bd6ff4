"""Forked helpers: every setns() and unshare() happens in a child of the shell.

unshare(CLONE_NEWUSER) and setns() into a user, mount or time namespace fail
with EINVAL in a multi-threaded process, and the shell may have threads
(prompt_toolkit, a thread pool).  So the shell forks a helper that enters the
context, does the work and hands back what the parent needs: a picklable
result and, over SCM_RIGHTS, file descriptors (namespace fds, sockets opened
inside, pidfds).
"""

from __future__ import annotations

import os
import select
import _signal
import sys
from ...kernel.values import Frozen, Value

from ...errors import InternalError, KernelError, NsshellError, from_oserror
from ...kernel import nstypes, procfs, syscalls
from ...kernel.nstypes import NsType
from . import channel, harden

TYPE_CHECKING = False   # typing is not imported to start (tests/test_imports.py)
if TYPE_CHECKING:
    from typing import Any, Callable, Sequence


class Entry(Frozen):
    """One namespace a helper must enter: its type, an fd on it, a label for messages."""
    nstype: NsType
    fd: int
    label: str

    _fields = ("nstype", "fd", "label")

    def __init__(self, nstype, fd, label) -> None:
        object.__setattr__(self, "nstype", nstype)
        object.__setattr__(self, "fd", fd)
        object.__setattr__(self, "label", label)


class Handoff(Value):
    """What a helper function returns when it has fds to give back to the shell."""
    data: Any
    fds: list[int]

    _fields = ("data", "fds")

    def __init__(self, data, fds=None) -> None:
        self.data = data
        self.fds = [] if fds is None else fds


class HelperCrash(InternalError):
    """A helper failed in a way it could not explain (a bug): the traceback is the detail.
    An internal error like the shell's own (errors.EXIT_INTERNAL)."""


# --- entering namespaces (runs in the child) ---------------------------------

def enter(entries: Sequence[Entry], root: bool = True) -> None:
    """setns() into ENTRIES in nsenter's order; with ROOT, become the user namespace's
    root when it maps root (harden.become_root: the one identity rule).

    Non-user namespaces first (so a privileged caller drops privilege last);
    those refused with EPERM are tried again after the user namespace, whose
    capabilities may be what they need.  Runs only in a forked helper, which
    leaves here protected (harden.protect) whatever ids it ends with.
    """
    if entries:
        no_imports_inside()   # (entering nothing, the files stay the shell's)
    user = next((e for e in entries if e.nstype is nstypes.USER), None)
    later: list[Entry] = []
    for e in entries:
        if e.nstype is nstypes.USER:
            continue
        try:
            syscalls.setns(e.fd, e.nstype.flag)
        except PermissionError:
            later.append(e)
        except OSError as err:
            raise _enter_error(err, e) from None
    if user is not None:
        if root:
            harden.drop_groups()  # while still privileged where the groups are (host group 0)
        try:
            syscalls.setns(user.fd, nstypes.CLONE_NEWUSER)
        except OSError as err:
            raise _enter_error(err, user) from None
        if root:
            harden.become_root()
    for e in later:
        try:
            syscalls.setns(e.fd, e.nstype.flag)
        except OSError as err:
            raise _enter_error(err, e) from None
    harden.protect()


class _NoImportInside:
    """The first finder of a helper that enters a context: it refuses every module not
    built into the interpreter.  Inside, the files are the context's (its mount
    namespace, a pivoted or chroot root): a module found there is the container's code,
    run by a process that may still hold the shell's privileges.  So what a helper needs
    is imported before it enters (the shell, or the helper before enter());
    tests/test_imports.py checks the paths that matter with strace."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        import _imp
        if name in sys.builtin_module_names or _imp.is_frozen(name):
            return None   # compiled into the interpreter: nothing read from a file
        raise ImportError(f"module {name!r} was not imported before entering the context "
                          "(a helper imports nothing from a context's files)", name=name)


def no_imports_inside() -> None:
    """From now on this process imports no module that is not built in (a helper that
    enters a context, or changes its root: enter() calls it)."""
    if not isinstance(sys.meta_path[0], _NoImportInside):
        sys.meta_path.insert(0, _NoImportInside())


def _enter_error(err: OSError, e: Entry) -> KernelError:
    hint = None
    if err.errno in (1, 13):
        hint = (f"entering {e.label} needs CAP_SYS_ADMIN in the user namespace that owns it; "
                "join that user namespace too (e.g. `join user REF`)")
    elif err.errno == 22:
        hint = ("the kernel refused the combination (a user namespace cannot be re-entered, "
                "and a mount namespace needs CAP_SYS_CHROOT)")
    return from_oserror(err, f"setns into {e.label}", hint)


# Signals whose dispositions a program expects at their defaults (Python ignores
# SIGPIPE and traps SIGINT): reset_signals after a fork, spawnp for a posix_spawn.
DEFAULT_SIGNALS = (_signal.SIGINT, _signal.SIGQUIT, _signal.SIGTSTP, _signal.SIGTTIN,
                   _signal.SIGTTOU, _signal.SIGPIPE, _signal.SIGCHLD, _signal.SIGTERM,
                   _signal.SIGXFSZ, _signal.SIGHUP)


def reset_signals() -> None:
    """Signal dispositions a program expects: DEFAULT_SIGNALS, an empty mask."""
    for sig in DEFAULT_SIGNALS:
        try:
            _signal.signal(sig, _signal.SIG_DFL)
        except (OSError, ValueError):
            pass
    _signal.pthread_sigmask(_signal.SIG_SETMASK, [])
    try:
        _signal.set_wakeup_fd(-1)
    except ValueError:
        pass


# The directories of the last PATH seen, as os.get_exec_path gives them, each as the
# prefix os.path.join would put before a name: split once, not on every spawn.
_UNSEEN = object()
_PATH: list = [_UNSEEN, ()]


def _search_dirs(env: dict[str, str]) -> tuple[str, ...]:
    path = env.get("PATH")   # None: unset (os.defpath is searched)
    if _PATH[0] is not path and _PATH[0] != path:
        _PATH[0] = path
        _PATH[1] = tuple(d if not d or d.endswith("/") else d + "/"
                         for d in os.get_exec_path(env))
    return _PATH[1]


def spawnp(argv: list[str], env: dict[str, str], **kwargs: Any) -> int:
    """posix_spawn ARGV (a vfork: no copy of this process's page tables), searching
    PATH as os.execvpe does: the first error that is not ENOENT/ENOTDIR wins.  Searched
    on every call, nothing cached: a program that appears in an earlier directory, or
    goes away, is found as execvpe finds it; a name that cannot be stat()ed where it is
    looked for is not there, as os.path.exists says.  The program gets default
    dispositions for DEFAULT_SIGNALS and an empty signal mask; KWARGS add to
    posix_spawn's (e.g. setpgroup=0)."""
    import errno
    kwargs = dict(setsigdef=DEFAULT_SIGNALS, setsigmask=(), **kwargs)
    prog = argv[0]
    if os.sep in prog:
        return os.posix_spawn(prog, argv, env, **kwargs)
    saved = last = None
    access, exists = os.access, os.F_OK
    for d in _search_dirs(env):
        path = d + prog
        try:
            # faccessat(F_OK, AT_EACCESS): stat()'s answer (the same ids walk the path),
            # without an exception raised for every directory that lacks the program
            there = access(path, exists, effective_ids=True)
        except ValueError:  # a NUL in the name: there is no such file
            there = False
        if not there:
            last = None  # ENOENT, made only if it is the error raised
            continue
        try:
            return os.posix_spawn(path, argv, env, **kwargs)
        except OSError as e:
            last = e
            if e.errno not in (errno.ENOENT, errno.ENOTDIR) and saved is None:
                saved = e
    raise saved or last or OSError(errno.ENOENT, os.strerror(errno.ENOENT))


# --- the parent/child channel: channel.py, pickled (the shell and its own child) ----

# A helper's answer may be large (a scan of every process): its own child, so trusted.
MAX_ANSWER = 1 << 30


def portable(exc: BaseException) -> BaseException:
    """An exception that survives pickling back to the shell."""
    if isinstance(exc, NsshellError):
        try:
            channel.pickled(exc)
            return exc
        except Exception:
            return NsshellError(str(exc))
    if isinstance(exc, OSError):
        return from_oserror(exc, exc.filename and f"{exc.filename}" or "a helper process")
    return HelperCrash(f"internal error in a helper: {exc!r}",
                       "run with --debug and report it: " + _exception_line(exc))


def _exception_line(exc: BaseException) -> str:
    """The last line of EXC's traceback ("module.Type: text"), as traceback prints it,
    without importing traceback: a helper's child would import it (linecache, tokenize,
    re: ~4 ms) before entering, in every fork, for an error that almost never comes."""
    t = type(exc)
    name = t.__qualname__ if t.__module__ in ("builtins", "__main__") else \
        f"{t.__module__}.{t.__qualname__}"
    text = str(exc)
    return f"{name}: {text}" if text else name


def _wait(pid: int) -> int:
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            return os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue


def exit_status(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


# --- helpers -------------------------------------------------------------------

def call(entries: Sequence[Entry], fn: Callable[..., Any], *args: Any,
         fork_after: bool = False, root: bool = True,
         prepare: Callable[[], Any] | None = None,
         early: Callable[[Any], Any] | None = None) -> tuple[Any, list[int]]:
    """Run fn(*args) in a child that has entered ENTRIES; return (value, fds).

    fn may return a Handoff to pass fds back.  With fork_after, fn runs in a
    grandchild, so that it is inside PID and time namespaces too (they apply
    to children only).  With PREPARE, the child calls it before entering
    anything (still in the shell's namespaces) and fn gets its result first:
    fn(prepare(), *args); with EARLY too, fn(early(prepare()), *args), where
    EARLY runs inside ENTRIES but before the fork_after fork.  Errors raised by
    fn are raised here.
    """
    return start(entries, fn, *args, fork_after=fork_after, root=root, prepare=prepare,
                 early=early).result()


class Pending:
    """A helper started by `start`, working while the shell does something else."""

    def __init__(self, pid: int, sock) -> None:
        self.pid = pid
        self.sock = sock

    def result(self) -> tuple[Any, list[int]]:
        """Wait for the helper's answer: (value, fds), or its error raised here."""
        try:
            (kind, value), fds = channel.recv(self.sock, maxfds=channel.SCM_MAX_FD,
                                              maxsize=MAX_ANSWER, pickle=True)
        except channel.ChannelError as e:
            _wait(self.pid)
            raise HelperCrash(f"a helper died: {e}") from None
        except BaseException:  # e.g. Ctrl-C while waiting: leave no helper behind
            self.cancel()
            raise
        finally:
            self.sock.close()
        _wait(self.pid)
        if kind == "err":
            raise value
        return value, fds

    def cancel(self) -> None:
        """End the helper unheard (another one failed, or Ctrl-C)."""
        try:
            os.kill(self.pid, _signal.SIGKILL)
        except OSError:
            pass
        self.sock.close()
        _wait(self.pid)


def start(entries: Sequence[Entry], fn: Callable[..., Any], *args: Any,
          fork_after: bool = False, root: bool = True,
          prepare: Callable[[], Any] | None = None,
          early: Callable[[Any], Any] | None = None) -> Pending:
    """`call`, without waiting: several helpers can work at once (one per CPU)."""
    # The answer's codec, imported before the fork: the shell decodes with it anyway, and
    # every child would otherwise import it again itself (_pickle loads copyreg and
    # _compat_pickle from files, which a pivoted mount namespace may lack).
    import _pickle  # noqa: F401
    import array  # noqa: F401
    parent_sock, child_sock = channel.socketpair()
    pid = os.fork()
    if pid == 0:  # child: never return
        try:
            parent_sock.close()
            harden.protect()
            _signal.signal(_signal.SIGINT, _signal.SIG_DFL)
            # Before entering: a mount namespace pivoted into a container's root has no
            # Python library to import the answer's modules from.
            prepared = prepare() if prepare is not None else None
            enter(entries, root=root)
            if early is not None:
                prepared = early(prepared)
            if prepare is not None or early is not None:
                args = (prepared,) + args
            if fork_after:
                grandchild = os.fork()
                if grandchild:
                    child_sock.close()
                    os._exit(_wait(grandchild) & 0xFF)
            value = fn(*args)
            if isinstance(value, Handoff):
                channel.send(child_sock, ("ok", value.data), value.fds, pickle=True)
            else:
                channel.send(child_sock, ("ok", value), pickle=True)
        except BaseException as exc:  # noqa: BLE001 - everything goes back to the shell
            try:
                channel.send(child_sock, ("err", portable(exc)), pickle=True)
            except BaseException:
                pass
        finally:
            os._exit(0)
    child_sock.close()
    return Pending(pid, parent_sock)


# --- pidfds and pipes --------------------------------------------------------------

def pidfd_alive(pidfd: int) -> bool:
    """A pidfd polls readable once its process has exited."""
    # poll, not select: with thousands of handles held, fds pass FD_SETSIZE (1024).
    p = select.poll()
    p.register(pidfd, select.POLLIN)
    return not p.poll(0)


def pidfd_pid(pidfd: int) -> int | None:
    """The pid (in the shell's PID namespace) of a pidfd's process; None once it is gone."""
    pid = procfs.ints((procfs.fdinfo(pidfd) or {}).get("Pid"))
    return pid[0] if pid and pid[0] > 0 else None


def read_all(fd: int) -> bytes:
    """Everything until EOF on FD (a pipe from a child: EOF when its writers are gone)."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except InterruptedError:
            continue
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
