"""top: a full-screen live view of every namespace (nsshell/tui/top.py draws it).

Thin: the rows are `tree`'s (core discovery through commands/inspect.py's user
tree; refreshed incrementally by Refresher), the details pane is `show`'s data
rendered as text, `p`, `x`, `d` and `g` run `persist`, `close`, `diff` and `net
graph` through the engine (their output captured for the pane), and `j` becomes a
`join` run through the engine once the view has ended.  The view (prompt_toolkit)
is imported only when it is drawn: a batch, a pipe or `--once` never pays for it.
"""

from __future__ import annotations

import sys

from ..errors import NsshellError, UsageError
from ..registry import Annotated, command
from ..results import Status, Table
from ..types import Seconds
from .persist import root_of

COLUMNS = ["namespace", "type", "nprocs", "held", "names", "command"]


# What a light scan (no fds, threads or sockets of every process) still sees.
_SEEN_LIGHT = frozenset(("process", "mount", "session"))
_HEAVY = frozenset(("fd", "thread", "socket", "children"))


class Refresher:
    """The scans behind the live view, incremental: the expensive part of a scan (every
    fd, thread and socket of every process: ~40% of its CPU with 1,000 processes; and
    the *_for_children links, a fifth of the links read) is
    re-read every FULL_EVERY-th refresh; in between, a light scan (processes, bind
    mounts, the session) re-reads what changes most, and what only the last full scan
    could see (a namespace held only by an fd, a thread or a socket, or reached only as
    the owner or parent of another; and the fd, thread and socket holders of the
    others) is carried over.  A carried namespace that has gone since is dropped when
    the tree cannot open it any more.  bench/ (case top) measures the cost."""

    FULL_EVERY = 5

    def __init__(self, sh):
        self.sh = sh
        self.n = 0
        self.carry: dict = {}

    def scan(self):
        from ..core.look import discover
        from ..progress import NULL as quiet  # no progress line over the full screen
        full = self.n % self.FULL_EVERY == 0
        self.n += 1
        if full:
            # split=False: the view pays CPU every interval; a forked reader saves time,
            # not CPU (it adds a fork)
            scan = discover.scan(session=self.sh, persist_root=root_of(self.sh), progress=quiet,
                                 split=False)
            self.carry = {k: i for k, i in scan.namespaces.items()
                          if i.kinds & _HEAVY or not i.kinds & _SEEN_LIGHT}
            return scan
        scan = discover.scan(session=self.sh, fds=False, threads=False, sockets=False,
                             relations=False, progress=quiet, persist_root=root_of(self.sh),
                             split=False, children=False)
        for key, old in self.carry.items():
            cur = scan.namespaces.get(key)
            if cur is None:
                if not old.kinds & _SEEN_LIGHT:   # the light scan could not have seen it
                    scan.namespaces[key] = old
                continue
            extra = old.kinds & _HEAVY
            if extra:
                cur.kinds |= extra
                cur.holders = cur.holders + [h for h in old.holders if h.get("kind") in extra]
                cur.paths = cur.paths + [p for p in old.paths if p not in cur.paths]
        return scan

    def __call__(self) -> list[dict]:
        return snapshot(self.sh, self.scan())


def snapshot(sh, scan=None) -> list[dict]:
    """The rows of the view, in tree order: the user-namespace hierarchy with what each
    user namespace owns (as `tree`; from SCAN, default a full one).  Each row: key
    (type, ino), depth, parent key, label, type, ns, nprocs, held, names, command."""
    from .inspect import _user_tree
    rows: list[dict] = []

    def walk(node, depth: int, parent) -> None:
        d = node.data or {}
        t, ino = d.get("type"), d.get("ns")
        key = (t, ino) if ino is not None else ("?", node.label)
        names = list(d.get("names") or [])
        if not names and d.get("helper"):
            names = [f"({d['helper']})"]
        rows.append({"key": key, "depth": depth, "parent": parent,
                     "label": f"{t}:[{ino}]" if ino is not None else node.label,
                     "type": t, "ns": ino, "nprocs": d.get("nprocs") or 0,
                     "pid": d.get("pid"), "held": list(d.get("held") or []),
                     "names": names, "command": d.get("command") or "",
                     "children": bool(node.children)})
        for c in node.children:
            walk(c, depth + 1, key)

    for root in _user_tree(sh, scan).roots:
        walk(root, 0, None)
    return rows


def details(sh, row: dict) -> str:
    """`show TYPE:[INODE]` of ROW, as the plain text `show` prints."""
    from ..core.look import discover
    from .inspect import _show_record, describe_handle
    if row.get("ns") is None:
        return f"{row['label']}: not a namespace row"
    try:
        nsset = sh.resolve(row["label"])
    except NsshellError as e:
        return f"{row['label']}: {e}"
    held = {id(h) for _, h in sh.held()}
    try:
        h = nsset.handles.get(row["type"])
        if h is None:
            return f"{row['label']}: cannot be opened"
        from ..progress import NULL as quiet
        scan = discover.scan([h.type], session=sh, persist_root=root_of(sh), progress=quiet)
        d = describe_handle(h, scan.get(h.type.name, h.nsid.ino))
        return sh.engine.renderer.plain(_show_record(d))
    except NsshellError as e:
        return f"{row['label']}: {e}"
    finally:
        for h in nsset.handles.values():
            if id(h) not in held:
                h.close()


