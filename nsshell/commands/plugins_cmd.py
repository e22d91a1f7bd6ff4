"""`plugins`: what the loader loaded, and what failed with the reason."""

from __future__ import annotations

from ..registry import command
from ..results import Message, Table


@command("plugins")
def plugins(sh):
    """List the plugins: loaded ones with their commands, failed ones with the reason.

    Plugins come from the entry-point group nsshell.plugins and from the user
    plugin folder ($XDG_CONFIG_HOME/nsshell/plugins/, default
    ~/.config/nsshell/plugins/).  `nsshell --no-plugins` loads none.

    Examples:
      plugins
      plugins --json
    """
    from .. import plugin_loader as loader
    if not loader.loaded():
        return Message("no plugins loaded (nsshell was started with --no-plugins)")
    infos = list(loader.PLUGINS.values()) + list(loader.FAILED)
    if not infos:
        return Message(f"no plugins (none installed; user folder: {loader.user_dir()})")
    rows, data = [], []
    for p in infos:
        detail = " ".join(c.split(" ", 1)[-1] if c.startswith(p.name + " ") else c
                          for c in p.commands) if p.status == "loaded" else p.reason
        rows.append([p.name, p.status, p.source, detail])
        data.append({"name": p.name, "status": p.status, "source": p.source,
                     "commands": p.commands, "reason": p.reason or None})
    return Table(["name", "status", "source", "commands / reason"], rows,
                 key="plugins", data=data)
