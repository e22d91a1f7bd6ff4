"""`net graph`: the network topology of namespaces, veth pairs and bridges.

Nodes are network namespaces; each lists its links (kind, state, addresses).
Edges are veth pairs and bridge ports.  A veth's peer is found as the kernel
names it: IFLA_LINK (the peer's ifindex) and IFLA_LINK_NETNSID (the id the
link's namespace gives the peer's namespace).  That id is matched by asking
each namespace (RTM_GETNSID with NETNSA_FD, over its own rtnetlink socket)
which id it gives every other namespace drawn.  Everything goes through the
plugin API and the net plugin's one connection per namespace.

Drawn three ways: boxes and edge lines for the terminal, Graphviz (--dot), and
SVG through graphviz's `dot` (--svg FILE).
"""

from __future__ import annotations

import errno as E
import os

from nsshell.plugin import Annotated, Message, Multi, NotFoundError, NsshellError, Path, Ref

from .conn import connect, fail


def _targets(sh, refs: list | None) -> list[tuple[str, object]]:
    """(label, net handle) of each namespace to draw: REFS, or the session's sets that
    hold a network namespace (each namespace once)."""
    from nsshell.plugin import resolve_handle
    out, seen = [], set()
    if refs:
        pairs = [(r.label, resolve_handle(sh, r, "net")) for r in refs]
    else:
        pairs = [(name, s.handles["net"]) for name, s in sorted(sh.sets.items())
                 if "net" in s.handles]
        if not pairs:
            raise NotFoundError("net graph: this session holds no network namespace",
                                "name some: net graph REF ..., or `new net as a` first")
    for label, h in pairs:
        if h.nsid in seen:
            continue
        seen.add(h.nsid)
        out.append((label, h))
    return out


def collect(sh, refs: list | None) -> dict:
    """The topology as data: namespaces (label, ns, links) and edges (veth, port)."""
    targets = _targets(sh, refs)
    host = sh.host.handles.get("net")
    nodes, conns = [], []
    for label, h in targets:
        conn = connect(h, label)
        try:
            links, addrs = conn.links(), conn.addrs()
        except OSError as e:
            raise fail(e, f"listing the links of {label}") from None
        names = {link["index"]: link["name"] for link in links}
        for link in links:
            link["addresses"] = [a["cidr"] for a in addrs if a["index"] == link["index"]]
            link["master_name"] = names.get(link["master"]) if link["master"] else None
        nodes.append({"name": label, "ns": str(h.nsid), "links": links})
        conns.append((h, conn))
    # which id each namespace gives each other one (and the host's, for peers there)
    others = list(targets)
    if host is not None and all(h.nsid != host.nsid for _, h in targets):
        others.append(("host", host))
    ids: list[dict] = []
    for h, conn in conns:
        seen: dict = {}
        for label, oh in others:
            if oh.nsid == h.nsid:
                continue
            try:
                nid = conn.nsid_of(oh.fd)
            except OSError:
                nid = None
            if nid is not None:
                seen[nid] = label
        ids.append(seen)
    by_label = {n["name"]: n for n in nodes}
    edges, done = [], set()
    for node, seen in zip(nodes, ids):
        for link in node["links"]:
            if link["master_name"]:
                edges.append({"kind": "port", "a": [node["name"], link["name"]],
                              "b": [node["name"], link["master_name"]]})
            if link["kind"] != "veth" or not link.get("peer"):
                continue
            nid = link.get("peer_netnsid")
            peer_ns = node["name"] if nid is None else seen.get(nid)
            peer_name = None
            if peer_ns in by_label:
                peer_name = next((x["name"] for x in by_label[peer_ns]["links"]
                                  if x["index"] == link["peer"]), None)
            elif peer_ns is None:
                peer_ns = f"netnsid {nid}"
            a, b = (node["name"], link["name"]), (peer_ns, peer_name or f"if{link['peer']}")
            key = frozenset((a, b))
            if key in done:
                continue
            done.add(key)
            edges.append({"kind": "veth", "a": list(a), "b": list(b),
                          "state": [link["state"], _state_of(by_label, b)]})
    return {"namespaces": [{"name": n["name"], "ns": n["ns"],
                            "links": [_link_data(x) for x in n["links"]]} for n in nodes],
            "edges": edges}


def _state_of(by_label: dict, end) -> str | None:
    node = by_label.get(end[0])
    if node is None:
        return None
    return next((x["state"] for x in node["links"] if x["name"] == end[1]), None)


def _shown(addresses: list[str]) -> list[str]:
    """The addresses worth drawing: IPv6 link-local ones (every link has one) left out
    (they stay in the JSON)."""
    return [a for a in addresses if not a.lower().startswith("fe80:")]


def _link_data(x: dict) -> dict:
    return {"name": x["name"], "index": x["index"], "kind": x["kind"], "state": x["state"],
            "up": x["up"], "addresses": x["addresses"], "master": x["master_name"]}


# -- drawings ---------------------------------------------------------------------------

