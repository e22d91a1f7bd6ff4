"""The net plugin's connection to a network namespace, and how its refusals read.

Each network namespace gets one rtnetlink connection (netlink.Conn), over a socket
opened inside it by a helper (nsshell.plugin.socket_in) and kept for that
namespace (HandleCache: it closes when the namespace's handle closes).  The
commands, the parameter types' completion and `net graph` all reach a namespace
through `conn_for`/`connect` here, and word a refused request with `fail`.

Light on purpose: netlink.py (pyroute2's messages, ~25 ms) is imported only when
a connection is first opened, so start-up does not pay for it.
"""

from __future__ import annotations

import errno as E

from nsshell.plugin import HandleCache, KernelError, NsSet, resolve_handle, socket_in

_REASONS = {
    E.EEXIST: "exists",
    E.ENODEV: "no such device",
    E.EPERM: "not permitted",
    E.EACCES: "not permitted",
    E.EADDRNOTAVAIL: "address not available",
    E.ENETUNREACH: "network unreachable",
    E.ENETDOWN: "network down",
    E.EHOSTUNREACH: "gateway unreachable",
    E.EOPNOTSUPP: "not supported",
    E.EINVAL: "invalid argument",
    E.EBUSY: "busy",
    E.ENOENT: "no such object",
    E.ESRCH: "no such process or object",
}

_HINTS = {
    E.EPERM: "this needs CAP_NET_ADMIN in the user namespace that owns the network namespace; "
             "when rootless, create the namespaces inside one user namespace you own "
             "(`new user as lab; new net as a; new net as b`)",
    E.ENETUNREACH: "the gateway must be on a network an address of this namespace is in "
                   "(`net addr` first)",
    E.EOPNOTSUPP: "the kernel lacks that link type (is its module loaded?)",
    E.ENETDOWN: "set the interface up first (`net up REF IF`)",
}
_HINTS[E.EHOSTUNREACH] = _HINTS[E.ENETUNREACH]


def fail(err: OSError, what: str, hint: str | None = None) -> KernelError:
    """One line for a refused request: WHAT, the reason by errno, and the kernel's
    extended-ACK text when it says more."""
    reason = _REASONS.get(err.errno, err.strerror or f"errno {err.errno}")
    detail = getattr(err, "detail", "")
    if detail and detail.lower().rstrip(".") not in reason:
        reason += f" ({detail.rstrip('.')})"
    return KernelError(f"{what}: {reason}", hint or _HINTS.get(err.errno), err.errno or 0)


def _open(handle):
    import socket
    from .netlink import Conn
    fd = socket_in(handle, socket.AF_NETLINK, socket.SOCK_DGRAM, 0)  # NETLINK_ROUTE
    return Conn(socket.socket(fileno=fd))


SOCKETS = HandleCache(_open, lambda conn: conn.close())


def conn_for(sh, ref: NsSet | None):
    """(handle, label, rtnetlink connection) for REF's network namespace (default: the context's)."""
    if ref is None:
        handle = sh.context["net"]
        label = sh.context_names.get("net") or "host"
    else:
        handle = resolve_handle(sh, ref, "net")
        label = ref.label
    return handle, label, connect(handle, label)


def connect(handle, label: str):
    """The cached rtnetlink connection of HANDLE's namespace, opened on first use."""
    try:
        return SOCKETS.get(handle)
    except KernelError as e:
        if e.errno in (E.EPERM, E.EACCES):
            raise KernelError(f"reaching the network namespace of {label} ({handle.label}): "
                              "not permitted", _HINTS[E.EPERM], e.errno) from None
        raise