def plain_table(rows: list[dict]) -> Table:
    data = [{k: r[k] for k in ("label", "type", "ns", "nprocs", "pid", "held", "names")}
            | {"command": r["command"] or None, "depth": r["depth"]} for r in rows]
    cells = [["  " * r["depth"] + r["label"], r["type"], r["nprocs"],
              ",".join(r["held"]), ",".join(r["names"]), r["command"]] for r in rows]
    return Table(COLUMNS, cells, key="namespaces", data=data)


def _on_a_terminal(sh) -> bool:
    if sh.engine is not None and sh.engine.wants_json():   # `top --json`, `nsshell --json`
        return False
    try:
        return sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


@command("top")
def top(sh, *, interval: Annotated[float, Seconds()] = 1.0, once: bool = False):
    """A full-screen live view of every namespace: the user-namespace hierarchy with
    what each owns (as `tree`), each row with type, id, process count, how it is held,
    names and command, refreshed every INTERVAL seconds.

    New rows, and rows whose processes, holders or names changed, are
    highlighted for a moment; rows that vanished are greyed before they go.  Keys (shown in the footer, `?` for all): up/down/PgUp/PgDn move,
    Left/Right fold, `/` filter by text, u m P n t i c T a type filters (user,
    mnt, pid, net, uts, ipc, cgroup, time, all), Enter the `show` details of
    the row, `j` join it (back at the prompt in that context), `p` persist it
    (asks for a name), `x` close this session's handle of it, `d` on two rows
    their `diff`, `g` the network topology (`net graph`), `q` or Esc back to
    the prompt (the session and its handles are kept).  In a pipe, with
    --json or with --once: one plain snapshot (like `top -b -n 1`).

    Options:
      interval: seconds between refreshes (default 1)
      once: print one plain snapshot and exit

    Examples:
      top
      top --interval 0.5
      top --once
    """
    if not interval > 0 or interval > 3600:
        raise UsageError(f"top: --interval {interval:g}: not between 0 and 3600 seconds",
                         "e.g. top --interval 0.5")
    if once or not _on_a_terminal(sh):
        return plain_table(snapshot(sh))
    from ..tui.top import TopView  # prompt_toolkit: only when the view is drawn
    actions = {
        "persist": lambda row, name: run_captured(sh, ["persist", row["label"], "as", name]),
        "close": lambda row: run_captured(sh, ["close"] + _held_ref(sh, row)),
        "diff": lambda a, b: run_captured(sh, ["diff", a["label"], b["label"]]),
    }
    found = sh.engine.registry.lookup(["net", "graph"])
    if found is not None and found[0].name == "net graph":   # the net plugin's
        actions["graph"] = lambda rows: run_captured(sh, ["net", "graph"] + _graph_refs(sh, rows))
    view = TopView(source=Refresher(sh), details=lambda row: details(sh, row),
                   interval=interval, context=sh.context_label, actions=actions)
    action = view.run()
    if action and action[0] == "join":
        return Status(sh.engine.run_words(["join"] + _held_ref(sh, action[1]), "top"))
    return Status(0)


def _held_ref(sh, row: dict) -> list[str]:
    """The words naming ROW's namespace as the session holds it: `TYPE SETNAME` for a
    named set's handle (closing its TYPE:[INODE] would close only a new handle; joined
    by name, the prompt shows the name), else its TYPE:[INODE]."""
    for name, s in sh.sets.items():
        h = s.handles.get(row["type"])
        if h is not None and h.nsid.ino == row["ns"]:
            return [row["type"], name]
    return [row["label"]]


def _graph_refs(sh, rows: list[dict]) -> list[str]:
    """What `g` draws: the session's named network namespaces (net graph's default) when
    it has some, else every network namespace in the view."""
    if any("net" in s.handles for s in sh.sets.values()):
        return []
    return [r["label"] for r in rows if r["type"] == "net"][:64]


def run_captured(sh, words: list[str]) -> str:
    """Run WORDS through the engine as at the prompt, with what it prints (its result and
    an error line alike) captured as plain text for the view's side pane."""
    import io
    from .. import progress
    from ..render import Renderer
    engine = sh.engine
    buf = io.StringIO()
    saved, saved_progress = engine.renderer, sh.progress
    engine.renderer = Renderer(out=buf, err=buf, mode="plain")
    sh.progress = progress.NULL          # no progress line drawn over the full screen
    try:
        engine.run_words(list(words), "top")
    finally:
        engine.renderer, sh.progress = saved, saved_progress
    return buf.getvalue()

