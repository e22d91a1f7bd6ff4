"""Parameter types of the net commands: interface names that complete from the target
namespace's links, REF[:IF] ends, addresses, networks and gateways."""

from __future__ import annotations

from nsshell.plugin import NsshellError, ParamType, Ref

from .conn import conn_for

IFNAMSIZ = 16


def check_ifname(text: str) -> str:
    if not text or len(text) >= IFNAMSIZ:
        raise ValueError(f"an interface name is 1 to {IFNAMSIZ - 1} characters")
    if text in (".", "..") or any(c in text for c in "/: \t\n") :
        raise ValueError("an interface name has no '/', ':' or spaces and is not . or ..")
    return text


def link_names(session, ref_text: str | None) -> list[tuple[str, str]]:
    """(name, description) of the links of REF_TEXT's network namespace (the context's when
    None); nothing when it cannot be read (completion must never fail)."""
    try:
        ref = session.resolve(ref_text) if ref_text else None
        _, _, conn = conn_for(session, ref)
        links = conn.links()
    except Exception:  # noqa: BLE001 -- completion must never fail
        return []
    return [(link["name"], f"{link['kind'] or 'link'} {'up' if link['up'] else 'down'}")
            for link in links]


class IfName(ParamType):
    """An interface name; completes from the links of the namespace named by the REF
    typed before it on the line (the current one otherwise)."""
    metavar = "IF"

    def __init__(self, ref_param: str = "ref", existing: bool = True):
        self.ref_param = ref_param
        self.existing = existing

    def parse(self, text, session):
        return check_ifname(text)

    @property
    def completes(self) -> bool:
        return self.existing     # a new link's name: nothing to offer

    def complete(self, prefix, session, ctx=None):
        if not self.existing:
            return []
        ref = (ctx or {}).get(self.ref_param)
        return [c for c in link_names(session, ref) if c[0].startswith(prefix)]


class Endpoint(ParamType):
    """REF[:IF]: a network namespace and, optionally, an interface name in it."""
    metavar = "REF[:IF]"

    def parse(self, text, session):
        try:
            return session.resolve(text), None
        except NsshellError as whole:
            ref, sep, ifname = text.rpartition(":")
            if not sep or not ref:
                raise whole
            try:
                check_ifname(ifname)
            except ValueError:
                raise whole from None
            return session.resolve(ref), ifname

    def complete(self, prefix, session, ctx=None):
        if ":" in prefix:
            ref, _, part = prefix.rpartition(":")
            found = [(f"{ref}:{name}", d) for name, d in link_names(session, ref)
                     if name.startswith(part)]
            if found or ref in session.sets:
                return found
        return Ref().complete(prefix, session, ctx)


class _IpType(ParamType):
    """An ipaddress value: FACTORY (an ipaddress function's name) of the text, or WRONG."""
    factory = "ip_address"
    wrong = "not an IP address"

    def parse(self, text, session):
        import ipaddress
        try:
            return getattr(ipaddress, self.factory)(text)
        except ValueError:
            raise ValueError(self.wrong) from None


class Cidr(_IpType):
    """An address with its prefix length: 10.0.0.1/24, fd00::1/64."""
    metavar = "CIDR"
    factory = "ip_interface"
    wrong = "not an address with a prefix length (e.g. 10.0.0.1/24 or fd00::1/64)"


class RouteDest(ParamType):
    """`default`, or a network: 10.1.0.0/16."""
    metavar = "default|CIDR"

    def parse(self, text, session):
        import ipaddress
        if text == "default":
            return "default"
        try:
            return ipaddress.ip_network(text)
        except ValueError as e:
            if "host bits" in str(e):
                raise ValueError("has host bits set: a route's destination is a network "
                                 f"(e.g. {ipaddress.ip_interface(text).network})") from None
            raise ValueError("not `default` nor a network (e.g. 10.1.0.0/16)") from None

    def complete(self, prefix, session, ctx=None):
        return [("default", "the default route")] if "default".startswith(prefix) else []


class Gateway(_IpType):
    """An IP address: 10.0.0.254, fd00::1."""
    metavar = "GW"