def text_drawing(g: dict) -> str:
    """Boxes per namespace listing its links, then the edges."""
    out = []
    for n in g["namespaces"]:
        rows = []
        for x in n["links"]:
            kind = x["kind"] or ("loopback" if x["name"] == "lo" else "")
            extra = f" master {x['master']}" if x["master"] else ""
            rows.append(f"{x['name']:<10} {kind:<8} {x['state'] or '-':<8} "
                        f"{' '.join(_shown(x['addresses'])) or '-'}{extra}")
        title = f" {n['name']} {n['ns']} "
        width = max([len(title) + 2] + [len(r) + 2 for r in rows])
        out.append("+-" + title + "-" * (width - len(title) - 1) + "+")
        out.extend(f"| {r:<{width - 1}}|" for r in rows or ["(no links)"])
        out.append("+" + "-" * width + "+")
    veths = [e for e in g["edges"] if e["kind"] == "veth"]
    ports = [e for e in g["edges"] if e["kind"] == "port"]
    if veths:
        out.append("")
        out.append("veth pairs:")
        for e in veths:
            sa, sb = (s or "?" for s in e["state"])
            out.append(f"  {e['a'][0]}:{e['a'][1]} <-> {e['b'][0]}:{e['b'][1]}  ({sa}/{sb})")
    if ports:
        out.append("")
        out.append("bridge ports:")
        bridges: dict = {}
        for e in ports:
            bridges.setdefault(tuple(e["b"]), []).append(e["a"][1])
        for (ns, br), members in bridges.items():
            out.append(f"  {ns}:{br} [{' '.join(members)}]")
    return "\n".join(out)


def _q(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def dot_drawing(g: dict) -> str:
    """Graphviz: a cluster per namespace, a node per interface, veth and port edges."""
    lines = ["graph netgraph {", "  rankdir=LR;", "  compound=true;",
             "  node [shape=box, fontname=\"monospace\", fontsize=10];"]
    known = set()
    for i, n in enumerate(g["namespaces"]):
        lines.append(f"  subgraph cluster_{i} {{")
        lines.append(f"    label={_q(n['name'] + chr(10) + n['ns'])};")
        for x in n["links"]:
            ident = f"{n['name']}:{x['name']}"
            known.add(ident)
            label = "\n".join([x["name"] + (f" ({x['kind']})" if x["kind"] else ""),
                               x["state"] or "-"] + _shown(x["addresses"]))
            style = ", style=rounded" if x["kind"] == "bridge" else ""
            color = "" if x["up"] else ", color=gray, fontcolor=gray"
            lines.append(f"    {_q(ident)} [label={_q(label)}{style}{color}];")
        if not n["links"]:
            lines.append(f"    {_q(n['name'] + ':')} [label=\"(no links)\"];")
        lines.append("  }")
    for e in g["edges"]:
        a, b = f"{e['a'][0]}:{e['a'][1]}", f"{e['b'][0]}:{e['b'][1]}"
        if b not in known:
            lines.append(f"  {_q(b)} [label={_q(b)}, style=dashed];")
            known.add(b)
        attrs = "label=\"veth\"" if e["kind"] == "veth" else "style=dashed, label=\"port\""
        lines.append(f"  {_q(a)} -- {_q(b)} [{attrs}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_svg(dot_text: str, path: str) -> None:
    """Draw DOT_TEXT into PATH through graphviz's `dot`.  PATH is opened without
    following a symbolic link or blocking, must be a regular file, and an existing
    one is replaced only when it is empty or an SVG picture already: a mistyped
    `--svg /etc/passwd` changes nothing."""
    import shutil
    import stat
    import subprocess   # here: a plain start must not import it (tests/test_imports.py)
    exe = shutil.which("dot")
    if exe is None:
        raise NsshellError("net graph: --svg needs graphviz's `dot`, which is not installed",
                           "install graphviz (apt-get install graphviz), or use --dot and "
                           "draw it elsewhere")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                     0o644)
    except OSError as e:
        hint = "it is a symbolic link: give the real path" if e.errno == E.ELOOP else None
        raise NsshellError(f"net graph: cannot write {path}: {e.strerror}", hint) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NsshellError(f"net graph: {path} is not a regular file",
                               "give a file name for the picture, e.g. --svg lab.svg")
        if st.st_size and b"<svg" not in os.pread(fd, 4096, 0):
            raise NsshellError(f"net graph: {path} exists and is not an SVG picture: not replaced",
                               "remove it first, or pick another name")
        os.ftruncate(fd, 0)
        p = subprocess.run([exe, "-Tsvg"], input=dot_text.encode(), stdout=fd,
                           stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(fd)
    if p.returncode != 0:
        raise NsshellError(f"net graph: dot failed: {p.stderr.decode(errors='replace').strip()[:200]}")


def register(api):
    @api.command("net graph")
    def net_graph(sh, refs: Annotated[list, Ref()] = None, *, dot: bool = False,
                  svg: Annotated[str, Path("FILE")] = None):
        """The network topology: namespaces, veth pairs and bridges, drawn.

        Each network namespace is a box listing its links (kind, state,
        addresses, bridge); then the veth pairs (a veth's peer is found by its
        ifindex and the namespace id the kernel gives the peer's namespace) and
        each bridge's ports.  Without REFs: every network namespace the session
        has named.  A peer in a namespace not drawn is named by its netnsid (or
        `host`).

        Arguments:
          refs: the namespaces to draw (default: the session's named ones)

        Options:
          dot: print Graphviz (dot) instead
          svg: write an SVG picture to FILE (needs graphviz's `dot`; an existing FILE is
            replaced only if it is an SVG picture or empty)

        Examples:
          net graph
          net graph h1 h2 sw
          net graph --dot > lab.dot
          net graph --svg lab.svg
        """
        g = collect(sh, refs)
        if svg:
            write_svg(dot_drawing(g), svg)
            return Multi([Message(f"net graph: {len(g['namespaces'])} namespaces "
                                 f"written to {svg}")], g)
        if dot:
            return Multi([Message(dot_drawing(g).rstrip("\n"))], g)
        return Multi([Message(text_drawing(g))], g)

